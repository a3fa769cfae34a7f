"""Multi-scale deformable attention: the core op and the whole MSDeformAttn module.

References follow the PyTorch formulation of Deformable DETR / Grounding DINO: one F.grid_sample
(bilinear, zero padding, align_corners=False) per level, then the attention-weighted sum; the module
is an nn.Module with Hugging Face's parameter names. Everything is computed in float64.

Large cases (the issue's 100x150 .. 13x19 pyramid, Lq = 900 and Lq = S) take their inputs from a
closed-form integer hash that test/ms-deform-attn-inputs.ts reproduces bit-exactly, and store only the
output rows of a sample of queries. Hashed values are multiples of powers of two with at most 11
significant bits, so they are exact in f32 and in f16.
"""
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- inputs shared with the TypeScript tests ----

PYRAMID = [[100, 150], [50, 75], [25, 38], [13, 19]]
HEADS, HEAD_DIM, POINTS = 8, 32, 4
D_MODEL = HEADS * HEAD_DIM
BATCH = 2
DECODER_QUERIES = 900


def hash32(index, seed):
    """lowbias32 of (index + seed * 0x9E3779B9) mod 2^32, on uint32 arrays."""
    x = (np.asarray(index, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hashed(seed, shape, bits=11, scale=1.0, offset=0):
    """((hash mod 2^bits) - 2^(bits-1) + offset) * scale / 2^(bits-1): exact in f16 for bits <= 11 and power-of-two scales."""
    n = int(np.prod(shape))
    k = (hash32(np.arange(n, dtype=np.uint64), seed) % np.uint32(1 << bits)).astype(np.float64)
    return torch.from_numpy(((k - (1 << (bits - 1)) + offset) * scale / (1 << (bits - 1))).reshape(shape))


def hashed_locations(seed, shape):
    """Sampling locations in [-0.1, 1.1): (hash mod 629146 - 52429) / 2^19, exact in f32."""
    n = int(np.prod(shape))
    k = (hash32(np.arange(n, dtype=np.uint64), seed) % np.uint32(629146)).astype(np.float64)
    return torch.from_numpy(((k - 52429) / (1 << 19)).reshape(shape))


def hashed_weights(seed, shape):
    """Positive attention weights in [0, 1/16): (hash mod 4096) / 65536."""
    n = int(np.prod(shape))
    k = (hash32(np.arange(n, dtype=np.uint64), seed) % np.uint32(4096)).astype(np.float64)
    return torch.from_numpy((k / 65536).reshape(shape))


def tokens(shapes):
    return sum(h * w for h, w in shapes)


def sample_queries(count, n, seed):
    """Query indices to check: the ends, level boundaries when count is a pyramid, and hashed picks."""
    picks = {0, 1, count - 2, count - 1}
    if count == tokens(PYRAMID):
        start = 0
        for h, w in PYRAMID:
            picks.update({start - 1, start, start + w - 1, start + h * w - 1})
            start += h * w
    extra = hash32(np.arange(4 * n, dtype=np.uint64), 99) % np.uint32(count)
    for q in extra.tolist():
        if len(picks) >= n:
            break
        picks.add(q)
    return torch.tensor(sorted(p for p in picks if 0 <= p < count), dtype=torch.int64)


def padding_mask(shapes, batch):
    """Batch 0 unpadded; batch 1 padded right of 4/5 of each level's width and below 9/10 of its height (True = padded)."""
    masks = []
    for b in range(batch):
        parts = []
        for h, w in shapes:
            m = torch.zeros(h, w, dtype=torch.bool)
            if b == 1:
                m[:, (4 * w + 4) // 5:] = True
                m[(9 * h + 9) // 10:, :] = True
            parts.append(m.flatten())
        masks.append(torch.cat(parts))
    return torch.stack(masks)


def encoder_reference_points(shapes, batch):
    """Each token's own pixel centre, normalised, repeated for every level: [B, S, L, 2]."""
    refs = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing='ij')
        refs.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1))
    ref = torch.cat(refs).float().double()  # as the test uploads them: f32
    return ref[None, :, None, :].expand(batch, -1, len(shapes), -1).contiguous()


def decoder_reference_boxes(seed, batch, queries, levels):
    """Boxes (cx, cy, w, h) with centres in [0, 1) and sizes in [1/32, 9/32): [B, Lq, L, 4]."""
    n = batch * queries * levels
    k = hash32(np.arange(4 * n, dtype=np.uint64), seed).reshape(n, 4)
    centre = (k[:, :2] % np.uint32(1 << 16)).astype(np.float64) / (1 << 16)
    size = ((k[:, 2:] % np.uint32(1 << 12)).astype(np.float64) + 512) / (1 << 14)
    return torch.from_numpy(np.concatenate([centre, size], 1).reshape(batch, queries, levels, 4))


# ---- references ----

def ms_deform_attn_reference(value, shapes, locations, weights):
    """PyTorch's formulation: F.grid_sample per level, then the weighted sum. [B, Lq, H*Dh]."""
    B, _, H, Dh = value.shape
    _, Lq, _, L, P, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(B * H, Dh, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False))
    a = weights.transpose(1, 2).reshape(B * H, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(B, H * Dh, Lq)
    return out.transpose(1, 2).contiguous()


class MultiscaleDeformableAttention(nn.Module):
    """Hugging Face's GroundingDino / Deformable-DETR module (parameter names and forward), in float64."""

    def __init__(self, d_model, heads, levels, points):
        super().__init__()
        self.d_model, self.n_heads, self.n_levels, self.n_points = d_model, heads, levels, points
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.double()

    def forward(self, hidden_states, encoder_hidden_states, reference_points, spatial_shapes,
                padding_mask=None, position_embeddings=None):
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        B, Lq, _ = hidden_states.shape
        S = encoder_hidden_states.shape[1]
        H, L, P = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(encoder_hidden_states)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(B, S, H, self.d_model // H)
        offsets = self.sampling_offsets(hidden_states).view(B, Lq, H, L, P, 2)
        weights = F.softmax(self.attention_weights(hidden_states).view(B, Lq, H, L * P), -1).view(B, Lq, H, L, P)
        if reference_points.shape[-1] == 2:
            shapes = torch.tensor(spatial_shapes, dtype=torch.float64)
            normaliser = torch.stack([shapes[:, 1], shapes[:, 0]], -1)
            locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        else:
            locations = reference_points[:, :, None, :, None, :2] + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5
        out = ms_deform_attn_reference(value, spatial_shapes, locations, weights)
        return self.output_proj(out)


def hashed_module(seed, d_model, heads, levels, points):
    """A module whose parameters come from the hash (the TS test rebuilds them by name)."""
    m = MultiscaleDeformableAttention(d_model, heads, levels, points)
    scales = {  # weight, bias amplitudes: offsets of a few pixels, logits of order 1
        'value_proj': (1 / 32, 1 / 8),
        'sampling_offsets': (3 / 8, 2.0),
        'attention_weights': (1 / 4, 1 / 2),
        'output_proj': (1 / 32, 1 / 8),
    }
    with torch.no_grad():
        for i, (name, (ws, bs)) in enumerate(scales.items()):
            lin = getattr(m, name)
            lin.weight.copy_(hashed(seed + 2 * i, tuple(lin.weight.shape), scale=ws))
            lin.bias.copy_(hashed(seed + 2 * i + 1, tuple(lin.bias.shape), scale=bs))
    return m


# ---- golden files ----

def core_cases():
    """Edge cases with small exact inputs stored whole, and the pyramid cases as sampled rows."""
    out, meta = {}, {}
    g = torch.Generator().manual_seed(4)

    def small(tag, shapes, batch, heads, head_dim, points, queries, specials):
        L = len(shapes)
        value = hashed(40 + len(out), (batch, tokens(shapes), heads, head_dim))
        locs = hashed_locations(41 + len(out), (batch, queries, heads, L, points, 2))
        flat = locs.view(-1)
        picks = torch.randperm(flat.numel(), generator=g)[:len(specials) * 6]
        flat[picks] = torch.tensor(specials, dtype=torch.float64).repeat(6)
        for level in range(L):  # whole points on the corners and the centre of every level
            for (q, h), xy in zip([(0, 0), (0, 1), (1, 0), (1, 1 % heads), (2, 0)], [(0, 0), (1, 1), (0, 1), (1, 0), (0.5, 0.5)]):
                locs[0, q, h, level, 0] = torch.tensor(xy, dtype=torch.float64)
        weights = hashed_weights(42 + len(out), (batch, queries, heads, L, points))
        out[f'{tag}.value'] = value.float()
        out[f'{tag}.locations'] = locs.float()
        out[f'{tag}.weights'] = weights.float()
        out[f'{tag}.out'] = ms_deform_attn_reference(value, shapes, locs.float().double(), weights)
        meta[tag] = {'shapes': shapes}

    # Levels of 1x1, 1xN and Nx1; odd heads, channels and points; locations exactly 0 and 1, on
    # pixel edges, just outside and far outside [0, 1].
    edge_specials = [0.0, 1.0, 0.5, -0.25, 1.25, -1e-3, 1 + 1e-3, -3.0, 5.0, 1 / 7, 1 / 9, 1 / 18]
    small('edge', [[1, 1], [1, 7], [6, 1], [5, 9]], 2, 3, 5, 3, 13, edge_specials)
    # Two channel groups (Dh 40), L*P = 10 points (not a multiple of 8).
    small('wide', [[3, 4], [2, 2]], 2, 2, 40, 5, 7, [0.0, 1.0, -0.5, 1.5])

    S = tokens(PYRAMID)
    for tag, queries in (('decoder', DECODER_QUERIES), ('encoder', S)):
        value = hashed(10, (BATCH, S, HEADS, HEAD_DIM))
        picks = sample_queries(queries, 48, 7)
        locs = hashed_locations(11 if tag == 'decoder' else 12, (BATCH, queries, HEADS, len(PYRAMID), POINTS, 2))[:, picks]
        weights = hashed_weights(13 if tag == 'decoder' else 14, (BATCH, queries, HEADS, len(PYRAMID), POINTS))[:, picks]
        out[f'{tag}.queries'] = picks.to(torch.int32)
        out[f'{tag}.out'] = ms_deform_attn_reference(value, PYRAMID, locs, weights)
        meta[tag] = {'shapes': PYRAMID, 'queries': queries, 'value_seed': 10,
                     'location_seed': 11 if tag == 'decoder' else 12, 'weight_seed': 13 if tag == 'decoder' else 14}
    return out, {'cases': json.dumps(meta), 'heads': HEADS, 'head_dim': HEAD_DIM, 'points': POINTS, 'batch': BATCH}


def module_cases():
    out, meta = {}, {}
    # A small module saved with its real state_dict names under a Grounding DINO prefix.
    prefix = 'model.decoder.layers.0.encoder_attn.'
    shapes = [[4, 5], [2, 3], [1, 1]]
    torch.manual_seed(5)
    m = MultiscaleDeformableAttention(32, 4, len(shapes), 2)
    with torch.no_grad():
        m.sampling_offsets.weight.mul_(4)
        m.sampling_offsets.bias.normal_(0, 2)
        for t in m.parameters():
            t.copy_(t.float().double())  # the reference uses exactly the f32 values the test uploads
    for name, t in m.state_dict().items():
        out[prefix + name] = t.float()
    S = tokens(shapes)
    src = torch.randn(2, S, 32, dtype=torch.float64).float().double()
    mask = padding_mask(shapes, 2)
    query = torch.randn(2, 6, 32, dtype=torch.float64).float().double()
    pos = (torch.randn(2, 6, 32, dtype=torch.float64) * 0.1).float().double()
    boxes = decoder_reference_boxes(3, 2, 6, len(shapes)).float().double()
    points = torch.rand(2, 6, len(shapes), 2, dtype=torch.float64).float().double()
    out['small.input'] = src.float()
    out['small.mask'] = mask.to(torch.int32)
    out['small.query'] = query.float()
    out['small.pos'] = pos.float()
    out['small.boxes'] = boxes.float()
    out['small.points'] = points.float()
    with torch.no_grad():
        out['small.out_boxes'] = m(query, src, boxes, shapes, mask, pos)
        out['small.out_points'] = m(query, src, points, shapes, mask, pos)
        out['small.out_unmasked'] = m(query, src, boxes, shapes, None, pos)
    meta['small'] = {'prefix': prefix, 'shapes': shapes, 'd_model': 32, 'heads': 4, 'points': 2}

    # The pyramid: an encoder layer (Lq = S, 2-d reference points, query = input + pos) and a
    # decoder layer (900 queries, 4-d reference boxes), batch 2 with batch 1 padded.
    S = tokens(PYRAMID)
    L = len(PYRAMID)
    big = hashed_module(20, D_MODEL, HEADS, L, POINTS)
    src = hashed(30, (BATCH, S, D_MODEL))
    mask = padding_mask(PYRAMID, BATCH)
    with torch.no_grad():
        value = big.value_proj(src).masked_fill(mask[..., None], 0.0)

        def run(queries, refs, pos, picks):
            # Only the sampled queries' rows are computed: queries are independent given the value.
            q = queries[:, picks] + pos[:, picks]
            r = refs[:, picks]
            B, n, _ = q.shape
            offsets = big.sampling_offsets(q).view(B, n, HEADS, L, POINTS, 2)
            w = F.softmax(big.attention_weights(q).view(B, n, HEADS, L * POINTS), -1).view(B, n, HEADS, L, POINTS)
            if r.shape[-1] == 2:
                sh = torch.tensor(PYRAMID, dtype=torch.float64)
                locs = r[:, :, None, :, None, :] + offsets / torch.stack([sh[:, 1], sh[:, 0]], -1)[None, None, None, :, None, :]
            else:
                locs = r[:, :, None, :, None, :2] + offsets / POINTS * r[:, :, None, :, None, 2:] * 0.5
            att = ms_deform_attn_reference(value.view(B, S, HEADS, HEAD_DIM), PYRAMID, locs, w)
            return big.output_proj(att)

        picks = sample_queries(S, 48, 8)
        out['encoder.queries'] = picks.to(torch.int32)
        out['encoder.out'] = run(src, encoder_reference_points(PYRAMID, BATCH), hashed(31, (BATCH, S, D_MODEL), scale=1 / 4), picks)
        picks = sample_queries(DECODER_QUERIES, 48, 9)
        out['decoder.queries'] = picks.to(torch.int32)
        query = hashed(32, (BATCH, DECODER_QUERIES, D_MODEL))
        boxes = decoder_reference_boxes(33, BATCH, DECODER_QUERIES, L).float().double()
        out['decoder.out'] = run(query, boxes, hashed(34, (BATCH, DECODER_QUERIES, D_MODEL), scale=1 / 4), picks)
        # Cross-check of the row-sampled shortcut against the whole nn.Module on a few decoder queries.
        few = torch.arange(5)
        full = big(query[:, :5], src, boxes[:, :5], PYRAMID, mask, hashed(34, (BATCH, DECODER_QUERIES, D_MODEL), scale=1 / 4)[:, :5])
        assert torch.allclose(full, run(query, boxes, hashed(34, (BATCH, DECODER_QUERIES, D_MODEL), scale=1 / 4), few), atol=1e-9)
    meta['pyramid'] = {'shapes': PYRAMID, 'module_seed': 20, 'input_seed': 30, 'pos_seed': 31, 'query_seed': 32,
                       'box_seed': 33, 'query_pos_seed': 34, 'decoder_queries': DECODER_QUERIES}
    return out, {'cases': json.dumps(meta), 'heads': HEADS, 'points': POINTS, 'batch': BATCH, 'd_model': D_MODEL}


def generate():
    return {
        'ms_deform_attn': core_cases(),
        'ms_deform_attn_module': module_cases(),
    }
