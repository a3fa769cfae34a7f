"""GroupNorm (SD-1.5 channel counts, 32 groups) and LayerNorm2d, f32 and f16. Large inputs are
closed-form (hashed.py); outputs sampled.
"""
import json

import torch
import torch.nn.functional as F

from common import exact
from hashed import hashed, sample_indices

SAMPLES = 2048

# name: shape, groups, affine, act, eps, offset (a mean far from zero tests the variance's precision).
# Odd and even planes: even ones take the paired-load path.
GROUP_NORMS = {
    'gn320': dict(shape=[2, 320, 9, 7], groups=32, affine=True, act='none', eps=1e-5, offset=0.0),
    'gn640_silu': dict(shape=[1, 640, 6, 9], groups=32, affine=True, act='silu', eps=1e-6, offset=0.0),
    'gn1280_offset': dict(shape=[2, 1280, 3, 5], groups=32, affine=False, act='none', eps=1e-5, offset=48.0),
    'gn_flat': dict(shape=[3, 64], groups=8, affine=True, act='silu', eps=1e-5, offset=0.0),
}
LAYER_NORMS = {
    'ln2d': dict(shape=[2, 96, 7, 9], affine=True, eps=1e-6, offset=0.0),
    'ln2d_plain': dict(shape=[1, 256, 5, 3], affine=False, eps=1e-6, offset=16.0),
}
def norm_inputs(c, seed):
    """A normalisation case's input (hashed, moved by its offset) and its per-channel weight and
    bias, both None where the case has no affine."""
    x = hashed(c['shape'], seed, 4.0) + c['offset']
    if not c['affine']:
        return x, None, None
    ch = c['shape'][1]
    return x, hashed([ch], seed + 1, 0.5) + 1.0, hashed([ch], seed + 2, 0.5)


def exact_or_none(t, dt):
    return None if t is None else exact(t, dt)


def generate():
    out = {}
    meta = {'group_norm': {}, 'layer_norm2d': {}}
    for i, (name, c) in enumerate(GROUP_NORMS.items()):
        seed = 300 + 10 * i
        meta['group_norm'][name] = dict(c, seed=seed)
        x, w, b = norm_inputs(c, seed)
        for dt in ('f32', 'f16'):
            ref = F.group_norm(exact(x, dt), c['groups'], exact_or_none(w, dt), exact_or_none(b, dt), c['eps'])
            if c['act'] == 'silu':
                ref = F.silu(ref)
            idx = sample_indices(ref.numel(), SAMPLES, seed)
            out[f'{name}.idx'] = torch.from_numpy(idx.astype('int32'))
            out[f'{name}.{dt}'] = ref.reshape(-1)[idx]
    for i, (name, c) in enumerate(LAYER_NORMS.items()):
        seed = 400 + 10 * i
        meta['layer_norm2d'][name] = dict(c, seed=seed)
        x, w, b = norm_inputs(c, seed)
        for dt in ('f32', 'f16'):
            xs = exact(x, dt).permute(0, 2, 3, 1)
            ref = F.layer_norm(xs, (x.shape[1],), exact_or_none(w, dt), exact_or_none(b, dt), c['eps'])
            ref = ref.permute(0, 3, 1, 2).contiguous()
            idx = sample_indices(ref.numel(), SAMPLES, seed)
            out[f'{name}.idx'] = torch.from_numpy(idx.astype('int32'))
            out[f'{name}.{dt}'] = ref.reshape(-1)[idx]
    return {'norm2d': (out, {'cases': json.dumps(meta)})}
