"""conv2d references on Stable Diffusion 1.5 shapes (f32 and f16 inputs).

Inputs are closed-form (hashed.py) so the files hold only each case's parameters and sampled
outputs. Spatial sizes are small and odd; the benchmark runs the full 64x64.
"""
import json

import torch
import torch.nn.functional as F

from common import exact
from hashed import hashed, sample_indices

SAMPLES = 2048

# name: batch, cin, h, w, cout, kernel (kh, kw), stride, padding, dilation, groups, upsample, bias, act
CASES = {
    'sd_3x3': dict(n=2, cin=320, h=17, w=19, cout=320, k=(3, 3), stride=1, pad=1, bias=True),
    'sd_1x1': dict(n=2, cin=320, h=13, w=11, cout=640, k=(1, 1), bias=True),
    'sd_1x1_plain': dict(n=1, cin=96, h=7, w=9, cout=40, k=(1, 1), bias=False),
    'sd_downsample': dict(n=2, cin=320, h=17, w=19, cout=320, k=(3, 3), stride=2, pad=1, bias=True),
    'sd_conv_in': dict(n=2, cin=4, h=17, w=19, cout=320, k=(3, 3), stride=1, pad=1, bias=True, act='silu'),
    'sd_upsample': dict(n=1, cin=320, h=9, w=7, cout=320, k=(3, 3), stride=1, pad=1, upsample=2, bias=True),
    'groups32': dict(n=2, cin=320, h=9, w=11, cout=320, k=(3, 3), stride=1, pad=1, groups=32, bias=True),
    'depthwise': dict(n=2, cin=64, h=15, w=13, cout=64, k=(5, 5), stride=1, pad=2, groups=64, bias=True),
    'dilated_odd': dict(n=1, cin=16, h=13, w=17, cout=40, k=(3, 3), stride=1, pad=2, dilation=2, bias=False, act='relu'),
    'rect': dict(n=2, cin=24, h=11, w=14, cout=36, k=(3, 5), stride=(2, 1), pad=(1, 2), bias=True),
    'patchify': dict(n=1, cin=4, h=28, w=21, cout=64, k=(7, 7), stride=7, pad=0, bias=True),
    # Winograd F(2x2, 3x3) edges: odd channel counts, unequal padding, output planes of odd size
    # (the last tile overhangs), upsampling folded into the input transform.
    'odd_3x3_pad2': dict(n=1, cin=7, h=9, w=6, cout=10, k=(3, 3), stride=1, pad=(2, 0), bias=True, act='relu'),
    'odd_3x3_up': dict(n=2, cin=5, h=5, w=3, cout=9, k=(3, 3), stride=1, pad=1, upsample=2, bias=False),
}

ACTS = {'none': lambda v: v, 'silu': F.silu, 'relu': F.relu}


def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def normalised(c):
    """Every parameter explicit, as the tests read them."""
    return dict(
        n=c['n'], cin=c['cin'], h=c['h'], w=c['w'], cout=c['cout'], k=list(c['k']),
        stride=pair(c.get('stride', 1)), pad=pair(c.get('pad', 0)), dilation=pair(c.get('dilation', 1)),
        groups=c.get('groups', 1), upsample=c.get('upsample', 1), bias=c['bias'], act=c.get('act', 'none'),
    )


def generate():
    out = {}
    meta = {}
    for i, (name, raw) in enumerate(CASES.items()):
        c = normalised(raw)
        seed = 100 + 10 * i
        kk = c['cin'] // c['groups'] * c['k'][0] * c['k'][1]
        w_scale = 2.0 ** -round(0.5 * torch.log2(torch.tensor(float(kk))).item())  # ~1/sqrt(fan-in), a power of two
        c.update(seed=seed, x_scale=1.0, w_scale=w_scale, b_scale=0.5)
        meta[name] = c
        x = hashed((c['n'], c['cin'], c['h'], c['w']), seed, c['x_scale'])
        w = hashed((c['cout'], c['cin'] // c['groups'], *c['k']), seed + 1, w_scale)
        b = hashed((c['cout'],), seed + 2, c['b_scale']) if c['bias'] else None
        for dt in ('f32', 'f16'):
            xs = exact(x, dt)
            if c['upsample'] > 1:
                xs = F.interpolate(xs, scale_factor=c['upsample'], mode='nearest')
            ref = F.conv2d(xs, exact(w, dt), exact(b, dt) if b is not None else None,
                           stride=c['stride'], padding=c['pad'], dilation=c['dilation'], groups=c['groups'])
            ref = ACTS[c['act']](ref)
            idx = sample_indices(ref.numel(), SAMPLES, seed)
            out[f'{name}.shape'] = torch.tensor(list(ref.shape), dtype=torch.int32)
            out[f'{name}.idx'] = torch.from_numpy(idx.astype('int32'))
            out[f'{name}.{dt}'] = ref.reshape(-1)[idx]
    return {'conv': (out, {'cases': json.dumps(meta)})}
