"""Interactive segmentation on the tiny checkpoint (test/golden/interactive_tiny.safetensors): two box regions as
`<region>` inputs, the teacher-forced [DET] answer through the tiny MLLM and the super link, then the tiny Grounding
DINO detector with the instance-segmentation post-processing (eval_visual_prompt.py post_process_instseg_gdino).

Reads weights/tiny as it is (the region encoder, the detector, patch2query are already installed by
tiny_visionllm.py / tiny_detector.py / tiny_region.py); this module installs nothing and writes nothing there.

The task (official datasets/coco_interactive.py, test mode):
  question  QUESTIONS[0] with '<regions>' -> '<reg>region1<region></reg>, <reg>region2<region></reg>'
            (DEFAULT_TOKENS sor '<reg>', reg '<region>', eor '</reg>'), then '<image>\\n' + question (Vicuna v1);
  answer    YES[0] with '<regions>' -> 'region1[DET][EMB][EMB2][EMB3][EMB4], region2[DET][EMB][EMB2][EMB3][EMB4]'
            (num_embs 4). Here the answer is given as 'Sure, these objects are region1[DET], region2[DET].' and the
            super link's splice inserts the [EMB]..[EMB4] positions after each [DET] (reference_superlink.splice):
            asserted to give the same token sequence as the official string.

The image: test/fixtures/images/scene.png (517 x 353), one anyres tile (the global view). Regions A = (150, 100, 200,
150) and B = (300, 200, 340, 240) in original pixels become masks over the global tile exactly as tiny_region.py's
box_mask; both have fewer pixels than num_points (2304), so rand_sample takes all of them (asserted): no randomness.
The region encoder runs on the two regions as one batch of 2 (the official call: the global tile's CLIP input and
hidden_states[-3:] repeated per region; the shorter point list padded with -1 rows); its outputs [2, 128] replace the
two `<region>` token embeddings in order (asserted equal to one region at a time).

The flow (superlink.teacher_forced, with the region rows replaced between the embeddings and the LLM):
  ids -> reference_superlink.splice -> embeddings (query tables, image features) -> `<region>` rows := region
  features -> final_hidden -> project: conds['det'] [2, 256] (patch2query of the two [DET] blocks, mean of 4 queries)
  = the detector's class embeddings.
The detector: reference_gdino on the mmdet input at img_scale (1333, 800) (size_divisor 32, as tiny_detector.py;
NOTE the official interactive test pipeline pads with size_divisor 1), float64; post-processing with topk 10: the top
10 of sigmoid over Q*K (stable order), query = index // K, label = index % K (the region index), boxes xyxy in
original pixels, the queries' mask logits resized as post_process_instseg_gdino (x4 bilinear, crop to the resized
image, bilinear to the original size), masks = sigmoid > 0.5. Also the full ranking of the top min(300, Q*K).

Official differences NOT reproduced (the brief fixes the inputs): the official interactive evaluation builds the
CLIP image by bilinear-resizing the mmdet (1333 x 800, normalised) image to 336 x 336 and re-normalising with CLIP's
mean/std, and its regions are gt masks resized bilinearly then .bool(); here the CLIP input is the anyres global tile
(PIL bicubic) and the regions are boxes (refcoco-style box_mask).
"""
import json
import os
import time

import numpy as np
import torch

import reference_gdino as R
import reference_mllm as ref
import reference_superlink as link
import tiny_detector
import tiny_region
import tiny_visionllm as tiny

IMAGE = 'scene.png'
SCALE = (1333, 800)
BOXES = {'region1': (150, 100, 200, 150), 'region2': (300, 200, 340, 240)}
TOPK = 10
RANK = 300
NEAR = 1e-3
POINT_SEED = 2718

# coco_interactive.py QUESTIONS[0], YES[0]; constant.py DEFAULT_TOKENS
QUESTION_TEMPLATE = 'Can you examine the image and segment the corresponding objects denoted as <regions>?'
ANSWER_TEMPLATE = 'Sure, these objects are <regions>.'
SOR, REG, EOR = '<reg>', '<region>', '</reg>'
NUM_EMBS = 4


def question_text(n):
    return QUESTION_TEMPLATE.replace('<regions>', ', '.join(f'{SOR}region{i + 1}{REG}{EOR}' for i in range(n)))


def answer_text(n):
    return ANSWER_TEMPLATE.replace('<regions>', ', '.join(f'region{i + 1}[DET]' for i in range(n)))


def official_answer(n, num_embs=NUM_EMBS):
    """coco_interactive.py's answer string (num_embs > 1)."""
    str_temp = '[DET]' + '[EMB]' + ''.join(f'[EMB{i}]' for i in range(2, num_embs + 1))
    region_list = [f'region{i + 1}' for i in range(n)]
    return ANSWER_TEMPLATE.replace('<regions>', (str_temp + ', ').join(region_list) + str_temp)


