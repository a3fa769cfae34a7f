"""Row ops over the last dimension: softmax, layernorm, rmsnorm, argmax (f32 and f16 inputs)."""
import torch
import torch.nn.functional as F

from common import exact, randn, rng, stored

SHAPES = {'odd': (67, 129), 'wide': (3, 1100)}


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def generate():
    g = rng(2)
    out = {}
    for dt in ('f32', 'f16'):
        for tag, shape in SHAPES.items():
            x = randn(g, *shape, scale=4.0)
            x[0] += 1000.0  # a row with a large offset: softmax must subtract the max, layernorm must not lose the variance
            w = randn(g, shape[-1]) * 0.5 + 1.0
            b = randn(g, shape[-1])
            xs, ws, bs = exact(x, dt), exact(w, dt), exact(b, dt)
            out[f'{tag}.x.{dt}'] = stored(x, dt)
            out[f'{tag}.w.{dt}'] = stored(w, dt)
            out[f'{tag}.b.{dt}'] = stored(b, dt)
            out[f'{tag}.softmax.{dt}'] = torch.softmax(xs, -1)
            out[f'{tag}.softmax_scaled.{dt}'] = torch.softmax(xs * 0.125, -1)
            out[f'{tag}.layernorm.{dt}'] = F.layer_norm(xs, (shape[-1],), ws, bs, 1e-5)
            out[f'{tag}.layernorm_plain.{dt}'] = F.layer_norm(xs, (shape[-1],), None, None, 1e-5)
            out[f'{tag}.rmsnorm.{dt}'] = rmsnorm(xs, ws, 1e-6)
            out[f'{tag}.argmax.{dt}'] = torch.argmax(xs, -1).to(torch.int32)
    # Ties: argmax must return the first maximum.
    t = torch.zeros(4, 37, dtype=torch.float64)
    t[0, [3, 9]] = 2.0
    t[1, [36, 0]] = 5.0
    t[2, :] = -1.0
    t[3, [7, 8, 20]] = 1.0
    out['ties.x.f32'] = t.float()
    out['ties.argmax.f32'] = torch.argmax(t, -1).to(torch.int32)
    return {'rows': (out, {'layernorm_eps': 1e-5, 'rmsnorm_eps': 1e-6, 'softmax_scale': 0.125})}
