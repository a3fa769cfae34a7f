"""Grounding DINO's image input and post-processing (decoders.md A.2, A.4), against mmcv's rules
with OpenCV (cv2.resize INTER_LINEAR, mmcv's imnormalize) and the official post-processing in
PyTorch (eval_det.py, eval_semseg.py), both from reference_gdino.py. Synthetic images and every post-processing input come from
the closed-form hash (hashed.py, test/hashed.ts); fixtures are PNGs (lossless: sharp and cv2 agree).
Resized images are checked whole through two checksums, normalised pixels by samples.
"""
import json
import os

import numpy as np
import torch

from hashed import hash_u32, hashed, sample_indices
from reference_gdino import instance_masks, mmdet_input, post_process_det_gdino, rescale_size, semantic_scores

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'images')
P = 1000003


def synthetic(h, w, seed):
    """RGB uint8 [h, w, 3]: a wrapping gradient plus hashed noise (test/gdino-image.test.ts)."""
    noise = (hash_u32(h * w * 3, seed) >> np.uint64(24)).astype(np.int64).reshape(h, w, 3)
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing='ij')
    return ((x * 7 + y * 3 + c * 50 + (noise & 63)) & 255).astype(np.uint8)


def checksums(rgb):
    v = rgb.reshape(-1).astype(np.int64)
    i = np.arange(v.size, dtype=np.int64)
    return [int(v.sum() % P), int((v * (1 + i % 251)).sum() % P)]


def images(cv2, out, cases):
    todo = [('scene', 'scene.png', None, (1333, 800)), ('wide', 'wide.png', None, (1333, 800)),
            ('gray', 'gray.png', None, (1333, 800)), ('scene_ade', 'scene.png', None, (2048, 512)),
            ('up', None, (37, 53), (1333, 800)), ('down', None, (1000, 1500), (1333, 800)),
            ('thin', None, (7, 2000), (1333, 800)), ('tall', None, (1100, 301), (1333, 800))]
    for k, (name, file, size, scale) in enumerate(todo):
        if file:
            bgr = cv2.imread(os.path.join(FIXTURES, file), cv2.IMREAD_COLOR)
        else:
            bgr = np.ascontiguousarray(synthetic(size[0], size[1], 100 + k)[:, :, ::-1])
        rgb, padded, mask = mmdet_input(cv2, bgr, scale)
        si = sample_indices(padded.size, 4096, k)
        out[f'img.{name}.idx'] = torch.from_numpy(si.astype('int32'))
        out[f'img.{name}.pixels'] = torch.from_numpy(padded.reshape(-1)[si].copy())
        out[f'img.{name}.mask_rows'] = torch.from_numpy(mask.sum(1).astype('int32'))
        out[f'img.{name}.mask_cols'] = torch.from_numpy(mask.sum(0).astype('int32'))
        cases[name] = dict(file=file, size=list(size) if size else None, seed=100 + k, scale=list(scale),
                           ori=list(bgr.shape[:2]), img=list(rgb.shape[:2]), pad=list(padded.shape[1:]),
                           checksums=checksums(np.ascontiguousarray(rgb)))


def sizes(out):
    g = np.random.default_rng(7)
    hw = [(int(a), int(b)) for a, b in zip(g.integers(1, 4000, 14), g.integers(1, 4000, 14))]
    hw += [(3, 5000), (5000, 3), (800, 1333), (1333, 800), (2, 2), (10, 7000)]
    out['sizes.in'] = torch.tensor(hw, dtype=torch.int32)
    out['sizes.coco'] = torch.tensor([rescale_size(h, w, (1333, 800)) for h, w in hw], dtype=torch.int32)
    out['sizes.ade'] = torch.tensor([rescale_size(h, w, (2048, 512)) for h, w in hw], dtype=torch.int32)


def logits_of(q, cols, k, seed, scale):
    x = hashed((q, cols), seed, scale).float()
    x[:, k:] = float('-inf')
    return x


def boxes_of(q, seed):
    return ((hashed((q, 4), seed) + 1) / 2).float()


def masks_of(queries, h4, w4, seed):
    return torch.stack([hashed((h4, w4), seed + int(q), 4.0) for q in queries]).double()


def topk_distinct(prob, k):
    """The top k+1 scores are apart by more than a few ulps, so that the order is unambiguous."""
    top = torch.topk(prob.double(), k + 1).values
    return bool((top[:-1] - top[1:] > 4 * 2.0 ** -24).all())


def detection(out, cases):
    Q, cols = 900, 256
    for name, K, topk, geo, mask_seed in (('det', 80, 100, None, None), ('inst', 80, 12, ((203, 150), (301, 222), (224, 160)), 5000),
                                         ('grd', 1, 1, ((320, 480), (100, 150), (320, 480)), 7000)):
        seed = 40 if name != 'grd' else 60
        while True:  # a seed whose top-k has no near-ties
            logits = logits_of(Q, cols, K, seed, 2.0)
            prob = logits[:, :K].sigmoid().reshape(-1)
            if topk_distinct(prob, topk):
                break
            seed += 1
        boxes = boxes_of(Q, seed + 500)
        ori = (480, 640) if geo is None else geo[1]
        det = post_process_det_gdino(logits[:, :K], boxes, ori, topk)
        query = det['queries']
        out[f'{name}.scores'] = det['scores']
        out[f'{name}.queries'] = query.int()
        out[f'{name}.labels'] = det['labels'].int()
        out[f'{name}.boxes'] = det['boxes']
        case = dict(K=K, topk=topk, seed=seed, box_seed=seed + 500, scale=2.0, ori=list(ori))
        if geo is not None:
            (ih, iw), (oh, ow), (hp, wp) = geo
            m = masks_of(query.tolist(), hp // 4, wp // 4, mask_seed)
            full, bits = instance_masks(m, (ih, iw), (oh, ow))
            near = (full.abs() < 1e-4).numpy()
            out[f'{name}.masks'] = torch.from_numpy(np.packbits(bits.numpy().reshape(-1)))
            out[f'{name}.near'] = torch.from_numpy(np.packbits(near.reshape(-1)))
            case.update(img=[ih, iw], mask_seed=mask_seed, pad=[hp, wp])
        cases[name] = case


def semantic(out, cases):
    Q, cols, K = 900, 256, 150
    (ih, iw), (oh, ow), (hp, wp) = (60, 90), (123, 171), (64, 96)
    logits = logits_of(Q, cols, K, 90, 8.0)
    masks = masks_of(range(Q), hp // 4, wp // 4, 9000)
    # process_seg_result, sem_seg_postprocess_before_inference=True (ADE20K), in float64
    sem = semantic_scores(logits[:, :K].double(), masks, (ih, iw), (oh, ow))
    top2 = torch.topk(sem, 2, dim=0).values
    near = (top2[0] - top2[1]) < 1e-5 * top2[0]
    out['sem.classes'] = sem.argmax(0).to(torch.uint8)
    out['sem.near'] = near.to(torch.uint8)
    cases['sem'] = dict(K=K, seed=90, scale=8.0, mask_seed=9000, img=[ih, iw], ori=[oh, ow], pad=[hp, wp])


def generate():
    import cv2  # python3-opencv
    out = {}
    cases = {}
    sizes(out)
    images(cv2, out, cases)
    detection(out, cases)
    semantic(out, cases)
    return {'gdino_image': (out, {'cases': json.dumps(cases), 'opencv': cv2.__version__})}
