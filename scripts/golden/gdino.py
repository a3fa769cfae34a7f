"""Goldens for the whole Grounding DINO detector (test/golden/gdino.safetensors, and
gdino_resnet_detector.safetensors with a ResNet backbone instead of the release's Swin): a tiny config with
seeded random weights (rounded to f16, stored as F16) under the release's names (`gdino.` + the module tree, decoders.md A.5,
aliases and Swin's relative_position_index buffers included), the mmdet input of a fixture image
(cv2, reference_gdino.mmdet_input) and reference_gdino.OVGroundingDinoForObjectDetection in float64
from the stored f32 values, stored as f32.

Cases (one image, three prompts; class embeddings come from LLM hidden states through patch2query,
both stored so a test can feed either):
  det  K = 3: last-layer logits and boxes, the top-10 detections (post_process_det_gdino) and their
       masks (post_process_instseg_gdino) at the original size
  grd  K = 1: the top-1 detection and its mask (referring)
  sem  K = 4: the semantic class map (process_seg_result)
Each prompt's seed is chosen so that no selection is near a tie: the two-stage top-30 (and the 31st)
are apart by SELECT_GAP of the scores' scale (the boundary by SELECT_BOUNDARY), the top-(k+1) logits
of the post-processing by TOPK_GAP of theirs. Pixels whose mask logit is within NEAR of the largest
|logit| of 0, or whose best two semantic scores are within SEM_NEAR of the best, are listed in
`*.near` (flat indices into the masks or the map).

Cross-checks (generation fails if off): the composed detector equals the slice references run one
after another from its state_dict (the names map back exactly); patch2query equals the super link's
functional MLP; the attentions the decoder and text enhancer use are torch's nn.MultiheadAttention;
the post-processing's top-k equals a stable argsort.
"""
import json
import os
import time
from types import SimpleNamespace

import numpy as np
import torch

import reference_gdino as R
import reference_gdino_decoder as decoder_ref
import reference_gdino_encoder as encoder_ref
import reference_gdino_resnet as resnet_ref
import reference_gdino_swin as swin_ref
import reference_superlink as superlink_ref
from hashed import sample_indices, store_sampled

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'images')
IMAGE = 'wide.png'            # 520 x 260
SCALE = (1333, 201)           # mmdet img_scale (long, short): 201 x 402, padded to 224 x 416 (valid ratios < 1)
TINY = dict(
    R.release_config(),
    backbone_config=swin_ref.SwinConfig(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7).to_json(),
    d_model=32, num_queries=30, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
    encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_n_points=2, decoder_n_points=2, mask_dim=32, l_hidden_size=48,
)
# The same detector on GroundingDinoConfig's default kind of backbone (the miniature's): stage widths as the Swin's.
TINY_RESNET = dict(TINY, backbone_config=resnet_ref.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 2, 1],
                                                                  layer_type='basic').to_json())
WEIGHT_SEED = 4242
CASES = [('det', 3, 10), ('grd', 1, 1), ('sem', 4, None)]  # (name, K, top k)
SELECT_GAP, SELECT_BOUNDARY, TOPK_GAP, NEAR, SEM_NEAR = 1e-4, 1e-3, 2e-3, 1e-3, 1e-4
SAMPLES = 512


def gaps(values, k):
    """(smallest gap among the top k + 1, gap between the k-th and the next), relative to max |values|."""
    top = torch.sort(values.reshape(-1), descending=True).values[: k + 1]
    scale = values.abs().max()
    return ((top[:-1] - top[1:]).min() / scale).item(), ((top[-2] - top[-1]) / scale).item()


def score_gap(logits, k):
    """Smallest gap among the top k + 1 scores as torch computes them (f32 sigmoids): the post-processing's order."""
    top = torch.sort(torch.sigmoid(logits.float()).reshape(-1), descending=True).values[: k + 1]
    return (top[:-1] - top[1:]).min().item()


def separated(out, topk, classes_seen, config):
    inner, boundary = gaps(out['decoder']['scores'][0], config['num_queries'])
    ok = inner > SELECT_GAP and boundary > SELECT_BOUNDARY
    if topk is not None:
        ok = ok and gaps(out['logits'], topk)[0] > TOPK_GAP
    else:  # the semantic map should show more than one class, and few pixels near a tie
        classes, near = classes_seen(out)
        ok = ok and classes >= 2 and near < 0.02
    return ok


def load_image():
    import cv2  # python3-opencv
    bgr = cv2.imread(os.path.join(FIXTURES, IMAGE), cv2.IMREAD_COLOR)
    rgb, padded, mask = R.mmdet_input(cv2, bgr, SCALE)
    return bgr.shape[:2], rgb.shape[:2], padded, mask


def packbits(x):
    return torch.from_numpy(np.packbits(x.numpy().reshape(-1)))


def flat_index(x):
    """Flat indices of the True entries (a sparse bit map)."""
    return torch.nonzero(x.reshape(-1))[:, 0].to(torch.int32)


