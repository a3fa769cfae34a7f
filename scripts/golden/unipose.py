"""Goldens for UniPose whole (image -> pose predictions; src/decoders/unipose/model.ts, test/unipose.test.ts): a tiny config with
seeded random weights under the release's names (`unipose.` + state_dict(), aliases included), one padded
random image and three text cases, through reference_unipose.py (the official code composed from the
verified slice references) in float64, stored as f32.

Stored once: `pixel_values` [1, 3, 160, 224] (N(0, 1) in the valid 150 x 211, exactly 0 in the padding;
the pad mask is True outside), every weight `unipose.<name>` (F16, exactly the values computed with;
relative_position_index buffers I32), the backbone maps
`backbone.{0,1,2}` [1, C, h, w], `mask_flatten` I32 (1 = valid token) and `valid_ratios` [4, 2].
Per case {tag} (objects Ko, keypoints Kk): inputs `{tag}.obj_queries` [Ko, 4, 48], `{tag}.kpt_queries`
[Kk, 4, 48]; `{tag}.objects` [Ko, 32], `{tag}.keypoint_text` [68, 32] (the projections; zero rows beyond Kk);
encoder `{tag}.memory` [N, 32], `{tag}.text` [Ko, 32]; selection `{tag}.topk` I32 [30] (best first),
`{tag}.reference0` [30, 4]; group selection `{tag}.groups` I32 [5]; heads `{tag}.logits` [5, Ko],
`{tag}.boxes` [5, 4], `{tag}.keypoints` [5, 204] (xyxy..zz); eval_pose post-processing (num_classes Ko,
topk 100, num_body_points Kk, target = metadata image.ori (h, w)): `{tag}.scores`, `{tag}.labels` I32,
`{tag}.queries` I32 (group index = flat index // Ko), `{tag}.det_boxes` [k, 4], `{tag}.det_keypoints` [k, 3 Kk].

Metadata: config, prefix, image ({pad, valid, ori} as [h, w]), spatial_shapes, level_start_index, num_embs,
weights (F16), cases (tag, objects, keypoints, seed, select_gap, group_gap). A gap is the smallest difference between consecutive sorted scores among the top
num_queries + 1 selection scores (resp. the top num_group + 1 group scores), over the largest |score| of
that vector; cases are reseeded until both exceed MIN_GAP, so the selections are stable in f32.

Asserted here: (a) the composed model's encoder outputs equal a separate UniPoseEncoderSide loaded with the
same weights by name; (b) the group selection, refinements and heads are reference_unipose_pose.py's
functions, the groups are the top num_group of the returned group scores, and outputs() recomputed on the
returned last-layer tensors gives the stored heads; (c) the box layers got no self-attention mask and every
pose layer got exactly prepare_for_mask(kpt_mask, 68, nheads, num_group); (d) the box layers equal Grounding
DINO's decoder (reference_gdino_decoder.GroundingDinoDecoder, a separate implementation of the same loop: query
positions from the valid-ratio-scaled references, post-norm layer, iterative refinement) loaded with the same
weights under Grounding DINO's names, from the same content queries and selected references (the inverse-sigmoid
eps differs, 1e-5 there and 1e-3 here, so the references are asserted to stay clear of both clamps).
"""
import json
from types import SimpleNamespace

import torch

import reference_gdino_decoder as gdino_decoder
import reference_unipose as R
import reference_unipose_encoder as encoder_ref
import reference_unipose_pose as pose_ref

CONFIG = dict(hidden_dim=32, nheads=4, enc_layers=2, dec_layers=4, num_box_decoder_layers=2, dim_feedforward=64,
              num_feature_levels=4, enc_n_points=2, dec_n_points=2, num_queries=30, num_group=5, num_body_points=68,
              pe_temperatureH=20, pe_temperatureW=20, l_hidden_size=48, return_interm_indices=[1, 2, 3],
              dec_pred_bbox_embed_share=True,
              backbone_config=dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7))  # unipose_swin tests a wider Swin
PAD = (160, 224)
VALID = (150, 211)
ORI = (301, 423)  # a pretend original (h, w) for the post-processing
NUM_EMBS = 4
CASES = [('k17', 1, 17), ('k14', 2, 14), ('k68', 1, 68)]  # (tag, objects Ko, keypoints Kk)
PREFIX = 'unipose.'
MODEL_SEED = 31
IMAGE_SEED = 2026
MIN_GAP = 1e-6
# Every weight is rounded to f16 and stored as F16, and the reference computes with those values: f32 and
# f16 uploads then hold the same numbers, so the f16 test makes the same discrete choices (the top-30 has
# scores 1e-4 apart, which f16 rounding of different weights would reorder) and checks the f16 paths.
WEIGHTS_F16 = True


def relative_gap(scores, top):
    s = scores.sort(descending=True)[0][:top]
    return float((s[:-1] - s[1:]).min() / scores.abs().max())


def check(name, got, want, tol=1e-12):
    err = (got.double() - want.double()).abs().max() / max(want.double().abs().max().item(), 1e-30)
    assert err <= tol, f'{name}: cross-check failed, relative error {err:.3e}'


