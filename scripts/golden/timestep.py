"""diffusers' sinusoidal timestep embedding (get_timestep_embedding) in float32, as diffusers runs it."""
import json
import math

import torch
import torch.nn.functional as F

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


def generate():
    out = {}
    t = torch.tensor(TIMESTEPS, dtype=torch.float32)
    for name, c in EMBEDDINGS.items():
        out[f'timestep.{name}'] = timestep_embedding(t, c['dim'], c['flip_sin_to_cos'], c['downscale_freq_shift'])
    return {'timestep': (out, {'cases': json.dumps({'timesteps': TIMESTEPS, 'embeddings': EMBEDDINGS})})}
