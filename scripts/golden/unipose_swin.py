"""UniPose's Swin backbone (test/unipose-swin.test.ts): the normed out maps (return_interm_indices
[1, 2, 3]) of a tiny Microsoft SwinTransformer (reference_unipose_swin.py) for inputs of odd sizes.

Weights are seeded random values rounded to f16 and stored as F16 under the release's names
(`unipose.backbone.0.*`), so f32 and f16 uploads hold the same values; the relative_position_index
buffers are stored too (as I32; the checkpoint holds them), and the loader checks and drops them.
Inputs are closed-form hashes (hashed.py = test/hashed.ts); outputs are sampled (flat NCHW
indices stored beside the values). References in float64.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.append(os.path.dirname(__file__))
from hashed import hashed, sample_indices  # noqa: E402
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location('reference_unipose_swin', os.path.join(os.path.dirname(__file__), 'reference_unipose_swin.py'))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

PREFIX = 'unipose.backbone.0.'
CONFIG = dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7, patch_size=4, out_indices=[1, 2, 3])
SAMPLES = 1024

# (name, height, width, seed)
CASES = [
    ('odd', 257, 291, 11),   # padded to 260x292; maps 33x37 .. 9x10, shifted windows with masks at every stage
    ('small', 98, 130, 13),  # s16 7x9; s32 4x5: padded to one 7x7 window and still shifted (HF would shrink)
    ('thin', 61, 205, 14),   # s8 8x26, s16 4x13, s32 2x7: maps thinner than the window
]


def generate():
    model = reference.SwinTransformer(embed_dim=CONFIG['embed_dim'], depths=CONFIG['depths'], num_heads=CONFIG['num_heads'],
                                      window_size=CONFIG['window_size'], patch_size=CONFIG['patch_size'],
                                      out_indices=CONFIG['out_indices']).double().eval()
    reference.randomize(model, 2025)
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.to(torch.float16).to(torch.float64))
            tensors[PREFIX + name] = p.to(torch.float16)
        for name, b in model.named_buffers():
            tensors[PREFIX + name] = b.to(torch.int32)
        cases = []
        for name, h, w, seed in CASES:
            x = hashed([1, 3, h, w], seed, scale=2.0)
            maps = model(x)
            for i, m in zip(CONFIG['out_indices'], maps):
                flat = m.reshape(-1)
                idx = sample_indices(flat.numel(), SAMPLES, seed * 10 + i)
                tensors[f'{name}.out{i}.index'] = torch.from_numpy(idx.astype(np.int32))
                tensors[f'{name}.out{i}.values'] = flat[torch.from_numpy(idx)].float()
            cases.append({'name': name, 'height': h, 'width': w, 'seed': seed, 'scale': 2.0, 'shapes': [list(m.shape) for m in maps]})
    metadata = {'config': json.dumps(CONFIG), 'prefix': PREFIX.rstrip('.'), 'cases': json.dumps(cases)}
    return {'unipose_swin': (tensors, metadata)}
