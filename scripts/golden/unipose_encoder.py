"""Goldens for UniPose's encoder side and one box-phase decoder layer (GdinoEncoder / GdinoDecoderLayer
loaded with src/decoders/unipose/names.ts): a tiny config with seeded random weights under UniPose's
names (`unipose.` + the module tree, decoders.md B.5), random backbone maps of a padded image and
object text of K = 1 and 3, through reference_unipose_encoder.py (written from the official code) in
float64, stored as f32.

Cross-check (asserted here, so a wrong reference fails to generate): the same weights, renamed to
Grounding DINO's, through reference_gdino_encoder.py give the same encoder outputs; that is the claim
the shared modules rest on (same order, same fusion maths, same position embeddings).
"""
import json

import numpy as np
import torch
import torch.nn.functional as F

import reference_gdino_encoder as G
import reference_unipose_encoder as U

CONFIG = dict(hidden_dim=32, nheads=4, enc_layers=2, dec_layers=1, dim_feedforward=64, num_feature_levels=4,
              enc_n_points=2, dec_n_points=2, num_queries=30, pe_temperatureH=20, pe_temperatureW=20)
BACKBONE_CHANNELS = [48, 96, 192]
IMAGE = (160, 224)
VALID = (100, 150)
STAGE_SIZES = [(20, 28), (10, 14), (5, 7)]
TEXT_CASES = [('k1', 1), ('k3', 3)]
DECODER_TEXT = 'k3'
PREFIX = 'unipose.'

# UniPose name -> Grounding DINO name (the tables of src/decoders/{unipose,gdino}/names.ts), longest first.
RENAMES = [
    (r'transformer\.encoder\.fusion_layers\.(\d+)\.', r'encoder.layers.\1.fusion_layer.'),
    (r'transformer\.encoder\.text_layers\.(\d+)\.', r'encoder.layers.\1.text_enhancer_layer.'),
    (r'transformer\.encoder\.layers\.(\d+)\.', r'encoder.layers.\1.deformable_layer.'),
    (r'^transformer\.level_embed$', 'level_embed'),
    (r'^input_proj\.', 'input_proj_vision.'),
]
LEAVES = {
    'fusion_layer': {'layer_norm_v': 'layer_norm_vision', 'layer_norm_l': 'layer_norm_text', 'gam_v': 'vision_param', 'gam_l': 'text_param',
                     'attn.v_proj': 'attn.vision_proj', 'attn.l_proj': 'attn.text_proj', 'attn.values_v_proj': 'attn.values_vision_proj',
                     'attn.values_l_proj': 'attn.values_text_proj', 'attn.out_v_proj': 'attn.out_vision_proj', 'attn.out_l_proj': 'attn.out_text_proj'},
    'text_enhancer_layer': {'linear1': 'fc1', 'linear2': 'fc2', 'norm1': 'layer_norm_before', 'norm2': 'layer_norm_after'},
    'deformable_layer': {'linear1': 'fc1', 'linear2': 'fc2', 'norm1': 'self_attn_layer_norm', 'norm2': 'final_layer_norm'},
}


def to_gdino_name(name):
    import re
    for pat, rep in RENAMES:
        new = re.sub(pat, rep, name)
        if new != name:
            name = new
            break
    for scope, leaves in LEAVES.items():
        marker = f'.{scope}.'
        if marker in name:
            head, tail = name.split(marker)
            for a, b in leaves.items():
                if tail.startswith(a + '.') or tail == a:
                    tail = b + tail[len(a):]
                    break
            return head + marker + tail
    return name


def seeded_module():
    torch.manual_seed(1234)
    m = U.UniPoseEncoderSide(CONFIG, BACKBONE_CHANNELS).double()
    G.seed_weights(m, 77, level_embed='transformer.level_embed', layer_scales=('gam_v', 'gam_l'), input_proj='input_proj')
    return m.eval()


