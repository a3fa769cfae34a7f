"""Goldens for UniPose's pose phase glue (src/decoders/unipose/{pose-mask,pose-queries,postprocess}.ts),
from reference_unipose_pose.py (the official code, batch 1, inference).

- mask.k{Kk}.g{G}: attn_mask2 at G = 3 groups x 69 (packbits, row-major, exact), Kk in {14, 17, 68};
  mask.k{Kk}.full.*: the real 50 x 69 = 3450 size as per-row checks (blocked count, sum of blocked
  columns, xor of blocked columns * 2654435761 mod 2^32) plus a few full rows (packbits).
- select/refine/outputs at d = 32, 30 queries, G = 5 groups, 68 keypoint slots of which Kk = 17 hold
  text: seeded random weights (pose_embed x5, pose_hw_embed x4, bbox_embed x6 given distinct weights
  so that the layer indexing is tested; the release shares them), float64.
- post: post_process_pose on random outputs (50 queries, K = 1 and 3 classes, 17 and 14 points), f32.
"""
import json

import numpy as np
import torch

from common import rng, randn
from reference_unipose_pose import (MLP, kpt_mask_of, outputs, post_process_pose, prepare_for_mask, refine,
                                    select_groups)

NBP = 68
MASK_KS = [14, 17, 68]
MASK_GROUPS = 3
FULL_ROWS = [0, 1, 67, 68, 69, 136, 137, 138, 3399, 3400, 3401, 3449]
D = 32
NQ = 30
GROUPS = 5
KO = 2
KK = 17
GAP = 1e-3


def row_checks(mask):
    """[L, L] bool -> [L, 3] int64: count, sum of columns, xor of (col * 2654435761 mod 2^32), blocked cells."""
    L = mask.shape[0]
    cols = torch.arange(L, dtype=torch.int64)
    h = (cols * 2654435761) % (1 << 32)
    out = torch.zeros(L, 3, dtype=torch.int64)
    m = mask.to(torch.int64)
    out[:, 0] = m.sum(1)
    out[:, 1] = (m * cols).sum(1)
    xs = np.zeros(L, dtype=np.uint64)
    hn = h.numpy().astype(np.uint64)
    mn = mask.numpy()
    for r in range(L):
        xs[r] = np.bitwise_xor.reduce(hn[mn[r]]) if mn[r].any() else 0
    out[:, 2] = torch.from_numpy(xs.astype(np.int64))
    return out


def packed(mask):
    return torch.from_numpy(np.packbits(mask.numpy().astype(np.uint8), axis=-1, bitorder='little'))


def mlp(g, dims_in, out, scale=0.3):
    m = MLP(dims_in, dims_in, out, 3).double()
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.copy_(randn(g, *layer.weight.shape, scale=scale))
            layer.bias.copy_(randn(g, *layer.bias.shape, scale=0.1))
    return m


