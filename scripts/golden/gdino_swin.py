"""Grounding DINO's Swin backbone (test/gdino-swin.test.ts): the four normed stage maps of a tiny
Hugging Face SwinBackbone (reference_gdino_swin.py) for inputs of several sizes.

Weights are seeded random values rounded to f16 and stored as F16 under the release's names
(`gdino.model.backbone.conv_encoder.model.*`), so f32 and f16 uploads hold the same values; the
relative_position_index buffers are left out (the loader computes them, as HF's __init__ does).
Inputs are closed-form hashes (hashed.py = test/hashed.ts); outputs are sampled (flat NCHW
indices stored beside the values). References in float64.
"""
import json
import os
import sys

import torch

sys.path.append(os.path.dirname(__file__))
from hashed import hashed, store_sampled  # noqa: E402
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location('reference_gdino_swin', os.path.join(os.path.dirname(__file__), 'reference_gdino_swin.py'))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

PREFIX = 'gdino.model.backbone.conv_encoder.model.'
CONFIG = reference.SwinConfig(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7, patch_size=4)
SAMPLES = 1024

# (name, height, width, seed). beyond_hf: a stage map smaller than the window on one side, where
# HF 4.34 raises (see reference_gdino_swin.py); the golden holds this implementation's extension.
CASES = [
    ('odd', 257, 291, 11),       # input padded to 260x292; maps 65x73 .. 9x10, shifted windows with masks at every stage
    ('s32_side_7', 224, 320, 12),  # s32 7x10: window 7 without shift; widths not multiples of 7 x stride
    ('small', 98, 130, 13),      # 100x132: s16 7x9 unshifted, s32 4x5 with a 4x4 window
    ('thin', 64, 224, 14),       # s16 4x14 and s32 2x7: windows of 4 and 2
]


def beyond_hf(h, w):
    p = CONFIG.patch_size
    h, w = -(-h // p), -(-w // p)
    for _ in CONFIG.depths:
        if min(h, w) < CONFIG.window_size:
            return True
        h, w = (h + 1) // 2, (w + 1) // 2
    return False


def generate():
    model = reference.SwinBackbone(CONFIG).double().eval()
    reference.randomize(model, 2024)
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.to(torch.float16).to(torch.float64))
            tensors[PREFIX + name] = p.to(torch.float16)
        cases = []
        for name, h, w, seed in CASES:
            x = hashed([1, CONFIG.num_channels, h, w], seed, scale=2.0)
            maps = model(x)
            for i, m in enumerate(maps):
                store_sampled(tensors, f'{name}.stage{i + 1}', m, SAMPLES, seed * 10 + i)
            cases.append({'name': name, 'height': h, 'width': w, 'seed': seed, 'scale': 2.0, 'beyond_hf': beyond_hf(h, w),
                          'shapes': [list(m.shape) for m in maps]})
    metadata = {'config': json.dumps(CONFIG.to_json()), 'prefix': PREFIX.rstrip('.'), 'cases': json.dumps(cases)}
    return {'gdino_swin': (tensors, metadata)}