# ---- cross-checks ----

def substate(state, mapping):
    """Entries of state renamed by the first (from, to) prefix pair that matches; others dropped."""
    out = {}
    for k, v in state.items():
        for a, b in mapping:
            if k.startswith(a):
                out[b + k[len(a):]] = v
                break
    return out


def slices_one_after_another(model, pixel_values, pixel_mask, text):
    """The slice references built on their own, loaded (strict) from the detector's state_dict, run in sequence."""
    c = model.config
    state = model.state_dict()
    flat = SimpleNamespace(**{k: v for k, v in c.items() if k != 'backbone_config'})
    backbone, channels = R.build_backbone(c)
    backbone = backbone.double()
    backbone.load_state_dict(substate(state, [('model.backbone.conv_encoder.model.', '')]), strict=True)
    encoder_side = encoder_ref.GroundingDinoEncoderSide(flat, channels).double()
    encoder_side.load_state_dict(substate(state, [('model.input_proj_vision.', 'input_proj_vision.'), ('model.level_embed', 'level_embed'),
                                                  ('model.encoder.', 'encoder.')]), strict=True)
    decoder_side = decoder_ref.GdinoDecoderReference(SimpleNamespace(**vars(flat), stage1_channels=channels[0])).double()
    skip = ('model.backbone.', 'model.input_proj_vision.', 'model.level_embed', 'model.encoder.')
    decoder_side.load_state_dict({k: v for k, v in state.items() if not k.startswith(skip) and not k.startswith('patch2query.')}, strict=True)
    with torch.no_grad():
        stages = backbone(pixel_values)
        K = text.shape[0]
        enc = encoder_side(stages, pixel_mask, text[None], torch.ones(1, K, dtype=torch.long))
        out = decoder_side(enc['memory'], enc['mask_flatten'], enc['spatial_shapes'], enc['valid_ratios'], enc['text'],
                           stages[0], list(range(c['num_queries'])))
    return out['logits'][-1][0, :, :K], out['boxes'][-1][0], out['masks'][0]


