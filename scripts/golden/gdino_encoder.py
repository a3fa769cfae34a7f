"""Goldens for Grounding DINO's encoder side (src/decoders/gdino/{position,encoder}.ts): a tiny
config with seeded random weights under the release names (`gdino.model.` + the module tree,
decoders.md A.5), random stage maps of a padded image, text of K = 1, 3, 7 tokens (and 7 with 5
valid), through reference_gdino_encoder.py (written from the official code) in float64.

Cross-checks against independent formulations (asserted here, so a wrong reference fails to
generate): the text enhancer's nn.MultiheadAttention against a hand-written one, the three sine
embeddings against loops over the documented formula, the deformable attention against
ms_deform_attn.py's own reference, and the fusion's attention against a plain softmax.
"""
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

import ms_deform_attn
import reference_gdino_encoder as R

CONFIG = dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64, num_feature_levels=4,
              encoder_n_points=2, positional_embedding_temperature=20)
STAGE_CHANNELS = [24, 48, 96, 192]
# A padded 160 x 224 input whose valid region is 100 x 150: stride-4..32 maps and the extra stride-2 level.
IMAGE = (160, 224)
VALID = (100, 150)
STAGE_SIZES = [(40, 56), (20, 28), (10, 14), (5, 7)]
TEXT_CASES = [('k1', 1, 1), ('k3', 3, 3), ('k7', 7, 7), ('k7v5', 7, 5)]
BOX_QUERIES = 6
PREFIX = 'gdino.model.'


def seeded_module(config):
    torch.manual_seed(1234)
    m = R.GroundingDinoEncoderSide(config, STAGE_CHANNELS).double()
    R.seed_weights(m, 99, level_embed='level_embed', layer_scales=('vision_param', 'text_param'), input_proj='input_proj_vision')
    return m.eval()


# ---- independent formulations (cross-checks) ----

