"""Rotary position embedding references (Hugging Face's rotate-half, as LLaMA applies it), float64.

Inputs are the closed-form hash of attention.py (test/hash-inputs.ts on the other side); the
golden file holds only outputs. Cases are described in the file's metadata (JSON).
"""
import json

import torch

from attention import hashed


def rope_ref(x, positions, theta, inv_freq=None):
    """Hugging Face LLaMA: f32 inv_freq and angles, rotate_half; cos/sin in float64 of the f32 angles."""
    D = x.shape[-1]
    if inv_freq is None:
        inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = positions.float().unsqueeze(-1) * inv_freq.float()  # f32, as HF multiplies
    emb = torch.cat((freqs, freqs), dim=-1).to(torch.float64)
    cos, sin = emb.cos(), emb.sin()
    half = D // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


CASES = [
    dict(name='rope_d128_theta1e4_start4000', B=1, H=4, L=9, D=128, theta=10000.0, start=4000),
    dict(name='rope_d64_theta5e5_positions', B=2, H=3, L=5, D=64, theta=500000.0, positions=[[0, 7, 4095, 1, 2], [3, 3, 900, 2048, 5]]),
    dict(name='rope_d80_theta1e4_start0', B=1, H=2, L=33, D=80, theta=10000.0, start=0),
]


def generate():
    out = {}
    meta = []
    for idx, c in enumerate(CASES):
        x = hashed([c['B'], c['H'], c['L'], c['D']], 1000 + idx, 2.0)
        if 'positions' in c:
            pos = torch.tensor(c['positions'], dtype=torch.int64)
        else:
            pos = torch.arange(c['start'], c['start'] + c['L'], dtype=torch.int64).unsqueeze(0).expand(c['B'], -1)
        ref = rope_ref(x, pos.unsqueeze(1), c['theta'])
        out[f"{c['name']}.out"] = ref.float()
        meta.append(dict(c, index=idx))
    return {'rope': (out, {'cases': json.dumps(meta)})}