def seeded_model():
    model = R.UniPose(CONFIG).double()
    R.randomize(model, MODEL_SEED)
    with torch.no_grad():  # the values stored are the values computed with
        for name, p in model.named_parameters():
            p.copy_(p.to(torch.float16 if WEIGHTS_F16 else torch.float32).double())
    return model.eval()


def cross_check_encoder(model, out):
    """(a) A separate UniPoseEncoderSide, loaded by name from the composed model, on the same backbone maps."""
    channels = [m.shape[1] for m in out['backbone']]
    side = encoder_ref.UniPoseEncoderSide(CONFIG, channels).double().eval()
    state = model.state_dict()
    side.load_state_dict({k: state[k] for k in side.state_dict()}, strict=True)
    K = out['obj'].shape[0]
    ref = side(out['backbone'], out['pad_mask'], out['obj'][None], torch.ones(1, K, dtype=torch.long))
    check('encoder memory', out['memory'], ref['memory'][0])
    check('encoder text', out['text'], ref['text'][0])


def cross_check_pose(model, out, masks_used):
    c = CONFIG
    # (b) the pose-phase functions are reference_unipose_pose.py's, and their results are consistent
    assert R.select_groups is pose_ref.select_groups and R.refine is pose_ref.refine and R.outputs is pose_ref.outputs
    assert R.prepare_for_mask is pose_ref.prepare_for_mask and R.post_process_pose is pose_ref.post_process_pose
    assert torch.equal(out['groups'], torch.topk(out['group_scores'], c['num_group'])[1])
    assert torch.equal(out['topk'], torch.topk(out['selection_scores'], c['num_queries'])[1])
    last, nb = c['dec_layers'] - 1, c['num_box_decoder_layers']
    logits, boxes, keypoints = pose_ref.outputs(out['hs'], out['reference_in'], out['text'], model.bbox_embed[last],
                                                model.pose_embed[last - nb], c['num_body_points'], c['num_group'])
    check('logits', out['logits'], logits, 0)
    check('boxes', out['boxes'], boxes, 0)
    check('keypoints', out['keypoints'], keypoints, 0)
    # (c) the self-attention masks the layers got
    want = pose_ref.prepare_for_mask(out['kpt_mask'], c['num_body_points'], c['nheads'], c['num_group'])
    assert want.shape == (c['nheads'],) + (c['num_group'] * (1 + c['num_body_points']),) * 2
    assert len(masks_used) == c['dec_layers']
    for layer_id, m in enumerate(masks_used):
        if layer_id < nb:
            assert m is None, f'box layer {layer_id} got a self-attention mask'
        else:
            assert m is not None and torch.equal(m, want), f'pose layer {layer_id}: wrong self-attention mask'


# UniPose decoder-layer leaf -> Grounding DINO's (reference_gdino_decoder.GroundingDinoDecoderLayer)
GDINO_LAYER = {'self_attn': 'self_attn', 'norm2': 'self_attn_layer_norm', 'ca_text': 'encoder_attn_text',
               'catext_norm': 'encoder_attn_text_layer_norm', 'cross_attn': 'encoder_attn', 'norm1': 'encoder_attn_layer_norm',
               'linear1': 'fc1', 'linear2': 'fc2', 'norm3': 'final_layer_norm'}


def cross_check_gdino_box_layers(model, out):
    """(d) The box phase through Grounding DINO's decoder loop."""
    c = CONFIG
    nb = c['num_box_decoder_layers']
    gc = SimpleNamespace(d_model=c['hidden_dim'], decoder_attention_heads=c['nheads'], decoder_n_points=c['dec_n_points'],
                         decoder_ffn_dim=c['dim_feedforward'], decoder_layers=nb, num_feature_levels=c['num_feature_levels'])
    dec = gdino_decoder.GroundingDinoDecoder(gc).double().eval()
    src = model.transformer.decoder
    state = {'layer_norm.' + k: v for k, v in src.norm.state_dict().items()}
    state.update({'reference_points_head.' + k: v for k, v in src.ref_point_head.state_dict().items()})
    for i in range(nb):
        for k, v in src.layers[i].state_dict().items():
            head, tail = k.split('.', 1)
            state[f'layers.{i}.{GDINO_LAYER[head]}.{tail}'] = v
    dec.load_state_dict(state, strict=True)
    dec.bbox_embed = model.bbox_embed
    enc = out['encoder']
    refs = [out['reference0']]
    hs, inter, _, _ = dec(model.transformer.tgt_embed.weight[None], enc['memory'], ~enc['mask_flatten'], enc['text'],
                          ~enc['text_token_mask'], out['reference0'][None], enc['spatial_shapes'],
                          enc['valid_ratios'].double())
    refs += [inter[0, i] for i in range(nb)]
    for r in refs[:-1]:  # the references that go through inverse_sigmoid
        assert r.min() > 1e-3 and r.max() < 1 - 1e-3, 'a reference reached the inverse-sigmoid clamp'
    check('box phase hidden (Grounding DINO decoder)', src.norm(out['box_hidden']), hs[0, -1])
    check('box phase references (Grounding DINO decoder)', out['box_reference'], inter[0, -1])