def prompt_ids(sp, added, question, answer, tiles):
    """superlink.teacher_forced's ids: BOS, the Vicuna prompt with the image first, ' ' + answer, EOS."""
    before, after = (ref.vicuna_prompt('<image>\n' + question) + ' ' + answer).split('<image>')
    return ([1] + tiny.tokenize_chunked(sp, added, before) + [added['<im_patch>']] * (576 * tiles)
            + tiny.tokenize_chunked(sp, added, after) + [2])


def generate():
    import cv2  # python3-opencv
    from PIL import Image

    import superlink
    clock = {}
    t = time.time()
    params, config, sp, added = superlink.checkpoint()
    assert config.get('use_region_encoder') and any(k.startswith(tiny_region.PREFIX) for k in params), 'no region encoder in weights/tiny'
    p64 = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}
    path = os.path.join(tiny.IMAGE_DIR, IMAGE)
    image = Image.open(path).convert('RGB')
    w, h = image.size
    tiles = ref.anyres_tiles(image)
    tile = config['vis_encoder_config']['image_size']
    pixels = torch.stack([ref.clip_pixels(x) for x in tiles]).to(torch.float64)
    states = ref.clip_vision_hidden_states(p64, config['vis_encoder_config'], pixels)
    proj = ref.vl_bridge(p64, states[config['vis_output_layer']][:, 1:])
    _, check = superlink.image_tokens(p64, config, image)
    assert torch.equal(proj, check)
    levels = [s[-1:, 1:] for s in states[-3:]]  # the global (last) tile, class token dropped
    clock['clip'] = time.time() - t

    # ---- the regions
    t = time.time()
    names = list(BOXES)
    n = len(names)
    masks, bounds, scaled = [], [], []
    for name in names:
        m, s, b = tiny_region.box_mask(BOXES[name], w, h, tile)
        masks.append(m)
        scaled.append(s)
        bounds.append(b)
    masks = torch.stack(masks)[:, None]  # [n, 1, 336, 336]
    encoder = tiny_region.load_encoder(params, config)
    assert encoder.mask_pool_type == 'grid_sample'
    torch.manual_seed(POINT_SEED)
    points = encoder.draw_points(masks)
    for m, pts in zip(masks, points):
        count = int(m.sum())
        assert count < encoder.num_points, (count, encoder.num_points)
        nz = m[0].nonzero()
        expect = torch.cat([torch.zeros(count, 1), nz[:, :1] / tile, nz[:, 1:] / tile], 1).float()
        assert torch.equal(pts, expect), 'rand_sample did not take every pixel in row-major order'
    trace = {}
    with torch.no_grad():
        feature = encoder(pixels[-1:].expand(n, -1, -1, -1), masks, [l.expand(n, -1, -1) for l in levels],
                          sample_points=points, trace=trace)  # [n, 128]
        for i in range(n):
            one = encoder(pixels[-1:], masks[i:i + 1], levels, sample_points=points[i:i + 1])
            assert (one[0] - feature[i]).abs().max().item() < 1e-12
    clock['region'] = time.time() - t

    # ---- the MLLM and the super link
    t = time.time()
    question, answer = question_text(n), answer_text(n)
    ids = prompt_ids(sp, added, question, answer, len(tiles))
    spliced, blocks, rows = link.splice(ids, added, p64)
    official = prompt_ids(sp, added, question, official_answer(n), len(tiles))
    assert spliced == official, 'the splice differs from the official answer string'
    region_id = added[REG]
    positions = [i for i, x in enumerate(spliced) if x == region_id]
    assert len(positions) == n, positions
    assert [i for i, x in enumerate(ids) if x == region_id] == positions  # the regions come before any splice
    embeds = link.embeddings(p64, spliced, rows, proj, added['<im_patch>'])
    raw = embeds.clone()
    embeds[0, positions] = feature
    hidden = link.final_hidden(p64, config, embeds)
    raw_hidden = link.final_hidden(p64, config, raw)
    conds = link.project(p64, config, blocks, hidden)
    raw_conds = link.project(p64, config, blocks, raw_hidden)
    text = conds['det']
    assert [b[1] for b in blocks] == ['[DET]'] * n and tuple(text.shape) == (n, 256), (blocks, text.shape)
    cond_change = (text - raw_conds['det']).abs().max().item()
    clock['mllm'] = time.time() - t

    # ---- the detector
    t = time.time()
    model = tiny_detector.load_detector(params, config)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    _, padded, pmask = R.mmdet_input(cv2, bgr, SCALE)
    ori, img = bgr.shape[:2], (int(pmask[:, 0].sum()), int(pmask[0].sum()))
    assert tuple(ori) == (h, w)
    pixel_values = torch.from_numpy(padded)[None].double()
    pixel_mask = torch.from_numpy(pmask)[None].long()
    with torch.no_grad():
        out = model(pixel_values, pixel_mask, class_embeddings=text)
        queries = torch.stack([hidden[b[2]] for b in blocks])
        assert (model.text_queries(queries) - text).abs().max().item() < 1e-12
        Q, K = out['logits'].shape
        assert K == n
        det = R.post_process_det_gdino(out['logits'], out['boxes'], ori, TOPK)
        rank = R.post_process_det_gdino(out['logits'], out['boxes'], ori, RANK)
        for key in ('scores', 'labels', 'queries', 'boxes'):
            assert torch.equal(rank[key][:TOPK], det[key]), key
        q = det['queries']
        logits, bits = R.instance_masks(out['masks'][q], img, ori)
    clock['detector'] = time.time() - t
    dec = out['decoder']
    select_gap = superlink.score_gap(dec['scores'][0], config['gdino_config']['num_queries'])
    topk_gap = superlink.score_gap(out['logits'], TOPK)

    tensors = {
        'ids': torch.tensor(ids, dtype=torch.int32),
        'spliced_ids': torch.tensor(spliced, dtype=torch.int32),
        'region_positions': torch.tensor(positions, dtype=torch.int32),
        'region_masks': masks[:, 0].to(torch.uint8),
        'region_features': feature.float(),
        'raw_class_embeddings': raw_conds['det'].float(),
        'class_embeddings': text.float(),
        'topk': dec['topk'][0].to(torch.int32),
        'logits': out['logits'].float(),
        'boxes': out['boxes'].float(),
        'scores': det['scores'].float(),
        'labels': det['labels'].to(torch.int32),
        'queries': det['queries'].to(torch.int32),
        'det_boxes': det['boxes'].float(),
        'rank.scores': rank['scores'].float(),
        'rank.labels': rank['labels'].to(torch.int32),
        'rank.queries': rank['queries'].to(torch.int32),
        'mask_logits': out['masks'][q].float(),
        'masks': torch.from_numpy(np.packbits(bits.numpy().reshape(-1))),
        'near': torch.nonzero((logits.abs() < NEAR * logits.abs().max()).reshape(-1))[:, 0].to(torch.int32),
    }
    prompt = ref.vicuna_prompt('<image>\n' + question)
    metadata = {
        'question': question,
        'answer': answer,
        'official_answer': official_answer(n),
        'prompt': prompt,
        'teacher_forced': prompt + ' ' + answer + '</s>',
        'regions': json.dumps([dict(name=nm, xyxy=list(BOXES[nm]), scaled=s, rows=[b[1], b[3]], cols=[b[0], b[2]],
                                    pixels=int(m.sum()), position=p)
                               for nm, s, b, m, p in zip(names, scaled, bounds, masks, positions)]),
        'boxes': json.dumps({nm: list(BOXES[nm]) for nm in names}),
        'image': json.dumps(dict(file=IMAGE, scale=list(SCALE), ori=list(ori), img=list(img), pad=list(padded.shape[1:]),
                                 tiles=len(tiles), tile=[tile, tile])),
        'topk': str(TOPK),
        'rank': str(min(RANK, Q * K)),
        'select_gap': repr(select_gap),
        'topk_gap': repr(topk_gap),
        'near': str(NEAR),
        'mask_pixels': str(int(bits.sum())),
        'cond_change': repr(cond_change),
        'blocks': json.dumps([[b[1], b[2]] for b in blocks]),
        'spatial_shapes': json.dumps(out['encoder']['spatial_shapes'].tolist()),
    }
    print(f'interactive_tiny: prompt {len(ids)} ids ({len(spliced)} spliced), <region> at {positions}, region pixels '
          f'{[int(m.sum()) for m in masks]}, class-embedding change from the regions {cond_change:.3e}')
    print(f'interactive_tiny: top-{TOPK} labels {det["labels"].tolist()} queries {det["queries"].tolist()} scores '
          f'{[round(s, 4) for s in det["scores"].tolist()]}, selection gap {select_gap:.2e}, top-k gap {topk_gap:.2e}, '
          f'mask pixels {int(bits.sum())}, near {len(tensors["near"])}')
    print('interactive_tiny timings (s): ' + ', '.join(f'{k} {v:.1f}' for k, v in clock.items()))
    return {'interactive_tiny': (tensors, {k: str(v) for k, v in metadata.items()})}
