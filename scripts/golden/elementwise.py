"""Elementwise ops: activations, scale, and broadcasting add/sub/mul/div, f32 and f16 inputs."""
import torch
import torch.nn.functional as F

from common import exact, randn, rng, stored

UNARY = {
    'relu': torch.relu,
    'gelu': F.gelu,
    'gelu_tanh': lambda x: F.gelu(x, approximate='tanh'),
    'quick_gelu': lambda x: x * torch.sigmoid(1.702 * x),
    'silu': F.silu,
    'sigmoid': torch.sigmoid,
    'scale': lambda x: x * 0.37,
    'rsqrt': lambda x: torch.rsqrt(x + 60),   # the shift (unary's beta) keeps every input positive
}

BINARY = {'add': torch.add, 'sub': torch.sub, 'mul': torch.mul, 'div': torch.div}

# (a shape, b shape): same shape, trailing broadcast, both-sided broadcast, scalar.
BROADCASTS = [((37, 61), (37, 61)), ((37, 61), (61,)), ((3, 1, 5, 7), (4, 1, 7)), ((5, 33), (1,))]


def generate():
    g = rng(1)
    out = {}
    x = randn(g, 37, 61, scale=3.0)
    x.view(-1)[:6] = torch.tensor([-50.0, -20.0, 20.0, 50.0, 0.0, -0.0], dtype=torch.float64)
    for dt in ('f32', 'f16'):
        out[f'x.{dt}'] = stored(x, dt)
        for name, fn in UNARY.items():
            out[f'{name}.{dt}'] = fn(exact(x, dt))
        for i, (sa, sb) in enumerate(BROADCASTS):
            a = randn(g, *sa)
            b = randn(g, *sb)
            b = torch.where(b.abs() < 0.25, torch.full_like(b, 0.5), b)  # keep division well conditioned
            out[f'case{i}.a.{dt}'] = stored(a, dt)
            out[f'case{i}.b.{dt}'] = stored(b, dt)
            for name, fn in BINARY.items():
                out[f'case{i}.{name}.{dt}'] = fn(exact(a, dt), exact(b, dt))
        # Gated activation (SwiGLU and GeGLU): act(first half) * second half of the last dimension.
        gu = randn(g, 5, 2, 2 * 43, scale=2.0)
        out[f'gated.x.{dt}'] = stored(gu, dt)
        xg = exact(gu, dt)
        out[f'swiglu.{dt}'] = F.silu(xg[..., :43]) * xg[..., 43:]
        out[f'geglu.{dt}'] = F.gelu(xg[..., :43]) * xg[..., 43:]
    return {'elementwise': (out, {'scale': 0.37, 'rsqrt_shift': 60, 'cases': len(BROADCASTS)})}
