"""Spatial remapping of NCHW tensors: nearest upsampling by an integer factor, F.pad (constant,
reflect, replicate; negative amounts crop) and F.max_pool2d. Exact, so the closed-form input (hashed.py) and the
outputs are stored whole.
"""
import json

import torch.nn.functional as F

from common import stored
from hashed import hashed

PADS = {
    'constant': dict(amounts=[1, 2, 1, 3], mode='constant', value=0.5),
    'reflect': dict(amounts=[2, 1, 3, 2], mode='reflect', value=0.0),
    'replicate': dict(amounts=[3, 0, 1, 2], mode='replicate', value=0.0),
    'crop': dict(amounts=[-1, 2, 0, -2], mode='constant', value=0.0),
}

# ResNet's stem pool (3, 2, 1) and others on the odd-sized input; 'negative' pools values all below
# zero, where a zero standing in for the padding would win.
POOLS = {
    'resnet': dict(kernel=3, stride=2, padding=1, shift=0.0),
    'pairs': dict(kernel=2, stride=2, padding=0, shift=0.0),
    'same': dict(kernel=3, stride=1, padding=1, shift=0.0),
    'negative': dict(kernel=3, stride=2, padding=1, shift=-3.0),
}


def generate():
    out = {}
    x = hashed([2, 3, 5, 7], 500, 1.0)
    out['remap.x'] = stored(x, 'f32')
    out['upsample2'] = F.interpolate(x, scale_factor=2, mode='nearest')
    out['upsample3'] = F.interpolate(x, scale_factor=3, mode='nearest')
    for name, c in PADS.items():
        out[f'pad.{name}'] = F.pad(x, c['amounts'], mode=c['mode'], value=c['value']) if c['mode'] == 'constant' else F.pad(x, c['amounts'], mode=c['mode'])
    for name, c in POOLS.items():
        out[f'max_pool.{name}'] = F.max_pool2d(x + c['shift'], c['kernel'], c['stride'], c['padding'])
    return {'spatial': (out, {'cases': json.dumps({'pad': PADS, 'max_pool': POOLS})})}
