"""Goldens for the CLIP text encoder of Stable Diffusion and InstructPix2Pix (src/decoders/diffusion/text-encoder.ts,
test/clip-text.test.ts): a tiny CLIPTextModel (reference_clip_text.py, transformers transcribed) with seeded
weights under the release's names (`sd.sd_text_encoder.` + state_dict()), stored as F16 and computed with exactly
those values, so f32 and f16 uploads hold the same numbers. The vocabulary keeps CLIP's 49408 tokens, so the
null prompt's ids 49406 (<|startoftext|>) and 49407 (<|endoftext|>, SD-1.5's pad token) are real rows.

Stored: weights `sd.sd_text_encoder.*` (F16), and `text_model.embeddings.position_ids` (I32 [1, 77]: older
transformers saved it as a persistent buffer, as the VisionLLM v2 checkpoint does); `null` [77, 16] =
CLIPTextModel([49406] + [49407] * 76).last_hidden_state (diffusers' encode_prompt("") with max_length padding);
`ids` I32 [9] (random ids, CLIP's specials among them) with
`ids.hidden` [9, 16] (last_hidden_state). Metadata: config (transformers' text_encoder/config.json keys), prefix. References in float64.
"""
import json
import os
import importlib.util

import torch

import common

_spec = importlib.util.spec_from_file_location('reference_clip_text', os.path.join(os.path.dirname(__file__), 'reference_clip_text.py'))
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)

PREFIX = 'sd.sd_text_encoder.'
CONFIG = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=77, layer_norm_eps=1e-5, hidden_act='quick_gelu', bos_token_id=0, eos_token_id=2)
BOS, EOS = 49406, 49407
MODEL_SEED = 51
IDS_SEED = 52


def generate():
    model = R.CLIPTextModel(CONFIG).double().eval()
    R.randomize(model, MODEL_SEED)
    tensors = common.f16_weights(model, PREFIX)  # the values stored are the values computed with
    with torch.no_grad():
        n = CONFIG['max_position_embeddings']
        tensors[PREFIX + 'text_model.embeddings.position_ids'] = torch.arange(n, dtype=torch.int32)[None]
        null = model(torch.tensor([[BOS] + [EOS] * (n - 1)]))[0]
        g = torch.Generator().manual_seed(IDS_SEED)
        ids = torch.randint(0, CONFIG['vocab_size'], (9,), generator=g)
        ids[0], ids[5], ids[8] = BOS, EOS, EOS
        hidden = model(ids[None])[0]
        tensors.update({'null': null.float(), 'ids': ids.to(torch.int32), 'ids.hidden': hidden.float()})
    return {'clip_text': (tensors, {'config': json.dumps(CONFIG), 'prefix': PREFIX.rstrip('.')})}
