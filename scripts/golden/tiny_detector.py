"""The tiny checkpoint's Grounding DINO detector (weights/tiny/, gdino.*) and its end-to-end golden
(test/golden/gdino_tiny.safetensors).

install() rewrites weights/tiny/model.safetensors and config.json in place, deterministically and
idempotently: every tensor that is not the detector keeps its bytes (the LLM, CLIP, projections,
gdino.patch2query, unipose, sd, ...), the detector's previous tensors are dropped, and the full
detector (reference_gdino.OVGroundingDinoForObjectDetection at DETECTOR, seeded random weights from
its own generator, stored as F16 to keep the checkpoint small) is added under the release's names.
Its patch2query is the checkpoint's own. config.json's gdino_config gains the detector's keys after
the ones it has. tiny_visionllm.py calls install() after writing the checkpoint.

The golden: the wide test image (test/fixtures/images/wide.png) with 'Detect the person and the dog.'
and the teacher-forced answers 'person[DET], dog[DET]' and 'person[SEG], dog[SEG]' through the tiny
MLLM and the super link (superlink.teacher_forced), then the mmdet input (img_scale 1333 x 800) and
the detector, in float64: the class embeddings, the last-layer logits and boxes, the top-10
detections ([DET]) and the top-3 detections with their masks ([SEG]).
"""
import json
import os
import time

import numpy as np
import torch

import reference_gdino as R
import reference_gdino_swin as swin_ref
import tiny_visionllm as tiny

SEED = 17
DTYPE = torch.float16
DETECTOR = dict(
    R.release_config(),
    backbone_config=swin_ref.SwinConfig(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7).to_json(),
    d_model=256, num_queries=30, encoder_layers=1, decoder_layers=1, encoder_attention_heads=8, decoder_attention_heads=8,
    encoder_ffn_dim=64, decoder_ffn_dim=64, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, mask_dim=32,
    max_text_len=256, l_hidden_size=tiny.LLM['hidden_size'], num_embs=4,
)
KEEP = 'gdino.patch2query.'  # the super link's projection, made by tiny_visionllm.py

IMAGE = 'wide.png'
SCALE = (1333, 800)
QUESTION = 'Detect the person and the dog.'
ANSWERS = {'det': ('person[DET], dog[DET]', 10), 'seg': ('person[SEG], dog[SEG]', 3)}
NEAR = 1e-3


def detector_state(existing):
    """The detector's tensors (release names under gdino.) other than the checkpoint's own patch2query."""
    model = R.OVGroundingDinoForObjectDetection(DETECTOR)
    R.randomize(model, torch.Generator().manual_seed(SEED))
    state = R.named_state(model)
    out = {}
    for k, v in state.items():
        if k.startswith(KEEP):
            assert tuple(existing[k].shape) == tuple(v.shape), f'{k}: checkpoint {tuple(existing[k].shape)}, detector {tuple(v.shape)}'
            continue
        out[k] = v.to(DTYPE) if v.is_floating_point() else v
    return out


def install(directory=tiny.TINY_DIR):
    """Adds the detector to the checkpoint in `directory` (model.safetensors, config.json); returns the tensors added."""
    import superlink
    return superlink.replace_decoder(directory, 'gdino.', KEEP, detector_state, 'gdino_config', DETECTOR, ('d_model', 'l_hidden_size'))


def load_detector(params, config):
    model = R.OVGroundingDinoForObjectDetection(config['gdino_config']).double().eval()
    model.load_state_dict({k[len('gdino.'):]: v.double() if v.is_floating_point() else v
                           for k, v in params.items() if k.startswith('gdino.')}, strict=True)
    return model


