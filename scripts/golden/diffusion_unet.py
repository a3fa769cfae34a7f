"""Golden for the SD-1.5 / InstructPix2Pix U-Net (diffusers UNet2DConditionModel; decoders.md 2.C C.2, 2.D): two tiny
configs with seeded random weights under the release's names, through reference_unet.py in float64, stored as f32.

Every weight is rounded to f16 and stored as F16, and the reference computes with those values (float64): f32 and
f16 uploads hold the same numbers.

SD model (prefix `sd.sd_unet.`, in_channels 4, seed MODEL_SEED), latents 9 x 11 (odd: diffusers forwards the
upsample size, so the up block's Upsample2D interpolates nearest to the skip's size 9 x 11 from 5 x 6):
  input.sample [2, 4, 9, 11], input.timesteps [2] = (981, 1), input.encoder_hidden_states [2, 77, 48]
  out [2, 4, 9, 11] (row 0: t = 981, row 1: t = 1)
  debug.emb [2, 128] (time embedding after linear_2), debug.down{0,1} (block outputs: down0 after its downsampler
  [2, 32, 5, 6], down1 [2, 64, 5, 6]), debug.mid [2, 64, 5, 6], debug.up0 (after its upsampler) [2, 64, 9, 11],
  debug.up1 [2, 32, 9, 11] (before conv_norm_out)
IP2P model (prefix `ip2p.sd_unet.`, in_channels 8, its own seed), latents 8 x 10 (even: plain scale-2 upsampling),
batch 3 like the pipeline's [c, null, null] batch, fractional Euler-ancestral timesteps:
  ip2p.input.sample [3, 8, 8, 10], ip2p.input.timesteps [3], ip2p.input.encoder_hidden_states [3, 77, 48],
  ip2p.out [3, 4, 8, 10], ip2p.debug.{emb, down0, down1, mid, up0, up1}
Metadata: config / ip2p_config (JSON of the diffusers config), prefix / ip2p_prefix, weights (F16), sizes.
"""
import json

import torch

import reference_unet as R

CONFIG = dict(in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=2,
              cross_attention_dim=48, norm_num_groups=8, norm_eps=1e-5,
              down_block_types=['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types=['UpBlock2D', 'CrossAttnUpBlock2D'],
              flip_sin_to_cos=True, freq_shift=0, act_fn='silu')
IP2P_CONFIG = dict(CONFIG, in_channels=8)
PREFIX = 'sd.sd_unet.'
IP2P_PREFIX = 'ip2p.sd_unet.'
MODEL_SEED = 1505
IP2P_SEED = 1506
INPUT_SEED = 2027
SD_SIZE = (9, 11)
IP2P_SIZE = (8, 10)
SD_T = [981.0, 1.0]
# EulerAncestralDiscreteScheduler, 100 steps, linspace spacing: t = linspace(0, 999, 100)[::-1] as float32
IP2P_T = [float(torch.tensor(999 * 98 / 99, dtype=torch.float32)), float(torch.tensor(999 * 98 / 99, dtype=torch.float32)),
          float(torch.tensor(999 * 1 / 99, dtype=torch.float32))]


def seeded_model(config, seed):
    model = R.UNet2DConditionModel(config).double()
    R.randomize(model, seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).double())
    return model.eval()


def f32_exact(x):
    return x.float().double()


def run(model, prefix, tag, batch, channels, size, timesteps, g):
    sample = f32_exact(torch.randn(batch, channels, *size, generator=g, dtype=torch.float64))
    cond = f32_exact(torch.randn(batch, 77, CONFIG['cross_attention_dim'], generator=g, dtype=torch.float64))
    t = torch.tensor(timesteps, dtype=torch.float32).double()
    debug = {}
    with torch.no_grad():
        out = model(sample, t, cond, debug)
        # the batch rows are independent: each row alone gives the same result
        for b in range(batch):
            one = model(sample[b:b + 1], t[b:b + 1], cond[b:b + 1])
            assert (one[0] - out[b]).abs().max() < 1e-12
    tensors = {f'{tag}input.sample': sample.float(), f'{tag}input.timesteps': t.float(),
               f'{tag}input.encoder_hidden_states': cond.float(), f'{tag}out': out.float()}
    for k, v in debug.items():
        tensors[f'{tag}debug.{k}'] = v.float()
    for k, v in model.state_dict().items():
        tensors[prefix + k] = v.to(torch.float16)
    print(tag or 'sd', {k: list(v.shape) for k, v in debug.items()}, 'out', list(out.shape),
          'std', round(out.std().item(), 4), 'params', sum(p.numel() for p in model.parameters()))
    return tensors


def generate():
    g = torch.Generator().manual_seed(INPUT_SEED)
    sd = seeded_model(CONFIG, MODEL_SEED)
    assert sd.num_upsamplers == 1
    tensors = run(sd, PREFIX, '', 2, 4, SD_SIZE, SD_T, g)
    ip2p = seeded_model(IP2P_CONFIG, IP2P_SEED)
    tensors.update(run(ip2p, IP2P_PREFIX, 'ip2p.', 3, 8, IP2P_SIZE, IP2P_T, g))
    metadata = dict(config=json.dumps(CONFIG), prefix=PREFIX.rstrip('.'), ip2p_config=json.dumps(IP2P_CONFIG),
                    ip2p_prefix=IP2P_PREFIX.rstrip('.'), weights='F16',
                    sizes=json.dumps(dict(sd=list(SD_SIZE), ip2p=list(IP2P_SIZE))),
                    timesteps=json.dumps(dict(sd=SD_T, ip2p=IP2P_T)),
                    upsample=json.dumps(dict(sd='forwarded size (9, 11): odd sample dims', ip2p='scale_factor 2')))
    return {'diffusion_unet': (tensors, metadata)}
