"""Copies: cast, permute, transpose, slice, concat (f32, f16, i32)."""
import torch

from common import randn, rng, stored


def generate():
    g = rng(4)
    out = {}
    x = randn(g, 67, 129, scale=100.0)
    out['cast.x.f32'] = x.float()
    out['cast.f16_bits_as_f32'] = x.float().half().float()   # what the f16 tensor holds after cast
    p = randn(g, 3, 5, 7, 11)
    ints = torch.randint(-2**31, 2**31 - 1, (3, 5, 7, 11), generator=g, dtype=torch.int64).to(torch.int32)
    parts = [randn(g, 3, n, 7) for n in (5, 2, 9)]
    for dt in ('f32', 'f16'):
        out[f'p.{dt}'] = stored(p, dt)
        out[f'permute.{dt}'] = stored(p, dt).permute(2, 0, 3, 1).float()
        out[f'x.{dt}'] = stored(x, dt)
        out[f'transpose.{dt}'] = stored(x, dt).t().float()
        out[f'slice_cols.{dt}'] = stored(x, dt)[:, 5:100].float()
        out[f'slice_rows.{dt}'] = stored(x, dt)[13:50].float()
        for i, t in enumerate(parts):
            out[f'part{i}.{dt}'] = stored(t, dt)
        out[f'concat1.{dt}'] = torch.cat([stored(t, dt) for t in parts], 1).float()
        out[f'concat0.{dt}'] = torch.cat([stored(t, dt).transpose(0, 1).contiguous() for t in parts], 0).float()
    out['p.i32'] = ints
    out['permute.i32'] = ints.permute(2, 0, 3, 1).contiguous()
    return {'copy': (out, {})}
