"""A decoding layer's chain of one-row products (src/ops/gemv-chain.ts): the output projection
with its residual, the RMSNorm'd SwiGLU MLP with its residual, then the next layer's normed q|k|v.
Odd sizes (nothing a multiple of 8) and sizes whose rows split into whole steps of 8."""
import torch
import torch.nn.functional as F

from common import exact, randn, rng, stored

EPS = 1e-5


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def generate():
    g = rng(11)
    out = {}
    for tag, (d, ff) in {'odd': (37, 45), 'even': (48, 64)}.items():
        attn, x = randn(g, 1, d), randn(g, 1, d)
        post_norm, next_norm = randn(g, d) * 0.3 + 1.0, randn(g, d) * 0.3 + 1.0
        o, gate_up, down, qkv = randn(g, d, d) * 0.2, randn(g, 2 * ff, d) * 0.2, randn(g, d, ff) * 0.2, randn(g, 3 * d, d) * 0.2
        for name, t in {'attn': attn, 'x': x, 'post_norm': post_norm, 'next_norm': next_norm}.items():
            out[f'{tag}.{name}'] = stored(t, 'f32')
        for dt in ('f32', 'f16'):
            O, GU, D, QKV = (exact(w, dt) for w in (o, gate_up, down, qkv))
            for name, w in {'o': o, 'gate_up': gate_up, 'down': down, 'qkv': qkv}.items():
                out[f'{tag}.{name}.{dt}'] = stored(w, dt)
            x1 = exact(x, 'f32') + exact(attn, 'f32') @ O.T
            both = rms_norm(x1, exact(post_norm, 'f32')) @ GU.T
            h = F.silu(both[:, :ff]) * both[:, ff:]
            x2 = x1 + h @ D.T
            out[f'{tag}.x1.{dt}'] = x1
            out[f'{tag}.h.{dt}'] = h
            out[f'{tag}.x2.{dt}'] = x2
            out[f'{tag}.qkv_out.{dt}'] = rms_norm(x2, exact(next_norm, 'f32')) @ QKV.T
    return {'gemv_chain': (out, {'eps': EPS})}