def generate():
    tensors = {}
    # attn_mask2
    for kk in MASK_KS:
        small = prepare_for_mask(kpt_mask_of(kk, NBP), NBP, 1, MASK_GROUPS)[0]
        tensors[f'mask.k{kk}.g{MASK_GROUPS}'] = packed(small)
        full = prepare_for_mask(kpt_mask_of(kk, NBP), NBP, 1, 50)[0]
        assert full.shape == (3450, 3450)
        tensors[f'mask.k{kk}.full.checks'] = row_checks(full).numpy().astype(np.uint32)
        tensors[f'mask.k{kk}.full.rows'] = packed(full[FULL_ROWS])

    # group selection, references, refinement, outputs
    with torch.no_grad():
        for seed in range(100):
            g = rng(1000 + seed)
            hidden = randn(g, NQ, D)
            text = randn(g, KO, D, scale=0.5)
            scores = (hidden @ text.T).max(-1)[0].sort(descending=True)[0][:GROUPS + 1]
            if (scores[:-1] - scores[1:]).min() > GAP:
                break
        ref = torch.rand(NQ, 4, generator=g, dtype=torch.float64) * 0.8 + 0.1
        ref[:3, 0] = torch.tensor([0.0005, 0.9995, 0.5])  # exercise inverse_sigmoid's 1e-3 clamp
        kpt = torch.zeros(NBP, D, dtype=torch.float64)
        kpt[:KK] = randn(g, KK, D, scale=0.5)
        hw = randn(g, 17, 2)
        hw_append = randn(g, NBP - 17, 2)
        pose_embed = [mlp(g, D, 2) for _ in range(5)]
        pose_hw_embed = [mlp(g, D, 2) for _ in range(4)]
        bbox_embed = [mlp(g, D, 4) for _ in range(6)]
        top, out, r = select_groups(hidden, ref, text, kpt, pose_embed, hw, hw_append, GROUPS)
        tensors.update({
            'hidden': hidden.float(), 'reference': ref.float(), 'text': text.float(), 'kpt': kpt.float(),
            'hw': hw.float(), 'hw_append': hw_append.float(),
            'select.topk': top.to(torch.int32), 'select.hidden': out.float(), 'select.reference': r.float(),
        })
        for name, mods in (('pose_embed', pose_embed), ('pose_hw_embed', pose_hw_embed), ('bbox_embed', bbox_embed)):
            for i, m in enumerate(mods):
                for j, layer in enumerate(m.layers):
                    tensors[f'{name}.{i}.layers.{j}.weight'] = layer.weight.float()
                    tensors[f'{name}.{i}.layers.{j}.bias'] = layer.bias.float()
        L = GROUPS * (1 + NBP)
        for layer_id in range(2, 6):
            h = randn(g, L, D)
            tensors[f'layer{layer_id}.hidden'] = h.float()
            r = refine(h, r, bbox_embed[layer_id], pose_embed[layer_id - 2], pose_hw_embed[layer_id - 2], NBP, GROUPS)
            tensors[f'layer{layer_id}.reference'] = r.float()
        # The last layer's heads: its input reference is the one after layer 4.
        hs = randn(g, L, D)
        ref_in = tensors['layer4.reference'].double()
        logits, boxes, keypoints = outputs(hs, ref_in, text, bbox_embed[5], pose_embed[3], NBP, GROUPS)
        tensors.update({'out.hs': hs.float(), 'out.logits': logits.float(), 'out.boxes': boxes.float(),
                        'out.keypoints': keypoints.float()})

    # post-processing (f32 like the eval)
    g = rng(7)
    post_cases = []
    for idx, (k, nbp) in enumerate([(1, 17), (3, 14)]):
        logits = randn(g, 1, 50, k, scale=3).float()
        boxes = (torch.rand(1, 50, 4, generator=g, dtype=torch.float64) * 0.5 + 0.1).float()
        kps = torch.rand(1, 50, NBP * 3, generator=g, dtype=torch.float64).float()
        size = torch.tensor([[480.0, 640.0]])
        s, lab, b, kp = post_process_pose(logits, boxes, kps, size, num_classes=k, topk=100, num_body_points=nbp)
        p = f'post{idx}'
        tensors.update({f'{p}.logits': logits[0], f'{p}.boxes': boxes[0], f'{p}.keypoints': kps[0],
                        f'{p}.scores': s[0], f'{p}.labels': lab[0].to(torch.int32), f'{p}.out_boxes': b[0],
                        f'{p}.out_keypoints': kp[0]})
        post_cases.append({'prefix': p, 'classes': k, 'points': nbp, 'size': [480, 640]})

    metadata = {
        'mask_ks': json.dumps(MASK_KS), 'mask_groups': MASK_GROUPS, 'full_rows': json.dumps(FULL_ROWS),
        'config': json.dumps({'d': D, 'queries': NQ, 'groups': GROUPS, 'classes': KO, 'keypoints': KK, 'max_keypoints': NBP}),
        'post': json.dumps(post_cases),
    }
    return {'unipose_pose': (tensors, metadata)}
