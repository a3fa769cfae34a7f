"""PyTorch's F.interpolate on float NCHW tensors (bilinear and bicubic, with and without antialias,
align_corners; nearest to a size, as diffusers' Upsample2D does for odd latents), f32 and f16. The input is closed-form (hashed.py); outputs sampled.
"""
import json

import torch
import torch.nn.functional as F

from common import exact, stored
from hashed import hashed, sample_indices


def generate():
    out = {}
    interpolate = {}
    x = hashed((2, 3, 37, 53), 600, 1.0)
    for mode in ('bilinear', 'bicubic'):
        for aa in (False, True):
            for size in ((19, 23), (50, 71), (37, 100)):
                name = f'{mode}.{"aa" if aa else "plain"}.{size[0]}x{size[1]}'
                interpolate[name] = dict(mode=mode, antialias=aa, size=list(size))
                for dt in ('f32', 'f16'):
                    ref = F.interpolate(exact(x, dt), size=size, mode=mode, antialias=aa, align_corners=False)
                    si = sample_indices(ref.numel(), 1024, 5)
                    out[f'interp.{name}.idx'] = torch.from_numpy(si.astype('int32'))
                    out[f'interp.{name}.{dt}'] = ref.reshape(-1)[si]
    for size in ((19, 23), (74, 106), (73, 105)):  # down, exactly x2, and x2 - 1 (an odd latent's skip size)
        name = f'nearest.plain.{size[0]}x{size[1]}'
        interpolate[name] = dict(mode='nearest', antialias=False, size=list(size))
        for dt in ('f32', 'f16'):
            ref = F.interpolate(exact(x, dt), size=size, mode='nearest')
            si = sample_indices(ref.numel(), 1024, 5)
            out[f'interp.{name}.idx'] = torch.from_numpy(si.astype('int32'))
            out[f'interp.{name}.{dt}'] = ref.reshape(-1)[si]
    corners = F.interpolate(x, size=(50, 71), mode='bicubic', align_corners=True)
    ci = sample_indices(corners.numel(), 1024, 6)
    out['interp.align_corners.idx'] = torch.from_numpy(ci.astype('int32'))
    out['interp.align_corners.f32'] = corners.reshape(-1)[ci]
    out['interp.x.f32'] = stored(x, 'f32')
    return {'resize': (out, {'cases': json.dumps({'interpolate': interpolate})})}
