"""Attention references (PyTorch, float64, computed naively).

Every input is generated from a closed-form integer hash that test/hash-inputs.ts reproduces bit for
bit, so the golden files hold only outputs (sampled rows for long sequences). Hash values are
multiples of 1/256 in [-amp, amp) with amp <= 2: exact in f16 and f32, so one reference serves both
storage dtypes.

Cases are described in the file's metadata (JSON) and the tests iterate over them.
"""
import json
import math

import torch

MASK32 = 0xFFFFFFFF


def mul32(x, c):
    """(x * c) mod 2^32 without overflowing int64 (Math.imul in TypeScript)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & MASK32


def hash_u32(index, seed):
    """lowbias32 of (index * golden ratio + seed), elementwise on an int64 tensor."""
    x = (mul32(index, 0x9E3779B1) + seed) & MASK32
    x = x ^ (x >> 16)
    x = mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def hashed(shape, seed, amp=1.0):
    """Values ((h & 1023) - 512) / 512 * amp, amp a power of two: exact in f16."""
    n = math.prod(shape)
    h = hash_u32(torch.arange(n, dtype=torch.int64), seed)
    return (((h & 1023) - 512).to(torch.float64) / 512.0 * amp).reshape(shape)


def attention_ref(q, k, v, scale, causal=False, bias=None, mask=None):
    """softmax(q kᵀ scale + bias + mask) v, naive, float64. q [B,Hq,Lq,D], k/v [B,Hkv,Lk,D]."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = (q @ k.transpose(-1, -2)) * scale
    for term in (bias, mask):
        if term is not None:
            t = term
            while t.dim() < 4:
                t = t.unsqueeze(0)
            reps = B // t.shape[0]
            s = s + t.repeat(reps, 1, 1, 1)
    if causal:
        i = torch.arange(Lq).unsqueeze(1)
        j = torch.arange(Lk).unsqueeze(0)
        s = s.masked_fill(j > i + (Lk - Lq), float('-inf'))
    return torch.softmax(s, dim=-1) @ v


