"""Grounding DINO's ResNet backbone (test/gdino-resnet.test.ts): the stage maps of two tiny Hugging Face
ResNetBackbones (reference_gdino_resnet.py, frozen batch norms), one of basic layers and one of
bottleneck layers, for inputs of several sizes.

Weights and running statistics are seeded values rounded to f16 and stored as F16 under the release's
names (`<variant>.gdino.model.backbone.conv_encoder.model.*`, no num_batches_tracked), so f32 and f16
uploads hold the same values. Inputs are closed-form hashes (hashed.py = test/hashed.ts); outputs are
sampled (flat NCHW indices stored beside the values). References in float64.
"""
import importlib.util
import json
import os
import sys

import torch

sys.path.append(os.path.dirname(__file__))
from hashed import hashed, store_sampled  # noqa: E402

_spec = importlib.util.spec_from_file_location('reference_gdino_resnet', os.path.join(os.path.dirname(__file__), 'reference_gdino_resnet.py'))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

PREFIX = 'gdino.model.backbone.conv_encoder.model'
SAMPLES = 1024
# Odd widths, and a first stage that halves the map in the bottleneck variant.
VARIANTS = {
    'basic': reference.ResNetConfig(embedding_size=8, hidden_sizes=[8, 12, 16, 20], depths=[2, 1, 2, 1], layer_type='basic'),
    'bottleneck': reference.ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 2, 1, 1], layer_type='bottleneck',
                                         downsample_in_first_stage=True, out_features=['stage2', 'stage3', 'stage4']),
}
# (name, height, width, seed): odd sizes (every stride rounds up), a square, and one whose last map is 1 x 2.
CASES = [('odd', 97, 131, 21), ('square', 64, 64, 22), ('tiny', 19, 45, 23)]


def generate():
    tensors, variants = {}, []
    for v, (variant, config) in enumerate(VARIANTS.items()):
        model = reference.ResNetBackbone(config).double().eval()
        reference.randomize(model, 2100 + v)
        with torch.no_grad():
            for name, p in model.release_state().items():
                p.copy_(p.to(torch.float16).to(torch.float64))
                tensors[f'{variant}.{PREFIX}.{name}'] = p.to(torch.float16)
            cases = []
            for name, h, w, seed in CASES:
                x = hashed([1, 3, h, w], seed, scale=2.0)
                maps = model(x)
                for i, m in enumerate(maps):
                    store_sampled(tensors, f'{variant}.{name}.map{i}', m, SAMPLES, seed * 10 + i)
                cases.append({'name': name, 'height': h, 'width': w, 'seed': seed, 'scale': 2.0, 'shapes': [list(m.shape) for m in maps]})
        variants.append({'name': variant, 'config': config.to_json(), 'channels': model.channels, 'cases': cases})
    return {'gdino_resnet': (tensors, {'prefix': PREFIX, 'variants': json.dumps(variants)})}