def generate():
    model = seeded_model()
    c = CONFIG
    d, l_hidden = c['hidden_dim'], c['l_hidden_size']
    g = torch.Generator().manual_seed(IMAGE_SEED)
    pixel_values = torch.zeros(1, 3, *PAD, dtype=torch.float64)
    pixel_values[:, :, :VALID[0], :VALID[1]] = torch.randn(1, 3, *VALID, generator=g, dtype=torch.float64).float().double()
    pad_mask = torch.ones(1, *PAD, dtype=torch.bool)
    pad_mask[:, :VALID[0], :VALID[1]] = False

    tensors = {'pixel_values': pixel_values.float()}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            tensors[PREFIX + k] = v.to(torch.float16 if WEIGHTS_F16 else torch.float32)
        else:
            tensors[PREFIX + k] = v.to(torch.int32)
    cases = []
    first = None
    with torch.no_grad():
        for index, (tag, ko, kk) in enumerate(CASES):
            for attempt in range(50):
                gq = torch.Generator().manual_seed(100 * (index + 1) + attempt)
                obj_q = torch.randn(ko, NUM_EMBS, l_hidden, generator=gq, dtype=torch.float64).float().double()
                kpt_q = torch.randn(kk, NUM_EMBS, l_hidden, generator=gq, dtype=torch.float64).float().double()
                masks_used = []
                out = model(pixel_values, pad_mask, obj_q, kpt_q, masks_used)
                select_gap = relative_gap(out['selection_scores'], c['num_queries'] + 1)
                group_gap = relative_gap(out['group_scores'], c['num_group'] + 1)
                if select_gap > MIN_GAP and group_gap > MIN_GAP:
                    break
            else:
                raise AssertionError(f'{tag}: no seed gave stable selections')
            out['pad_mask'] = pad_mask
            cross_check_encoder(model, out)
            cross_check_pose(model, out, masks_used)
            cross_check_gdino_box_layers(model, out)
            assert out['groups'].unique().numel() == c['num_group']

            # eval_pose.py post_process_pose (labels through the identity id2index)
            G = c['num_group']
            target = torch.tensor([list(ORI)], dtype=torch.float64)
            scores, labels, det_boxes, det_kpts = pose_ref.post_process_pose(
                out['logits'][None], out['boxes'][None], out['keypoints'][None], target, num_classes=ko, topk=100,
                num_body_points=kk)
            prob = out['logits'][None, :, :ko].sigmoid().view(1, -1)
            flat = torch.topk(prob, min(100, prob.shape[1]), dim=1)[1][0]
            queries = torch.div(flat, ko, rounding_mode='floor')
            assert torch.equal(labels[0], flat % ko) and queries.max() < G

            p = f'{tag}.'
            tensors.update({
                p + 'obj_queries': obj_q.float(), p + 'kpt_queries': kpt_q.float(),
                p + 'objects': out['obj'].float(), p + 'keypoint_text': out['kpt'].float(),
                p + 'memory': out['memory'].float(), p + 'text': out['text'].float(),
                p + 'topk': out['topk'].to(torch.int32), p + 'reference0': out['reference0'].float(),
                p + 'groups': out['groups'].to(torch.int32), p + 'logits': out['logits'].float(),
                p + 'boxes': out['boxes'].float(), p + 'keypoints': out['keypoints'].float(),
                p + 'scores': scores[0].float(), p + 'labels': labels[0].to(torch.int32), p + 'queries': queries.to(torch.int32),
                p + 'det_boxes': det_boxes[0].float(), p + 'det_keypoints': det_kpts[0].float(),
            })
            cases.append(dict(tag=tag, objects=ko, keypoints=kk, seed=100 * (index + 1) + attempt,
                              select_gap=float(f'{select_gap:.4g}'), group_gap=float(f'{group_gap:.4g}')))
            if first is None:
                first = out
            else:  # the image side is case-independent
                for i, (a, b) in enumerate(zip(first['backbone'], out['backbone'])):
                    assert torch.equal(a, b), f'backbone.{i} differs between cases'
                assert torch.equal(first['mask_flatten'], out['mask_flatten'])

    for i, m in enumerate(first['backbone']):
        tensors[f'backbone.{i}'] = m.float()
    tensors['mask_flatten'] = (~first['mask_flatten']).to(torch.int32)  # 1 = valid token
    tensors['valid_ratios'] = first['valid_ratios'].float()
    metadata = {
        'config': json.dumps(c),
        'prefix': PREFIX,
        'image': json.dumps({'pad': list(PAD), 'valid': list(VALID), 'ori': list(ORI)}),
        'spatial_shapes': json.dumps(first['spatial_shapes'].tolist()),
        'level_start_index': json.dumps(first['level_start_index'].tolist()),
        'cases': json.dumps(cases),
        'num_embs': str(NUM_EMBS),
        'weights': 'F16' if WEIGHTS_F16 else 'F32',
    }
    return {'unipose': (tensors, metadata)}