def generate():
    import cv2  # python3-opencv
    from PIL import Image

    import superlink
    clock = {}
    t = time.time()
    size = superlink.install_decoder(install, 'tiny detector')
    clock['install'] = time.time() - t

    t = time.time()
    params, config, sp, added_tokens = superlink.checkpoint()
    p64 = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}
    path = os.path.join(tiny.IMAGE_DIR, IMAGE)
    tiles, proj = superlink.image_tokens(p64, config, Image.open(path).convert('RGB'))
    model = load_detector(params, config)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    _, padded, mask = R.mmdet_input(cv2, bgr, SCALE)
    ori, img = bgr.shape[:2], (int(mask[:, 0].sum()), int(mask[0].sum()))
    pixel_values = torch.from_numpy(padded)[None].double()
    pixel_mask = torch.from_numpy(mask)[None].long()
    clock['load'] = time.time() - t

    out_tensors, cases = {}, {}
    for name, (answer, topk) in ANSWERS.items():
        t = time.time()
        ids, spliced, blocks, hidden, conds = superlink.teacher_forced(params=p64, config=config, sp=sp, added=added_tokens, proj=proj,
                                                                       tiles=len(tiles), question=QUESTION, answer=answer)
        text = conds['det']
        clock[f'{name}.mllm'] = time.time() - t
        t = time.time()
        with torch.no_grad():
            out = model(pixel_values, pixel_mask, class_embeddings=text)
            # patch2query inside the detector equals the super link's projection
            queries = torch.stack([hidden[b[2]] for b in blocks])
            assert (model.text_queries(queries) - text).abs().max().item() < 1e-12
            det = R.post_process_det_gdino(out['logits'], out['boxes'], ori, topk)
        clock[f'{name}.detector'] = time.time() - t
        dec = out['decoder']
        out_tensors[f'{name}.ids'] = torch.tensor(ids, dtype=torch.int32)
        out_tensors[f'{name}.class_embeddings'] = text.float()
        out_tensors[f'{name}.topk'] = dec['topk'][0].to(torch.int32)
        out_tensors[f'{name}.logits'] = out['logits'].float()
        out_tensors[f'{name}.boxes'] = out['boxes'].float()
        out_tensors[f'{name}.scores'] = det['scores'].float()
        out_tensors[f'{name}.queries'] = det['queries'].to(torch.int32)
        out_tensors[f'{name}.labels'] = det['labels'].to(torch.int32)
        out_tensors[f'{name}.det_boxes'] = det['boxes'].float()
        case = dict(answer=answer, topk=topk, select_gap=superlink.score_gap(dec['scores'][0], DETECTOR['num_queries']),
                    topk_gap=superlink.score_gap(out['logits'], topk), blocks=[b[1] for b in blocks])
        if name == 'seg':
            q = det['queries']
            logits, bits = R.instance_masks(out['masks'][q], img, ori)
            out_tensors[f'{name}.mask_logits'] = out['masks'][q].float()
            out_tensors[f'{name}.masks'] = torch.from_numpy(np.packbits(bits.numpy().reshape(-1)))
            out_tensors[f'{name}.near'] = torch.nonzero((logits.abs() < NEAR * logits.abs().max()).reshape(-1))[:, 0].to(torch.int32)
            case['mask_pixels'] = int(bits.sum())
        cases[name] = case
        print(f'gdino_tiny {name}: {answer!r}, top-{topk} labels {det["labels"].tolist()} scores '
              f'{[round(s, 4) for s in det["scores"].tolist()]}, selection gap {case["select_gap"]:.2e}, top-k gap {case["topk_gap"]:.2e}')
    print('gdino_tiny timings (s): ' + ', '.join(f'{k} {v:.1f}' for k, v in clock.items()))
    metadata = {
        'question': QUESTION,
        'config': json.dumps(config['gdino_config']),
        'image': json.dumps(dict(file=IMAGE, scale=list(SCALE), ori=list(ori), img=list(img), pad=list(padded.shape[1:]))),
        'spatial_shapes': json.dumps(out['encoder']['spatial_shapes'].tolist()),
        'cases': json.dumps(cases),
        'near': NEAR,
        'checkpoint_bytes': size,
    }
    return {'gdino_tiny': (out_tensors, metadata)}
