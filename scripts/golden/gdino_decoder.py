"""Goldens for Grounding DINO's decoder side (src/decoders/gdino/{selection,decoder,mask-head}.ts):
two-stage query selection, the decoder layers with box refinement, the shared heads and the mask
head, from reference_gdino_decoder.py (the official modules) at a tiny config with seeded random
weights, in float64, stored as f32.

Inputs: a random encoder memory over the levels of a 96x128 padded image whose valid region is
76x100 (so valid ratios < 1 and padded cells whose proposals are invalid), text of K = 1, 3 and 80
tokens, and a stride-4 backbone map. The memory seed is chosen so that the top-(num_queries + 1)
scores of every K are apart by more than GAP of their scale (torch.topk's order is then the only
order in f32: no ties, see selection.ts), and the num_queries-th and next apart by more than
BOUNDARY_GAP (the same set with f16 weights, whose order within may differ).
"""
import json

import torch
import torch.nn.functional as F

from reference_gdino_decoder import GdinoDecoderReference

CONFIG = dict(
    d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=64, num_queries=30,
    num_feature_levels=4, decoder_n_points=2, max_text_len=256, mask_dim=32, stage1_channels=24,
)
PADDED = (96, 128)
VALID = (76, 100)
STRIDES = [8, 16, 32, 64]
KS = [1, 3, 80]
MASK_QUERIES = [0, 7, 19, 29]
GAP = 2e-4
BOUNDARY_GAP = 5e-3


def level_shapes():
    shapes = []
    h, w = PADDED[0] // 32, PADDED[1] // 32
    for s in STRIDES[:3]:
        shapes.append((PADDED[0] // s, PADDED[1] // s))
    # The extra level: a 3x3 stride-2 conv (padding 1) on the last stage.
    shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # shared heads appear once
        with torch.no_grad():
            if name.endswith('norm.weight') or ('layer_norm' in name and name.endswith('weight')) or name.endswith('enc_output_norm.weight'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif p.dim() == 1 or name.endswith('in_proj_bias'):
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif name.endswith('query_position_embeddings.weight'):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                fan_in = p[0].numel()
                gain = 1.0
                if 'bbox_embed' in name and name.endswith('layers.2.weight'):
                    gain = 0.3  # keeps boxes away from saturation
                if 'sampling_offsets' in name:
                    gain = 0.5
                p.copy_(gain * torch.randn(p.shape, generator=g, dtype=p.dtype) / fan_in ** 0.5)
        if 'sampling_offsets.bias' in name:
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def masks_and_ratios(shapes):
    pixel = torch.zeros(PADDED, dtype=torch.bool)
    pixel[: VALID[0], : VALID[1]] = True
    masks = [F.interpolate(pixel[None, None].float(), size=s)[0, 0].bool() for s in shapes]  # nearest, as the backbone
    ratios = []
    for m in masks:
        vh, vw = m[:, 0].sum().item(), m[0, :].sum().item()
        ratios.append((vw / m.shape[1], vh / m.shape[0]))  # get_valid_ratio: (width, height)
    return torch.cat([m.flatten() for m in masks]), torch.tensor(ratios, dtype=torch.float64)


def gaps(scores, k):
    """(smallest gap among the top k + 1, gap between the k-th and the next), relative to the scale."""
    top = torch.sort(scores, descending=True).values[: k + 1]
    scale = scores.abs().max()
    return ((top[:-1] - top[1:]).min() / scale).item(), ((top[-2] - top[-1]) / scale).item()


def separated(scores, k):
    inner, boundary = gaps(scores, k)
    return inner > GAP and boundary > BOUNDARY_GAP


def generate():
    c = CONFIG
    torch.manual_seed(0)
    model = GdinoDecoderReference(c).double().eval()
    init_weights(model, 1234)
    shapes = level_shapes()
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    level_start = [0]
    for h, w in shapes[:-1]:
        level_start.append(level_start[-1] + h * w)
    n_tokens = sum(h * w for h, w in shapes)
    valid_mask, ratios = masks_and_ratios(shapes)
    d = c['d_model']
    texts = {k: torch.randn(1, k, d, generator=torch.Generator().manual_seed(100 + k), dtype=torch.float64) for k in KS}
    stage1 = torch.randn(1, c['stage1_channels'], PADDED[0] // 4, PADDED[1] // 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    # A memory whose top scores have no near-ties for any K.
    for seed in range(1000):
        memory = torch.randn(1, n_tokens, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            oq, _, valid = model.model.gen_encoder_output_proposals(memory, ~valid_mask[None], spatial_shapes)
            ok = all(separated((oq[0] @ texts[k][0].T).max(-1).values, c['num_queries']) for k in KS)
        if ok:
            break
    else:
        raise RuntimeError('no memory seed without near-ties')

    tensors = {}
    for name, p in model.state_dict().items():  # aliases included, as a torch save keeps them
        tensors['gdino.' + name] = p.float()
    tensors['memory'] = memory[0].float()
    tensors['padding_mask'] = (~valid_mask).to(torch.int32)
    tensors['valid_ratios'] = ratios.float()
    tensors['stage1'] = stage1.float()
    # Inputs are stored in f32: recompute from the stored values.
    memory = tensors['memory'].double()[None]
    stage1 = tensors['stage1'].double()
    ratios = tensors['valid_ratios'].double()
    model = GdinoDecoderReference(c).double().eval()
    model.load_state_dict({k[len('gdino.'):]: v.double() for k, v in tensors.items() if k.startswith('gdino.')})

    first = True
    for k in KS:
        text = texts[k].float().double()
        tensors[f'text.k{k}'] = text[0].float()
        with torch.no_grad():
            out = model(memory, valid_mask[None], spatial_shapes, ratios[None], text, stage1, MASK_QUERIES)
        if first:
            tensors['mask_features'] = out['mask_features'][0].float()
            tensors['proposals'] = out['proposals'][0].float()
            tensors['proposals_valid'] = out['proposals_valid'][0].to(torch.int32)
            tensors['object_query'] = out['object_query'][0].float()
            first = False
        cls = out['enc_outputs_class'][0]
        assert torch.isinf(cls[:, k:]).all() and cls.shape[-1] == c['max_text_len']
        top = out['topk'][0]
        assert separated(out['scores'][0], c['num_queries'])
        tensors[f'k{k}.scores'] = out['scores'][0].float()
        tensors[f'k{k}.topk'] = top.to(torch.int32)
        tensors[f'k{k}.reference'] = out['reference'][0].float()
        for i in range(c['decoder_layers']):
            tensors[f'k{k}.layer{i}.query_pos'] = out['query_pos'][i][0].float()
            tensors[f'k{k}.layer{i}.hidden'] = out['hs'][0, i].float()
            tensors[f'k{k}.layer{i}.reference'] = out['refs'][0, i].float()
        logits = out['logits'][-1][0]
        assert torch.isinf(logits[:, k:]).all() and (logits[:, k:] < 0).all()
        tensors[f'k{k}.logits'] = logits[:, :k].float()
        tensors[f'k{k}.boxes'] = out['boxes'][-1][0].float()
        tensors[f'k{k}.masks'] = out['masks'][0].float()

    metadata = {
        'config': json.dumps(c),
        'spatial_shapes': json.dumps(shapes),
        'level_start_index': json.dumps(level_start),
        'mask_queries': json.dumps(MASK_QUERIES),
        'ks': json.dumps(KS),
        'memory_seed': seed,
        'gap': GAP,
        'boundary_gap': BOUNDARY_GAP,
    }
    return {'gdino_decoder': (tensors, metadata)}
