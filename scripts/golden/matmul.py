"""Matmul, Linear (x Wᵀ + bias, fused activation), batched matmul and GEMV; f32 and f16 operands."""
import torch
import torch.nn.functional as F

from common import exact, randn, rng, stored


def generate():
    g = rng(3)
    out = {}
    # Odd sizes, not multiples of any tile: M=67, K=129, N=95.
    M, K, N = 67, 129, 95
    a = randn(g, M, K)
    residual = randn(g, M, N)
    b = randn(g, K, N)
    w = randn(g, N, K) * 0.2
    bias = randn(g, N)
    for dt in ('f32', 'f16'):
        out[f'a.{dt}'] = stored(a, dt)
        out[f'b.{dt}'] = stored(b, dt)
        out[f'w.{dt}'] = stored(w, dt)
        out[f'bias.{dt}'] = stored(bias, dt)
        out[f'residual.{dt}'] = stored(residual, dt)
    # Reference products for every (a dtype, b dtype) pair the tests use.
    for adt, bdt in (('f32', 'f32'), ('f32', 'f16'), ('f16', 'f16')):
        A, B, W, BIAS = exact(a, adt), exact(b, bdt), exact(w, bdt), exact(bias, bdt)
        out[f'ab.{adt}.{bdt}'] = A @ B
        out[f'linear.{adt}.{bdt}'] = A @ W.T
        out[f'linear_bias_gelu.{adt}.{bdt}'] = F.gelu(A @ W.T + BIAS)
        out[f'linear_bias_gelu_residual.{adt}.{bdt}'] = F.gelu(A @ W.T + BIAS) + exact(residual, adt)
    # Even K so f16 weights can be read two per load: M=33, K=128, N=77.
    a2, w2, b2 = randn(g, 33, 128), randn(g, 77, 128) * 0.2, randn(g, 77)
    for dt in ('f32', 'f16'):
        out[f'even.a.{dt}'] = stored(a2, dt)
        out[f'even.w.{dt}'] = stored(w2, dt)
        out[f'even.bias.{dt}'] = stored(b2, dt)
        out[f'even.linear_bias_silu.f32.{dt}'] = F.silu(exact(a2, 'f32') @ exact(w2, dt).T + exact(b2, dt))
    # Batched: [2, 3, 17, 33] x [2, 3, 33, 29]; and one a shared by a batch of b.
    ba, bb = randn(g, 2, 3, 17, 33), randn(g, 2, 3, 33, 29)
    shared = randn(g, 17, 33)
    for dt in ('f32', 'f16'):
        out[f'batched.a.{dt}'] = stored(ba, dt)
        out[f'batched.b.{dt}'] = stored(bb, dt)
        out[f'batched.shared.{dt}'] = stored(shared, dt)
        out[f'batched.ab.{dt}'] = exact(ba, dt) @ exact(bb, dt)
        out[f'batched.bT.{dt}'] = stored(bb.transpose(-1, -2).contiguous(), dt)  # same product through transposeB
        out[f'batched.shared_b.{dt}'] = exact(shared, dt) @ exact(bb, dt)
    # GEMV: one row against weights, odd and even K.
    for tag, (k, n) in {'odd': (131, 333), 'even': (256, 300)}.items():
        x, wv, bv = randn(g, 1, k), randn(g, n, k) * 0.1, randn(g, n)
        out[f'gemv.{tag}.x.f32'] = stored(x, 'f32')
        r = randn(g, 1, n)
        out[f'gemv.{tag}.residual.f32'] = stored(r, 'f32')
        for dt in ('f32', 'f16'):
            out[f'gemv.{tag}.w.{dt}'] = stored(wv, dt)
            out[f'gemv.{tag}.bias.{dt}'] = stored(bv, dt)
            out[f'gemv.{tag}.y.{dt}'] = F.silu(exact(x, 'f32') @ exact(wv, dt).T + exact(bv, dt))
            out[f'gemv.{tag}.y_residual.{dt}'] = exact(x, 'f32') @ exact(wv, dt).T + exact(r, 'f32')
    # Fused neighbours of a projection: RMSNorm in front, SwiGLU over gate|up rows, residual after.
    for tag, k in {'even': 128, 'odd': 131}.items():
        h = 37
        x, g_, wv, bv, r = randn(g, 5, k), randn(g, k) * 0.3 + 1.0, randn(g, 2 * h, k) * 0.1, randn(g, 2 * h), randn(g, 5, h)
        out[f'fused.{tag}.x.f32'] = stored(x, 'f32')
        out[f'fused.{tag}.norm.f32'] = stored(g_, 'f32')
        out[f'fused.{tag}.residual.f32'] = stored(r, 'f32')
        xs = exact(x, 'f32')
        normed = xs * torch.rsqrt(xs.pow(2).mean(-1, keepdim=True) + 1e-5) * exact(g_, 'f32')
        for dt in ('f32', 'f16'):
            W, B = exact(wv, dt), exact(bv, dt)
            out[f'fused.{tag}.w.{dt}'] = stored(wv, dt)
            out[f'fused.{tag}.bias.{dt}'] = stored(bv, dt)
            full = normed @ W.T + B
            out[f'fused.{tag}.prenorm.{dt}'] = full
            out[f'fused.{tag}.prenorm_gated_residual.{dt}'] = F.silu(full[:, :h]) * full[:, h:] + exact(r, 'f32')
            plain = xs @ W.T
            out[f'fused.{tag}.gated.{dt}'] = F.gelu(plain[:, :h]) * plain[:, h:]
    # K a multiple of 4 with b transposed: both operands read as quads. Batched, odd M and N.
    qa, qw = randn(g, 2, 19, 36), randn(g, 2, 23, 36) * 0.2
    for dt in ('f32', 'f16'):
        out[f'quads.a.{dt}'] = stored(qa, dt)
        out[f'quads.w.{dt}'] = stored(qw, dt)
        out[f'quads.awT.{dt}'] = exact(qa, dt) @ exact(qw, dt).transpose(-1, -2)
    return {'matmul': (out, {'fused_eps': 1e-5})}
