"""Goldens for the diffusion schedulers (src/decoders/diffusion/schedulers) from reference_schedulers.py, the
transcription of diffusers 0.28.2's PNDM, Euler-ancestral and DDIM schedulers.

Schedules: the timesteps (and Euler-ancestral's sigmas) for several step counts and spacings, and the
float32 alphas_cumprod diffusers builds. Steps: hashed inputs (hashed.py) of shape [1, 4, 5, 7]; the
elementwise arithmetic runs in float64 with diffusers' float32 scalar coefficients, and outputs are stored
as float32. In a chain of calls the sample of call i is the float32 output of call i - 1 (as the pipelines
keep float32 latents), so the tests upload it from here and each call is checked on its own error.
"""
import json

import torch

from hashed import hashed
from reference_schedulers import DDIMScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler

SHAPE = [1, 4, 5, 7]
# SD-1.5's scheduler_config.json (PNDM) and timbrooks/instruct-pix2pix's (Euler-ancestral, no timestep_spacing).
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', num_train_timesteps=1000, steps_offset=1)
CLASSES = {'pndm': PNDMScheduler, 'euler_ancestral': EulerAncestralDiscreteScheduler, 'ddim': DDIMScheduler}
EXTRA = {'pndm': dict(skip_prk_steps=True, set_alpha_to_one=False), 'euler_ancestral': {}, 'ddim': dict(set_alpha_to_one=False, clip_sample=False)}

# Timestep lists: (kind, steps, config overrides); an absent timestep_spacing is the class default.
SCHEDULES = [
    ('pndm', 50, {}), ('pndm', 20, {}), ('pndm', 25, dict(timestep_spacing='linspace')), ('pndm', 30, dict(timestep_spacing='trailing')),
    ('euler_ancestral', 100, {}), ('euler_ancestral', 30, {}), ('euler_ancestral', 50, dict(timestep_spacing='leading')),
    ('euler_ancestral', 25, dict(timestep_spacing='trailing')), ('euler_ancestral', 20, dict(beta_schedule='linear', beta_start=0.0001, beta_end=0.02)),
    ('ddim', 50, {}), ('ddim', 40, dict(timestep_spacing='linspace')), ('ddim', 30, dict(timestep_spacing='trailing')),
]

SAMPLE_SEED = 1
OUTPUT_SEED = 1000   # model_output of call i: hashed(SHAPE, OUTPUT_SEED + i)
NOISE_SEED = 2000    # Euler-ancestral noise of call i: hashed(SHAPE, NOISE_SEED + i)


def make(kind, overrides=None):
    return CLASSES[kind](**{**SD, **EXTRA[kind], **(overrides or {})})


def schedule_name(kind, steps, overrides):
    return f'{kind}.{steps}' + ''.join(f'.{k}={v}' for k, v in overrides.items())


def f32(t):
    return t.float().double()


def generate():
    out = {}
    meta = {'shape': SHAPE, 'sample_seed': SAMPLE_SEED, 'output_seed': OUTPUT_SEED, 'noise_seed': NOISE_SEED, 'sd': SD, 'extra': EXTRA}

    schedules = {}
    for kind, steps, overrides in SCHEDULES:
        s = make(kind, overrides)
        s.set_timesteps(steps)
        name = schedule_name(kind, steps, overrides)
        schedules[name] = dict(kind=kind, steps=steps, overrides=overrides)
        out[f'{name}.timesteps'] = s.timesteps.float()
        if kind == 'euler_ancestral':
            out[f'{name}.sigmas'] = s.sigmas
            out[f'{name}.init_noise_sigma'] = torch.tensor([float(s.init_noise_sigma)], dtype=torch.float32)
    meta['schedules'] = schedules
    out['alphas_cumprod'] = make('pndm').alphas_cumprod

    # PNDM: all 51 calls of a 50-step generation (the warm-up pair, the t+20 re-evaluation, the 2-, 3- and 4-term
    # multistep updates and the last step to final_alpha_cumprod).
    s = make('pndm')
    s.set_timesteps(50)
    sample = hashed(SHAPE, SAMPLE_SEED)
    for i, t in enumerate(s.timesteps.tolist()):
        sample = f32(s.step(hashed(SHAPE, OUTPUT_SEED + i), t, sample))
        out[f'pndm.step{i}'] = sample
    meta['pndm_calls'] = len(s.timesteps)

    # Euler-ancestral, 100 steps: calls 0, 1, 2 chained from a sample of scale 16 (sigma_max ~ 14.6), and the last
    # call (sigma_to = 0: no noise, dt = -sigma) on its own; scale_model_input at calls 0 and 57.
    s = make('euler_ancestral')
    s.set_timesteps(100)
    s.set_begin_index(0)
    sample = hashed(SHAPE, SAMPLE_SEED, 16.0)
    for i in (0, 57):
        e = make('euler_ancestral')
        e.set_timesteps(100)
        e.set_begin_index(i)
        out[f'euler_ancestral.scale{i}'] = e.scale_model_input(sample, e.timesteps[i])
    for i in range(3):
        sample = f32(s.step(hashed(SHAPE, OUTPUT_SEED + i), s.timesteps[i], sample, hashed(SHAPE, NOISE_SEED + i)))
        out[f'euler_ancestral.step{i}'] = sample
    last = make('euler_ancestral')
    last.set_timesteps(100)
    last.set_begin_index(99)
    out['euler_ancestral.step99'] = last.step(hashed(SHAPE, OUTPUT_SEED + 99), last.timesteps[99], hashed(SHAPE, SAMPLE_SEED), hashed(SHAPE, NOISE_SEED + 99))
    meta['euler_ancestral_steps'] = [0, 1, 2, 99]
    meta['euler_ancestral_scales'] = [0, 57]

    # DDIM, 50 steps, eta 0: calls 0 and 1 chained, and the last call (prev_timestep < 0: final_alpha_cumprod) on its own.
    s = make('ddim')
    s.set_timesteps(50)
    sample = hashed(SHAPE, SAMPLE_SEED)
    for i in range(2):
        sample = f32(s.step(hashed(SHAPE, OUTPUT_SEED + i), int(s.timesteps[i]), sample))
        out[f'ddim.step{i}'] = sample
    out['ddim.step49'] = s.step(hashed(SHAPE, OUTPUT_SEED + 49), int(s.timesteps[49]), hashed(SHAPE, SAMPLE_SEED))
    meta['ddim_steps'] = [0, 1, 49]

    return {'diffusion_schedulers': (out, {'cases': json.dumps(meta)})}
