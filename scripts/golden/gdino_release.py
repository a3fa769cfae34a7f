"""The release checkpoint's Grounding DINO tensors (prefix `gdino.`): names, shapes and dtypes, for
test/gdino-release.test.ts and bench/gdino.ts, which build random weights of exactly this layout.

The layout comes from instantiating the slice references (reference_gdino_swin.py,
reference_gdino_encoder.py, reference_gdino_decoder.py: the official module and parameter names)
at the release config (decoders.md A.1) and putting them where OVGroundingDinoForObjectDetection
holds them (A.5):

  model.backbone.conv_encoder.model.*   HF SwinBackbone (Swin-T), relative_position_index buffers
                                        included: HF registers them persistent, so a state_dict holds them
  model.input_proj_vision / encoder / level_embed                    the encoder side
  model.* (mask head, query embeddings, decoder, two-stage heads)   the decoder side
  bbox_embed.{0-5}, mask_embed.{0-5}, model.decoder.bbox_embed.{0-5}  one shared MLP each, once per slot
  patch2query                           MLP l_hidden_size -> d_model -> d_model -> d_model

No weights are stored (the release's 65 M parameters are generated at test time). Shared tensors
carry `alias_of`, the name the loaders read. `parameters` counts each shared tensor once and no
buffers: decoders.md A.6 estimates about 65.4 M.
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # last: this folder's copy.py must not shadow the standard module
import reference_gdino_encoder as E  # noqa: E402
import release_layout as L  # noqa: E402
from reference_gdino_decoder import GdinoDecoderReference, GroundingDinoMLPPredictionHead  # noqa: E402
from reference_gdino_swin import SwinBackbone, SwinConfig, relative_position_index  # noqa: E402

SWIN = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, patch_size=4)
STAGE_CHANNELS = [SWIN.embed_dim * 2 ** i for i in range(len(SWIN.depths))]

# config.json's gdino_config as VisionLLM v2 builds it (GroundingDinoConfig + train.py:416-444).
GDINO_CONFIG = {
    'd_model': 256, 'num_queries': 900, 'encoder_layers': 6, 'decoder_layers': 6,
    'encoder_attention_heads': 8, 'decoder_attention_heads': 8, 'encoder_ffn_dim': 2048, 'decoder_ffn_dim': 2048,
    'activation_function': 'relu', 'num_feature_levels': 4, 'encoder_n_points': 4, 'decoder_n_points': 4,
    'two_stage': True, 'embedding_init_target': True, 'query_dim': 4, 'decoder_bbox_embed_share': True,
    'two_stage_bbox_embed_share': False, 'max_text_len': 256, 'position_embedding_type': 'sine',
    'positional_embedding_temperature': 20, 'layer_norm_eps': 1e-5,
    'mask_dim': 256, 'norm': 'GN', 'l_hidden_size': 4096, 'num_embs': 4,
    'backbone_config': {**SWIN.to_json(), 'hidden_size': 768, 'drop_path_rate': 0.1, 'encoder_stride': 32},
}
PREFIX = 'gdino.'


class Holder(nn.Module):
    """An empty module to hang children on under a given name."""


def release_module():
    c = GDINO_CONFIG
    encoder_config = E.gdino_config(**{k: c[k] for k in ('d_model', 'encoder_layers', 'encoder_attention_heads', 'encoder_ffn_dim',
                                                         'num_feature_levels', 'encoder_n_points', 'positional_embedding_temperature',
                                                         'activation_function', 'layer_norm_eps')})
    encoder = E.GroundingDinoEncoderSide(encoder_config, STAGE_CHANNELS)
    decoder_config = {k: c[k] for k in ('d_model', 'decoder_layers', 'decoder_attention_heads', 'decoder_ffn_dim', 'num_queries',
                                        'num_feature_levels', 'decoder_n_points', 'max_text_len', 'mask_dim')}
    gdino = GdinoDecoderReference({**decoder_config, 'stage1_channels': STAGE_CHANNELS[0]})
    model = gdino.model  # OVGroundingDinoModel: the backbone and the encoder side join the decoder side here
    model.backbone = Holder()
    model.backbone.conv_encoder = Holder()
    model.backbone.conv_encoder.model = SwinBackbone(SWIN)
    model.input_proj_vision = encoder.input_proj_vision
    model.encoder = encoder.encoder
    model.level_embed = encoder.level_embed
    d = c['d_model']
    gdino.patch2query = GroundingDinoMLPPredictionHead(c['l_hidden_size'], d, d, 3)
    return gdino


def canonical(names):
    """The name loaders read among a shared tensor's names: `bbox_embed.0`, `mask_embed.0`, not `model.decoder.*`."""
    return min(names, key=lambda n: (n.startswith('model.decoder.bbox_embed.'), n))


def part(name):
    if name.startswith('model.backbone.'):
        return 'swin'
    if name.startswith('model.encoder.'):
        return 'encoder'
    if name.startswith('model.decoder.'):
        return 'decoder'
    if name.startswith('patch2query.'):
        return 'patch2query'
    if name.startswith(('model.lateral_convs', 'model.output_convs', 'model.mask_features', 'mask_embed.', 'model.mask_embed.')):
        return 'mask head'
    return 'rest'


def layout():
    module = release_module()
    parameters, by_part = L.parameter_counts(module, part)
    return module, L.entries(module, PREFIX, canonical), parameters, by_part


def relative_position_index_values():
    """The buffer's values (every block has the same: window 7), row-major [49, 49]."""
    return relative_position_index(SWIN.window_size, SWIN.window_size).reshape(-1).tolist()


def files():
    _, tensors, parameters, by_part = layout()
    doc = {
        'description': "The release checkpoint's gdino.* tensors (names, shapes, dtypes) at the release config; "
                       'generated by scripts/golden/gdino_release.py from the reference modules. No values.',
        'prefix': PREFIX.rstrip('.'),
        'gdino_config': GDINO_CONFIG,
        'parameters': parameters,
        'parameters_by_part': by_part,
        'relative_position_index': relative_position_index_values(),
        'tensors': tensors,
    }
    text = json.dumps(doc, separators=(',', ':'))
    return {'gdino_release.json': (text + '\n').encode()}


if __name__ == '__main__':  # python3 -P scripts/golden/gdino_release.py: the counts
    L.print_counts(*layout()[1:])