def cross_checks(model, pixel_values, pixel_mask, hidden, out, det):
    text = out['class_embeddings']
    logits, boxes, masks = slices_one_after_another(model, pixel_values, pixel_mask, text)
    for name, a, b in (('logits', logits, out['logits']), ('boxes', boxes, out['boxes']), ('masks', masks, out['masks'])):
        err = (a - b).abs().max().item()
        assert err == 0, f'composed detector != slices one after another: {name} differ by {err:.3e}'
    params = {'gdino.' + k: v for k, v in model.state_dict().items()}
    err = (superlink_ref.mlp(params, 'gdino.patch2query', hidden).mean(-2) - text).abs().max().item()
    assert err < 1e-12, f'patch2query != the super link MLP: {err:.3e}'
    for layer in model.model.decoder.layers:
        assert type(layer.self_attn) is torch.nn.MultiheadAttention and type(layer.encoder_attn_text) is torch.nn.MultiheadAttention
    for layer in model.model.encoder.layers:
        assert type(layer.text_enhancer_layer.self_attn) is torch.nn.MultiheadAttention
    if det is not None:
        prob = out['logits'].float().sigmoid().reshape(-1).numpy()
        order = np.argsort(-prob, kind='stable')[: len(det['scores'])]
        assert (order // out['logits'].shape[1] == det['queries'].numpy()).all() and (order % out['logits'].shape[1] == det['labels'].numpy()).all()
    return 'composed == slices (logits, boxes, masks bit-identical); patch2query == superlink MLP; nn.MultiheadAttention; top-k == argsort'


# ---- the golden ----

def semantic(out, img, ori):
    with torch.no_grad():
        return R.semantic_scores(out['logits'], out['masks'], img, ori)


def semantic_near(sem):
    top2 = torch.topk(sem, 2, dim=0).values
    return top2[0] - top2[1] < SEM_NEAR * top2[0]


def semantic_stats(sem):
    """(classes in the map, fraction of pixels near a tie)."""
    return sem.argmax(0).unique().numel(), semantic_near(sem).double().mean().item()


def build_model(config):
    model = R.OVGroundingDinoForObjectDetection(config).double().eval()
    R.randomize(model, torch.Generator().manual_seed(WEIGHT_SEED))
    backbone = model.slices[0]
    if isinstance(backbone, resnet_ref.ResNetBackbone):
        resnet_ref.randomize(backbone, WEIGHT_SEED)   # running statistics too, as a trained one has them
    # Weights are stored as f16 (f32 and f16 uploads hold the same values): compute from those values.
    with torch.no_grad():
        for p in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            p.copy_(p.half().double())
    return model


def generate():
    return {**golden('gdino', TINY), **golden('gdino_resnet_detector', TINY_RESNET)}


def golden(stem, TINY):
    start = time.time()
    model = build_model(TINY)
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in R.named_state(model).items()}
    ori, img, padded, mask = load_image()
    pixel_values = torch.from_numpy(padded)[None].double()
    pixel_mask = torch.from_numpy(mask)[None].long()
    tensors['pixel_values'] = torch.from_numpy(padded)
    tensors['pixel_mask'] = packbits(torch.from_numpy(mask))
    d, L, E = TINY['d_model'], TINY['l_hidden_size'], TINY['num_embs']
    cases, checks = {}, None
    for ci, (name, K, topk) in enumerate(CASES):
        for seed in range(100 * ci, 100 * ci + 100):
            hidden = torch.randn(K, E, L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float().double()
            with torch.no_grad():
                out = model(pixel_values, pixel_mask, text_query=hidden)
            if separated(out, topk, lambda o: semantic_stats(semantic(o, img, ori)), TINY):
                break
        else:
            raise RuntimeError(f'{name}: no text seed without near-ties')
        dec = out['decoder']
        tensors[f'{name}.text_query'] = hidden.float()
        tensors[f'{name}.class_embeddings'] = out['class_embeddings'].float()
        tensors[f'{name}.encoder_text'] = out['encoder']['text'][0].float()
        tensors[f'{name}.topk'] = dec['topk'][0].to(torch.int32)
        tensors[f'{name}.reference'] = dec['reference'][0].float()
        tensors[f'{name}.logits'] = out['logits'].float()
        tensors[f'{name}.boxes'] = out['boxes'].float()
        case = dict(K=K, seed=seed, select_gaps=gaps(dec['scores'][0], TINY['num_queries']))
        det = None
        with torch.no_grad():
            if topk is not None:
                det = R.post_process_det_gdino(out['logits'], out['boxes'], ori, topk)
                q = det['queries']
                tensors[f'{name}.scores'] = det['scores'].float()
                tensors[f'{name}.queries'] = q.to(torch.int32)
                tensors[f'{name}.labels'] = det['labels'].to(torch.int32)
                tensors[f'{name}.det_boxes'] = det['boxes'].float()
                tensors[f'{name}.mask_logits'] = out['masks'][q].float()
                logits, bits = R.instance_masks(out['masks'][q], img, ori)
                tensors[f'{name}.masks'] = packbits(bits)
                tensors[f'{name}.near'] = flat_index(logits.abs() < NEAR * logits.abs().max())
                case.update(topk=topk, topk_gap=gaps(out['logits'], topk)[0], score_gap=score_gap(out['logits'], topk), mask_pixels=int(bits.sum()))
            else:
                sem = semantic(out, img, ori)
                tensors[f'{name}.classes'] = sem.argmax(0).to(torch.uint8)
                tensors[f'{name}.near'] = flat_index(semantic_near(sem))
                case.update(class_pixels=torch.bincount(sem.argmax(0).reshape(-1), minlength=K).tolist())
        if ci == 0:
            # Sampled intermediates of the first case, to localise a difference.
            for i, m in enumerate(out['stages']):
                store_sampled(tensors, f'stage{i + 1}', m, SAMPLES, 10 + i)
            memory = out['encoder']['memory'][0]
            rows = torch.from_numpy(sample_indices(memory.shape[0], 64, 20))
            tensors[f'{name}.memory_rows'] = rows.to(torch.int32)
            tensors[f'{name}.memory'] = memory[rows].float()
            mf = dec['mask_features'][0]
            store_sampled(tensors, 'mask_features', mf, SAMPLES, 21)
            checks = cross_checks(model, pixel_values, pixel_mask, hidden, out, det)
            enc = out['encoder']
            shapes = dict(spatial_shapes=enc['spatial_shapes'].tolist(), level_start_index=enc['level_start_index'].tolist(),
                          valid_ratios=enc['valid_ratios'][0].tolist(), stages=[list(m.shape) for m in out['stages']],
                          mask_features=list(mf.shape))
        cases[name] = case
        print(f'{stem} {name}: K={K}, seed {seed}, selection gaps {case["select_gaps"][0]:.2e}/{case["select_gaps"][1]:.2e}'
              + (f', top-{topk} gap {case["topk_gap"]:.2e}' if topk else ''))
    print(f'{stem} cross-checks: {checks}')
    metadata = {
        'config': json.dumps(TINY),
        'image': json.dumps(dict(file=IMAGE, scale=list(SCALE), ori=list(ori), img=list(img), pad=list(padded.shape[1:]))),
        'shapes': json.dumps(shapes),
        'cases': json.dumps(cases),
        'gaps': json.dumps(dict(select=SELECT_GAP, select_boundary=SELECT_BOUNDARY, topk=TOPK_GAP, near=NEAR, sem_near=SEM_NEAR)),
        'cross_checks': checks,
    }
    print(f'{stem}: generated in {time.time() - start:.1f} s')
    return {stem: (tensors, metadata)}