def sine_loop(values, feats, temperature):
    """sin/cos(v / T^(2 floor(i/2) / feats)) interleaved, element by element: [n] -> [n, feats]."""
    out = np.zeros((len(values), feats))
    for n, v in enumerate(values):
        for i in range(feats):
            a = v / temperature ** (2 * (i // 2) / feats)
            out[n, i] = math.sin(a) if i % 2 == 0 else math.cos(a)
    return out


def pos2d_loop(mask, feats, temperature):
    """The 2-D embedding of a [h, w] mask from its definition: (y half, x half) per position, [h*w, 2*feats]."""
    h, w = mask.shape
    cy = np.cumsum(mask, 0)
    cx = np.cumsum(mask, 1)
    y = cy / (cy[-1:, :] + 1e-6) * 2 * math.pi
    x = cx / (cx[:, -1:] + 1e-6) * 2 * math.pi
    return np.concatenate([sine_loop(y.flatten(), feats, temperature), sine_loop(x.flatten(), feats, temperature)], 1)


def check(name, got, want, tol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    assert err <= tol, f'{name}: cross-check failed, relative error {err:.3e}'


def cross_checks(model, config, out, text, valid):
    d = config.d_model
    # 2-D sine of every level against the loop.
    for l, (h, w) in enumerate(out['spatial_shapes'].tolist()):
        mask = out['mask_flatten'][0, out['level_start_index'][l]:out['level_start_index'][l] + h * w].reshape(h, w).double().numpy()
        check(f'pos level {l}', out['pos'][l][0], pos2d_loop(mask, d // 2, config.positional_embedding_temperature), 1e-5)
    # Text positions against the loop.
    K = text.shape[0]
    ids = torch.tensor([i if i < valid else 0 for i in range(K)])
    check('text pos', R.get_sine_pos_embed(ids[None, :, None], num_pos_feats=d, exchange_xy=False)[0],
          sine_loop(ids.double().numpy() * 2 * math.pi, d, 10000), 1e-5)
    # The text enhancer's nn.MultiheadAttention against a hand-written one (packed in_proj, per-head softmax).
    layer = model.encoder.layers[0].text_enhancer_layer
    t = text[None]
    pos = R.get_sine_pos_embed(ids[None, :, None], num_pos_feats=d, exchange_xy=False).double()
    allowed = torch.eye(K, dtype=torch.bool)
    allowed[:valid, :valid] = True
    got = layer.self_attn(t + pos, t + pos, t, attn_mask=~allowed)[0][0]
    W, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    H = layer.num_heads
    q, k, v = [(x @ W[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d]).view(K, H, d // H).transpose(0, 1) for i, x in enumerate([t[0] + pos[0], t[0] + pos[0], t[0]])]
    s = (q @ k.transpose(1, 2)) / math.sqrt(d // H)
    s = s.masked_fill(~allowed, float('-inf'))
    o = (s.softmax(-1) @ v).transpose(0, 1).reshape(K, d)
    check('text enhancer attention', got, layer.self_attn.out_proj(o), 1e-10)
    # The deformable attention's grid-sample path against ms_deform_attn.py's reference.
    gen = torch.Generator().manual_seed(5)
    shapes = out['spatial_shapes'].tolist()
    S = sum(h * w for h, w in shapes)
    value = torch.randn(1, S, 2, 3, generator=gen, dtype=torch.float64)
    loc = torch.rand(1, 4, 2, len(shapes), 2, 2, generator=gen, dtype=torch.float64) * 1.2 - 0.1
    wts = torch.rand(1, 4, 2, len(shapes), 2, generator=gen, dtype=torch.float64)
    check('ms deform attn', R.multi_scale_deformable_attention(value, out['spatial_shapes'], loc, wts),
          ms_deform_attn.ms_deform_attn_reference(value, shapes, loc, wts), 1e-12)
    # The fusion's two attentions against plain softmaxes over masked scores.
    fusion = model.encoder.layers[0].fusion_layer
    vis = torch.randn(1, S, d, generator=gen, dtype=torch.float64)
    pad = ~out['mask_flatten']
    tpad = torch.arange(K)[None] >= valid
    (dv, _), (dt, _) = fusion.attn(vis, text[None], vision_attention_mask=pad, text_attention_mask=tpad)
    a = fusion.attn
    Hf, dh = a.num_heads, a.head_dim
    split = lambda x: x[0].view(x.shape[1], Hf, dh).transpose(0, 1)
    vq, tk, vv, tv = split(a.vision_proj(vis)), split(a.text_proj(text[None])), split(a.values_vision_proj(vis)), split(a.values_text_proj(text[None]))
    scores = vq @ tk.transpose(1, 2) / math.sqrt(dh)  # [H, S, K]
    ov = scores.masked_fill(tpad[0][None, None], float('-inf')).softmax(-1) @ tv
    ot = scores.transpose(1, 2).masked_fill(pad[0][None, None], float('-inf')).softmax(-1) @ vv
    check('fusion vision<-text', dv[0], a.out_vision_proj(ov.transpose(0, 1).reshape(S, -1)), 1e-10)
    check('fusion text<-vision', dt[0], a.out_text_proj(ot.transpose(0, 1).reshape(K, -1)), 1e-10)


def box_case(config):
    g = torch.Generator().manual_seed(7)
    boxes = torch.rand(1, BOX_QUERIES, 4, generator=g, dtype=torch.float64).float()
    boxes[0, 0] = torch.tensor([0.0, 1.0, 0.5, 0.25])
    emb = R.get_proposal_pos_embed(boxes, config.d_model)
    f = config.d_model // 2
    b = boxes[0].double().numpy() * 2 * math.pi
    loop = np.concatenate([sine_loop(b[:, c], f, 10000) for c in (1, 0, 2, 3)], 1)
    check('box sine', emb[0], loop, 1e-5)
    return boxes[0], emb[0]


def generate():
    config = R.gdino_config(**CONFIG)
    model = seeded_module(config)
    d = config.d_model
    g = torch.Generator().manual_seed(2024)
    stages = [torch.randn(1, c, h, w, generator=g, dtype=torch.float64) for c, (h, w) in zip(STAGE_CHANNELS, STAGE_SIZES)]
    pixel_mask = torch.zeros(1, *IMAGE, dtype=torch.long)
    pixel_mask[:, :VALID[0], :VALID[1]] = 1

    tensors = {PREFIX + k: v.float() for k, v in model.state_dict().items()}
    for i, s in enumerate(stages[1:], start=2):
        tensors[f'input.stage{i}'] = s.float()
    stages = [s.float().double() for s in stages]  # as uploaded
    common = None
    with torch.no_grad():
        for tag, K, valid in TEXT_CASES:
            text = torch.randn(K, d, generator=g, dtype=torch.float64).float().double()
            tmask = (torch.arange(K) < valid).long()[None]
            layers = []
            out = model(stages, pixel_mask, text[None], tmask, keep_layers=layers)
            tensors[f'{tag}.text_in'] = text.float()
            for i, (v, t) in enumerate(layers):
                tensors[f'{tag}.layer{i}.vision'] = v[0].float()
                tensors[f'{tag}.layer{i}.text'] = t[0].float()
            cross_checks(model, config, out, text, valid)
            if common is None:
                common = out
    out = common
    for l, p in enumerate(out['pos']):
        tensors[f'pos.level{l}'] = p[0].float()
    tensors['sources'] = out['sources'][0].float()
    tensors['lvl_pos'] = out['lvl_pos'][0].float()
    tensors['valid_ratios'] = out['valid_ratios'][0].float()
    tensors['reference_points'] = out['reference_points'][0].float()
    tensors['mask_flatten'] = out['mask_flatten'][0].to(torch.int32)
    boxes, box_emb = box_case(config)
    tensors['box.boxes'] = boxes
    tensors['box.embedding'] = box_emb.float()

    metadata = {
        'config': json.dumps({**CONFIG, 'stage_channels': STAGE_CHANNELS}),
        'image': json.dumps({'height': IMAGE[0], 'width': IMAGE[1], 'valid': list(VALID)}),
        'stage_sizes': json.dumps(STAGE_SIZES),
        'spatial_shapes': json.dumps(out['spatial_shapes'].tolist()),
        'level_start_index': json.dumps(out['level_start_index'].tolist()),
        'text_cases': json.dumps([{'tag': t, 'K': k, 'valid': v} for t, k, v in TEXT_CASES]),
        'prefix': PREFIX,
    }
    return {'gdino_encoder': (tensors, metadata)}