def sampled_rows(L, count=24):
    """Rows checked for long sequences: both ends, the middle, and a spread."""
    if L <= count:
        return list(range(L))
    rows = {0, 1, L // 2, L - 2, L - 1}
    step = L / (count - len(rows))
    rows.update(int(i * step) for i in range(count - len(rows)))
    return sorted(rows)


# Attention cases. Q, K, V use seeds 1, 2, 3 (+ 10 * case index); bias seed 4, mask seed 5.
CASES = [
    # ViT (CLIP-L shape, few heads), non-causal.
    dict(name='vit_577_d64', B=1, Hq=2, Hkv=2, Lq=577, Lk=577, D=64, causal=False, q_amp=2.0),
    # LLaMA prefill, causal, grouped-query 8:4 and full 32:32 heads.
    dict(name='gqa8x4_77_d128_causal', B=1, Hq=8, Hkv=4, Lq=77, Lk=77, D=128, causal=True, q_amp=2.0),
    dict(name='mha32_7_d128_causal', B=1, Hq=32, Hkv=32, Lq=7, Lk=7, D=128, causal=True, q_amp=2.0),
    dict(name='long_1100_d128_causal', B=1, Hq=2, Hkv=1, Lq=1100, Lk=1100, D=128, causal=True, q_amp=2.0),
    dict(name='long_1100_d64', B=1, Hq=2, Hkv=2, Lq=1100, Lk=1100, D=64, causal=False, q_amp=1.0),
    # Prefill after cached tokens: 33 new queries see 100 keys, causal aligned to the end.
    dict(name='chunked_33of100_d128_causal', B=2, Hq=4, Hkv=2, Lq=33, Lk=100, D=128, causal=True, q_amp=2.0),
    # Odd head dim with a per-head bias.
    dict(name='d80_77_bias', B=2, Hq=4, Hkv=4, Lq=77, Lk=77, D=80, causal=False, bias=[4, 77, 77], q_amp=2.0),
    # A head dim that is a multiple of 4 but not 8, grouped 2:1, causal with more keys than queries.
    dict(name='d36_13of29_causal', B=1, Hq=2, Hkv=1, Lq=13, Lk=29, D=36, causal=True, q_amp=2.0),
    dict(name='decode_d36_of_300', B=1, Hq=2, Hkv=2, Lq=1, Lk=300, D=36, causal=False, q_amp=2.0),
    # The largest head dim the kernels take (all four accumulator pairs of the subgroup kernel).
    dict(name='d256_33_causal', B=1, Hq=2, Hkv=1, Lq=33, Lk=33, D=256, causal=True, q_amp=1.0),
    # Cross-attention: many image queries, 77 text keys (U-Net, detector), head dims 40 and 160.
    dict(name='cross_1100x77_d40', B=1, Hq=2, Hkv=2, Lq=1100, Lk=77, D=40, causal=False, q_amp=2.0),
    dict(name='cross_577x77_d160', B=1, Hq=2, Hkv=2, Lq=577, Lk=77, D=160, causal=False, q_amp=1.0),
    # Swin window attention: batch = 2 images x 4 windows, relative position bias per head,
    # shifted-window mask per window (0 / -100 as Swin builds it).
    dict(name='swin_49_d32', B=8, Hq=3, Hkv=3, Lq=49, Lk=49, D=32, causal=False, bias=[3, 49, 49], mask=[4, 1, 49, 49], mask_kind='swin', q_amp=2.0),
    # Key padding mask [B, 1, 1, Lk] (0 / -inf), broadcast over heads and rows.
    dict(name='padmask_7_d64', B=2, Hq=2, Hkv=2, Lq=7, Lk=7, D=64, causal=False, mask=[2, 1, 1, 7], mask_kind='padding', q_amp=2.0),
    # Single token.
    dict(name='single_1_d64', B=1, Hq=2, Hkv=2, Lq=1, Lk=1, D=64, causal=False, q_amp=2.0),
    # Decoding: one query against 1, 513 and 4096 keys, grouped 8:4 (LLaMA-2 70B style) and 32:32.
    dict(name='decode_1_gqa', B=1, Hq=8, Hkv=4, Lq=1, Lk=1, D=128, causal=True, q_amp=2.0),
    dict(name='decode_513_gqa', B=1, Hq=8, Hkv=4, Lq=1, Lk=513, D=128, causal=True, q_amp=2.0),
    dict(name='decode_4096_mha', B=1, Hq=32, Hkv=32, Lq=1, Lk=4096, D=128, causal=True, q_amp=2.0),
    dict(name='decode_4096_d64_mask', B=1, Hq=4, Hkv=2, Lq=1, Lk=4096, D=64, causal=False, mask=[1, 1, 1, 4096], mask_kind='padding', q_amp=2.0),
    # A few new tokens at once (the super-link splices query embeddings after a routing token).
    dict(name='decode_5of300_causal', B=1, Hq=4, Hkv=4, Lq=4, Lk=300, D=64, causal=True, q_amp=2.0),
    # Head dims whose last columns make a partial block of 32: 24 (the tail block alone, 3 columns
    # per lane) and 56 (a whole block and the same tail).
    dict(name='d24_19of23_tail', B=1, Hq=2, Hkv=2, Lq=19, Lk=23, D=24, causal=False, q_amp=2.0),
    dict(name='d56_41_causal_tail', B=1, Hq=2, Hkv=1, Lq=41, Lk=41, D=56, causal=True, q_amp=2.0),
]


def case_inputs(index, c):
    base = 10 * index
    q = hashed([c['B'], c['Hq'], c['Lq'], c['D']], base + 1, c['q_amp'])
    k = hashed([c['B'], c['Hkv'], c['Lk'], c['D']], base + 2, 1.0)
    v = hashed([c['B'], c['Hkv'], c['Lk'], c['D']], base + 3, 1.0)
    bias = hashed(c['bias'], base + 4, 2.0) if 'bias' in c else None
    mask = None
    if 'mask' in c:
        h = hashed(c['mask'], base + 5, 1.0)
        if c['mask_kind'] == 'swin':
            # Swin: 0 within a region, -100 across regions; here a hashed third of the pairs.
            mask = torch.where(h < -1.0 / 3.0, torch.tensor(-100.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
        else:
            # Padding: a hashed quarter of the keys are padding (-inf); key 0 always stays visible.
            mask = torch.where(h < -0.5, torch.tensor(float('-inf'), dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
            mask[..., 0] = 0.0
    return q, k, v, bias, mask


def generate():
    out = {}
    meta = []
    for index, c in enumerate(CASES):
        q, k, v, bias, mask = case_inputs(index, c)
        scale = 1.0 / math.sqrt(c['D'])
        ref = attention_ref(q, k, v, scale, c['causal'], bias, mask)
        rows = sampled_rows(c['Lq'])
        out[f"{c['name']}.out"] = ref[:, :, rows, :].float().contiguous()
        meta.append(dict(c, index=index, rows=rows))
    return {'attention': (out, {'cases': json.dumps(meta)})}
