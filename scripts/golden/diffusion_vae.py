"""Goldens for Stable Diffusion's VAE (src/decoders/diffusion/vae.ts, test/diffusion-vae.test.ts): a tiny
AutoencoderKL (reference_vae.py, diffusers 0.28.2 transcribed) with seeded weights under the release's names
(`sd.sd_vae.` + state_dict()), stored as F16 and computed with exactly those values, so f32 and f16 uploads
hold the same numbers. Two blocks make a factor-2 VAE; the odd image (22 x 30 -> latents 11 x 15) puts the
asymmetric (0, 1, 0, 1) pad of the encoder's stride-2 conv to work on both edges.

Stored: weights `sd.sd_vae.*` (F16); inputs `image` [1, 3, 22, 30] (uniform in [-1, 1)) and `latents`
[1, 4, 11, 15] (N(0, 1)); outputs `decoded` [1, 3, 22, 30] = vae.decode(latents).sample, `decoder_mid`
[1, 64, 11, 15] (the decoder's mid block), `mean` [1, 4, 11, 15] = vae.encode(image).latent_dist.mode(),
`encoder_mid` [1, 64, 11, 15]. Metadata: config (diffusers' vae/config.json keys), prefix. References in float64.
"""
import json
import os
import importlib.util

import torch

import common

_spec = importlib.util.spec_from_file_location('reference_vae', os.path.join(os.path.dirname(__file__), 'reference_vae.py'))
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)

PREFIX = 'sd.sd_vae.'
CONFIG = dict(in_channels=3, out_channels=3, down_block_types=['DownEncoderBlock2D'] * 2, up_block_types=['UpDecoderBlock2D'] * 2,
              block_out_channels=[32, 64], layers_per_block=1, act_fn='silu', latent_channels=4, norm_num_groups=16,
              sample_size=32, scaling_factor=0.18215)
IMAGE = (22, 30)
MODEL_SEED = 41
INPUT_SEED = 42


def generate():
    model = R.AutoencoderKL(CONFIG).double().eval()
    R.randomize(model, MODEL_SEED)
    tensors = common.f16_weights(model, PREFIX)  # the values stored are the values computed with
    with torch.no_grad():
        g = torch.Generator().manual_seed(INPUT_SEED)
        h, w = IMAGE
        factor = 2 ** (len(CONFIG['block_out_channels']) - 1)
        image = (torch.rand(1, 3, h, w, generator=g, dtype=torch.float64) * 2 - 1).float().double()
        latents = torch.randn(1, CONFIG['latent_channels'], h // factor, w // factor, generator=g, dtype=torch.float64).float().double()
        trace = {}
        mean = model.encode_mean(image, trace)
        decoded = model.decode(latents, trace)
        assert mean.shape == latents.shape, (mean.shape, latents.shape)
        tensors.update(image=image.float(), latents=latents.float(), decoded=decoded.float(), mean=mean.float(),
                       decoder_mid=trace['decoder_mid'].float(), encoder_mid=trace['encoder_mid'].float())
    return {'diffusion_vae': (tensors, {'config': json.dumps(CONFIG), 'prefix': PREFIX.rstrip('.')})}
