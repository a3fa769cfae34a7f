"""GroupNorm (SD-1.5 channel counts, 32 groups), LayerNorm2d, nearest upsampling, padding and the
diffusers timestep embedding, f32 and f16. Large inputs are closed-form (hashed.py); outputs sampled.
"""
import json
import math

import torch
import torch.nn.functional as F

from common import exact, stored
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
PADS = {
    'constant': dict(amounts=[1, 2, 1, 3], mode='constant', value=0.5),
    'reflect': dict(amounts=[2, 1, 3, 2], mode='reflect', value=0.0),
    'replicate': dict(amounts=[3, 0, 1, 2], mode='replicate', value=0.0),
    'crop': dict(amounts=[-1, 2, 0, -2], mode='constant', value=0.0),
}
TIMESTEPS = [0.0, 1.0, 499.5, 999.0]
EMBEDDINGS = {
    'sd': dict(dim=320, flip_sin_to_cos=True, downscale_freq_shift=0),
    'odd_default': dict(dim=33, flip_sin_to_cos=False, downscale_freq_shift=1),
}


def timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, max_period=10000):
    """diffusers.models.embeddings.get_timestep_embedding (scale 1), in float32 as diffusers runs it."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - downscale_freq_shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


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
    meta = {'group_norm': {}, 'layer_norm2d': {}, 'pad': PADS, 'timesteps': TIMESTEPS, 'embeddings': EMBEDDINGS}
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
    # Data movement: exact, small enough to store whole.
    x = hashed([2, 3, 5, 7], 500, 1.0)
    out['remap.x'] = stored(x, 'f32')
    out['upsample2'] = F.interpolate(x, scale_factor=2, mode='nearest')
    out['upsample3'] = F.interpolate(x, scale_factor=3, mode='nearest')
    for name, c in PADS.items():
        out[f'pad.{name}'] = F.pad(x, c['amounts'], mode=c['mode'], value=c['value']) if c['mode'] == 'constant' else F.pad(x, c['amounts'], mode=c['mode'])
    t = torch.tensor(TIMESTEPS, dtype=torch.float32)
    for name, c in EMBEDDINGS.items():
        out[f'timestep.{name}'] = timestep_embedding(t, c['dim'], c['flip_sin_to_cos'], c['downscale_freq_shift'])
    return {'norm2d': (out, {'cases': json.dumps(meta)})}