def check(name, got, want, tol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    assert err <= tol, f'{name}: cross-check failed, relative error {err:.3e}'


def cross_check_gdino(model, features, pixel_mask, text, layers):
    """The UniPose weights under Grounding DINO's names, through Grounding DINO's modules."""
    c = CONFIG
    config = G.gdino_config(d_model=c['hidden_dim'], encoder_layers=c['enc_layers'], encoder_attention_heads=c['nheads'],
                            encoder_ffn_dim=c['dim_feedforward'], num_feature_levels=c['num_feature_levels'],
                            encoder_n_points=c['enc_n_points'], positional_embedding_temperature=c['pe_temperatureH'])
    gd = G.GroundingDinoEncoderSide(config, [8] + BACKBONE_CHANNELS).double().eval()
    state = {to_gdino_name(k): v for k, v in model.state_dict().items() if not k.startswith('transformer.decoder.')}
    gd.load_state_dict(state, strict=True)
    keep = []
    stage0 = torch.zeros(1, 8, 40, 56, dtype=torch.float64)  # unused: Grounding DINO reads the last three stages
    gd([stage0] + features, pixel_mask.long(), text[None], torch.ones(1, text.shape[0], dtype=torch.long), keep_layers=keep)
    for i, ((v, t), (uv, ut)) in enumerate(zip(keep, layers)):
        check(f'gdino layer {i} vision', v, uv, 1e-10)
        check(f'gdino layer {i} text', t, ut, 1e-10)


def generate():
    model = seeded_module()
    d = CONFIG['hidden_dim']
    g = torch.Generator().manual_seed(2025)
    features = [torch.randn(1, ch, h, w, generator=g, dtype=torch.float64).float().double() for ch, (h, w) in zip(BACKBONE_CHANNELS, STAGE_SIZES)]
    pixel_valid = torch.zeros(1, *IMAGE, dtype=torch.bool)
    pixel_valid[:, :VALID[0], :VALID[1]] = True
    pad_mask = ~pixel_valid  # NestedTensor.mask: True at padding

    tensors = {PREFIX + k: v.float() for k, v in model.state_dict().items()}
    for i, f in enumerate(features):
        tensors[f'input.stage{i + 1}'] = f.float()
    outs = {}
    with torch.no_grad():
        for tag, K in TEXT_CASES:
            text = torch.randn(K, d, generator=g, dtype=torch.float64).float().double()
            layers = []
            out = model(features, pad_mask, text[None], torch.ones(1, K, dtype=torch.long), keep_layers=layers)
            tensors[f'{tag}.text_in'] = text.float()
            for i, (v, t) in enumerate(layers):
                tensors[f'{tag}.layer{i}.vision'] = v[0].float()
                tensors[f'{tag}.layer{i}.text'] = t[0].float()
            cross_check_gdino(model, features, pixel_valid, text, layers)
            outs[tag] = out

        # One box-phase decoder layer over the k3 encoder outputs (as stored: f32).
        out = outs[DECODER_TEXT]
        Q = CONFIG['num_queries']
        memory = out['memory'][0].float().double()
        text = out['text'][0].float().double()
        tgt = torch.randn(Q, d, generator=g, dtype=torch.float64).float().double()
        ref = torch.sigmoid(torch.randn(Q, 4, generator=g, dtype=torch.float64) * 1.2).float().double()
        ratios = out['valid_ratios'][0].float().double()  # [L, 2]
        ref_in = ref[:, None] * torch.cat([ratios, ratios], -1)[None]  # [Q, L, 4]
        dec = model.transformer.decoder
        query_pos = dec.ref_point_head(G.get_proposal_pos_embed(ref_in[None, :, 0, :], d))[0]  # gen_sineembed_for_position (y, x, w, h)
        layer = dec.layers[0]
        hidden = layer(tgt[:, None], query_pos[:, None], ref_in[:, None], text[None], ~out['text_token_mask'], memory[:, None],
                       out['mask_flatten'], out['level_start_index'], out['spatial_shapes'])[:, 0]
        # The same layer with a self-attention mask (True = blocked, as attn_mask2 in the pose phase: groups of 5
        # queries plus random openings, the diagonal always open) and the last text token masked as padding.
        blocked = torch.rand(Q, Q, generator=g) > 0.3
        group = torch.arange(Q) // 5
        blocked &= group[:, None] != group[None, :]
        blocked.fill_diagonal_(False)
        text_pad = torch.zeros(1, text.shape[0], dtype=torch.bool)
        text_pad[0, -1] = True
        masked = layer(tgt[:, None], query_pos[:, None], ref_in[:, None], text[None], text_pad, memory[:, None],
                       out['mask_flatten'], out['level_start_index'], out['spatial_shapes'], self_attn_mask=blocked)[:, 0]
    tensors['dec.self_blocked'] = blocked.to(torch.int32)
    tensors['dec.out_masked'] = masked.float()
    tensors['dec.tgt'] = tgt.float()
    tensors['dec.reference'] = ref.float()
    tensors['dec.query_pos'] = query_pos.float()
    tensors['dec.out'] = hidden.float()
    tensors['dec.hidden'] = dec.norm(hidden).float()
    out = outs['k1']
    tensors['sources'] = out['sources'][0].float()
    tensors['lvl_pos'] = out['lvl_pos'][0].float()
    tensors['valid_ratios'] = out['valid_ratios'][0].float()
    tensors['mask_flatten'] = (~out['mask_flatten'][0]).to(torch.int32)  # 1 = valid, as gdino_encoder stores it

    metadata = {
        'config': json.dumps(CONFIG),
        'backbone_channels': json.dumps(BACKBONE_CHANNELS),
        'image': json.dumps({'height': IMAGE[0], 'width': IMAGE[1], 'valid': list(VALID)}),
        'stage_sizes': json.dumps(STAGE_SIZES),
        'spatial_shapes': json.dumps(out['spatial_shapes'].tolist()),
        'level_start_index': json.dumps(out['level_start_index'].tolist()),
        'text_cases': json.dumps([{'tag': t, 'K': k} for t, k in TEXT_CASES]),
        'decoder_text': DECODER_TEXT,
        'prefix': PREFIX,
    }
    return {'unipose_encoder': (tensors, metadata)}
