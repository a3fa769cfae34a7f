"""The tiny checkpoint's diffusion decoders (weights/tiny/: sd.sd_unet.*, sd.sd_vae.*, sd.sd_text_encoder.* and the same
under ip2p.) and their end-to-end golden (test/golden/diffusion_tiny.safetensors).

install() rewrites weights/tiny/model.safetensors and config.json in place, deterministically and idempotently
(superlink.replace_decoder, as tiny_pose.py and tiny_region.py): every tensor outside `sd.sd_` / `ip2p.sd_` keeps its
bytes (the super link's sd.emb_proj.*, sd.llm2sd_mapper.*, sd.llm2sd_mapper_queries and ip2p's stay as
tiny_visionllm.py made them); the previous sd.sd_* / ip2p.sd_* tensors are dropped and, per module, with seeded random
weights stored as F16, added under the release's names (state_dict names of the references):
  sd_text_encoder  reference_clip_text.CLIPTextModel at TEXT (hidden 96 = sd_hidden_size, 2 layers, 2 heads,
                   intermediate 192, 77 positions, quick_gelu; a 64-token vocabulary with bos 62, eos = pad 63)
  sd_vae           reference_vae.AutoencoderKL at VAE (block_out_channels [32, 64, 64], 1 layer per block, latent 4,
                   GroupNorm 8, scaling_factor 0.18215): vae_scale_factor 2 ** (3 - 1) = 4
  sd_unet          reference_unet.UNet2DConditionModel at unet_config(in) (block_out_channels [32, 64], 1 layer per
                   block, attention_head_dim 2 = 2 heads, cross_attention_dim 96, GroupNorm 8, down
                   [CrossAttnDownBlock2D, DownBlock2D], up [UpBlock2D, CrossAttnUpBlock2D]; in_channels 4 for sd, 8
                   for ip2p: the IP2P U-Net takes the latents and the image latents concatenated)
Seeds: SEEDS[module][part] (sd and ip2p differ in every part).

config.json: sd_config and ip2p_config keep their keys (sd_hidden_size 96, ...) and gain
  unet_config          diffusers' unet/config.json keys (UNet2DConditionModel)
  vae_config           diffusers' vae/config.json keys (AutoencoderKL)
  text_encoder_config  transformers' text_encoder/config.json keys (CLIPTextConfig), with bos/eos/pad token ids
  tokenizer_config     the same bos/eos/pad ids and model_max_length 77 (the TypeScript loader reads the null
                       condition's bos/eos from here; SD-1.5's tokenizer: 49406, 49407, pad 49407)
  scheduler_config     diffusers' scheduler/scheduler_config.json keys: sd = SD-1.5's PNDMScheduler
                       (scaled_linear 0.00085..0.012, skip_prk_steps, set_alpha_to_one false, steps_offset 1,
                       timestep_spacing leading); ip2p = timbrooks/instruct-pix2pix's EulerAncestralDiscreteScheduler
                       (scaled_linear 0.00085..0.012, steps_offset 1, NO timestep_spacing key: the class default
                       'linspace')
  scheduler            'pndm' (sd) / 'euler_ancestral' (ip2p): the scheduler's kind (diffusers' _class_name)
These keys are OUR EXTENSION: the official model builds SD / IP2P from the local folders
checkpoints/stable-diffusion-v1-5 and checkpoints/instruct-pix2pix (modeling_sd.py:85-99, local_files_only) and only
then loads the weights from the shards; its config.json has none of them. With them a checkpoint says its decoders'
shapes and schedulers itself; for the release they are SD-1.5's and timbrooks' values (decoders.md 2.C, 2.D, part 3).
The CLIP tokenizer is not needed: the only text the text encoder sees is "", whose ids are [bos] + [eos] * 76
(pad = eos, SD-1.5's tokenizer), reference_sd_pipeline.null_ids.

The golden, in float64 from the F16 weights (reference_sd_pipeline):
 gen   'Draw a red cat.' with the teacher-forced answer GEN_ANSWER (the super link inserts the 64 [EMB] after [GEN];
       superlink.teacher_forced, the square test image as the MLLM's image as superlink.py does), conds['gen']
       [1, 77, 96] -> reference_sd_pipeline.generate with GEN_STEPS PNDM steps (4 steps -> 5 U-Net calls: timesteps
       751, 501, 501, 251, 1), 32 x 32 pixels (latents [1, 4, 8, 8] = seeded torch.randn), guidance 7.5.
 edit  '<image>\\n' + EDIT_QUESTION with the teacher-forced answer EDIT_ANSWER on test/fixtures/images/small.jpg
       (83 x 61; the same image for the MLLM and the editor), conds['edit'] -> reference_sd_pipeline.edit with
       EDIT_STEPS Euler-ancestral steps, guidance 7.5, image guidance 1.5, injected initial latents and per-step noise.
       The editor's input is floored to a multiple of vae_scale_factor = 4 (diffusers computes the factor from the VAE:
       80 x 60, Lanczos-resized; the release's factor 8 would give 80 x 56), so the latents are [1, 4, 15, 20]: an
       odd latent height, the U-Net's forward_upsample_size path.
Stored (f32 unless said):
  null_condition.sd / null_condition.ip2p [1, 77, 96]; null_ids I32 [77] (the same for both)
  gen.ids / gen.spliced_ids I32; gen.condition [1, 77, 96]; gen.latents [1, 4, 16, 16] (before init_noise_sigma, 1);
  gen.timesteps I32; gen.noise_pred [calls, 1, 4, 16, 16] (guided ε per call); gen.final_latents; gen.image U8
  [32, 32, 3]; gen.image_float [32, 32, 3] (0..255 before rounding)
  edit.ids / edit.spliced_ids I32; edit.condition [1, 77, 96]; edit.input_image U8 [61, 83, 3] (small.jpg decoded);
  edit.pixels [1, 3, 60, 80] (preprocessed, [-1, 1]); edit.image_latent [1, 4, 15, 20]; edit.latents [1, 4, 15, 20]
  (before init_noise_sigma); edit.noise [steps, 1, 4, 30, 41]; edit.timesteps [steps] (floats); edit.sigmas;
  edit.noise_pred [steps, 1, 4, 15, 20]; edit.final_latents; edit.image U8 [60, 80, 3]; edit.image_float [60, 80, 3]
"""
import json
import os
import time

import numpy as np
import torch

import reference_clip_text as C
import reference_schedulers as S
import reference_sd_pipeline as P
import reference_unet as U
import reference_vae as V
import tiny_visionllm as tiny

DTYPE = torch.float16
SD_DIM = tiny.SD_DIM  # 96, config sd_hidden_size / ip2p sd_hidden_size
SEEDS = {'sd': {'text_encoder': 5101, 'vae': 5102, 'unet': 5103}, 'ip2p': {'text_encoder': 5201, 'vae': 5202, 'unet': 5203}}
PARTS = ('sd_text_encoder', 'sd_vae', 'sd_unet')


def unet_config(in_channels):
    return dict(U.release_config(in_channels), block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=2,
                cross_attention_dim=SD_DIM, norm_num_groups=8, down_block_types=['CrossAttnDownBlock2D', 'DownBlock2D'],
                up_block_types=['UpBlock2D', 'CrossAttnUpBlock2D'], sample_size=16)


# Three blocks: factor 4, so a chat's photo (square.png: 296 x 296 after flooring) keeps the VAE's mid-block
# attention at 74 x 74 tokens; factor 2 made it 148 x 148, 480 M scores.
VAE = dict(in_channels=3, out_channels=3, block_out_channels=[32, 64, 64], layers_per_block=1, latent_channels=4,
           norm_num_groups=8, scaling_factor=0.18215, act_fn='silu', sample_size=64,
           down_block_types=['DownEncoderBlock2D'] * 3, up_block_types=['UpDecoderBlock2D'] * 3)
TEXT = dict(hidden_size=SD_DIM, intermediate_size=2 * SD_DIM, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, vocab_size=64, bos_token_id=62, eos_token_id=63, pad_token_id=63,
            hidden_act='quick_gelu', layer_norm_eps=1e-5, model_type='clip_text_model', architectures=['CLIPTextModel'])
# The null condition's ids (the tokenizer is not needed otherwise: the text encoder only ever sees ""), here too because
# src/decoders/diffusion/index.ts reads bos/eos from `tokenizer_config` (defaults: CLIP's 49406 / 49407).
TOKENIZER = dict(bos_token_id=TEXT['bos_token_id'], eos_token_id=TEXT['eos_token_id'], pad_token_id=TEXT['pad_token_id'],
                 model_max_length=77)
SCHEDULERS = {
    'sd': ('pndm', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                        skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, prediction_type='epsilon',
                        timestep_spacing='leading')),
    'ip2p': ('euler_ancestral', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                                     steps_offset=1, prediction_type='epsilon')),
}

GEN_QUESTION = 'Draw a red cat.'
GEN_ANSWER = 'Here is a red cat[GEN].'
GEN_IMAGE = 'square.png'
GEN_STEPS = 4
GEN_SIZE = 32
GEN_SEED = 4242
EDIT_QUESTION = 'make it blue.'
EDIT_ANSWER = 'Here it is, blue[EDIT].'
EDIT_IMAGE = 'small.jpg'
EDIT_STEPS = 3
EDIT_SEED = 4343
GUIDANCE = 7.5
IMAGE_GUIDANCE = 1.5


def section_values(module):
    kind, sched = SCHEDULERS[module]
    return dict(unet_config=unet_config(8 if module == 'ip2p' else 4), vae_config=dict(VAE), text_encoder_config=dict(TEXT),
                tokenizer_config=dict(TOKENIZER), scheduler=kind, scheduler_config=dict(sched))


def modules(values):
    """Uninitialised reference modules of a config section (sd_config / ip2p_config)."""
    return {'sd_text_encoder': C.CLIPTextModel(values['text_encoder_config']), 'sd_vae': V.AutoencoderKL(values['vae_config']),
            'sd_unet': U.UNet2DConditionModel(values['unet_config'])}


def decoder_state(module, values):
    seeds = SEEDS[module]
    parts = modules(values)
    C.randomize(parts['sd_text_encoder'], seeds['text_encoder'])
    V.randomize(parts['sd_vae'], seeds['vae'])
    U.randomize(parts['sd_unet'], seeds['unet'])
    out = {}
    for part in PARTS:
        for k, v in parts[part].state_dict().items():
            out[f'{module}.{part}.{k}'] = v.to(DTYPE)
    return out


def install(directory=tiny.TINY_DIR):
    """Adds the SD and IP2P U-Net / VAE / text encoder to the checkpoint in `directory`; returns the tensors added."""
    import superlink
    added = {}
    for module in ('sd', 'ip2p'):
        values = section_values(module)
        assert values['unet_config']['cross_attention_dim'] == values['text_encoder_config']['hidden_size'] == SD_DIM
        added.update(superlink.replace_decoder(directory, f'{module}.sd_', (), lambda params, m=module, v=values: decoder_state(m, v),
                                               f'{module}_config', dict(values, sd_hidden_size=SD_DIM), ('sd_hidden_size',)))
    return added


def load(params, section, module):
    """The module's three parts from the checkpoint's tensors, float64, eval."""
    parts = modules(section)
    for part, m in parts.items():
        prefix = f'{module}.{part}.'
        m.load_state_dict({k[len(prefix):]: v.double() for k, v in params.items() if k.startswith(prefix)}, strict=True)
        m.double().eval()
    return parts['sd_unet'], parts['sd_vae'], parts['sd_text_encoder']


def scheduler(section):
    """A fresh reference scheduler of a config section's `scheduler` kind and `scheduler_config`."""
    kind, cfg = section['scheduler'], section['scheduler_config']
    if kind == 'pndm':
        return S.PNDMScheduler(**cfg)
    assert kind == 'euler_ancestral', kind
    return S.EulerAncestralDiscreteScheduler(**cfg)


def generate(gen_steps=GEN_STEPS, edit_steps=EDIT_STEPS):
    from PIL import Image

    import superlink
    clock = {}
    t = time.time()
    size = superlink.install_decoder(install, 'tiny diffusion decoders (sd, ip2p)')
    clock['install'] = time.time() - t

    t = time.time()
    params, config, sp, added = superlink.checkpoint()
    p64 = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}
    sd, ip2p = config['sd_config'], config['ip2p_config']
    unet, vae, text = load(params, sd, 'sd')
    unet8, vae8, text8 = load(params, ip2p, 'ip2p')
    ids0 = P.null_ids(sd['text_encoder_config'])
    assert ids0 == P.null_ids(ip2p['text_encoder_config']) == [62] + [63] * 76
    clock['load'] = time.time() - t

    # (a) generation
    t = time.time()
    gen_image = Image.open(os.path.join(tiny.IMAGE_DIR, GEN_IMAGE)).convert('RGB')
    tiles, proj = superlink.image_tokens(p64, config, gen_image)
    ids, spliced, blocks, _, conds = superlink.teacher_forced(params=p64, config=config, sp=sp, added=added, proj=proj,
                                                              tiles=len(tiles), question=GEN_QUESTION, answer=GEN_ANSWER)
    assert [b[1] for b in blocks] == ['[GEN]'] and len(blocks[0][2]) == config['num_embs_gen'] == 64
    gen_cond = conds['gen']                                             # [1, 77, 96]
    factor = P.vae_scale_factor(vae)
    g = torch.Generator().manual_seed(GEN_SEED)
    gen_latents = torch.randn(1, unet.config['in_channels'], GEN_SIZE // factor, GEN_SIZE // factor, generator=g)
    gen_trace = {}
    gen = P.generate(unet, vae, text, scheduler(sd), gen_cond, gen_latents, guidance=GUIDANCE, steps=gen_steps, trace=gen_trace)
    clock['gen'] = time.time() - t

    # (b) editing
    t = time.time()
    edit_image = Image.open(os.path.join(tiny.IMAGE_DIR, EDIT_IMAGE)).convert('RGB')
    tiles8, proj8 = superlink.image_tokens(p64, config, edit_image)
    ids8, spliced8, blocks8, _, conds8 = superlink.teacher_forced(params=p64, config=config, sp=sp, added=added, proj=proj8,
                                                                  tiles=len(tiles8), question=EDIT_QUESTION, answer=EDIT_ANSWER)
    assert [b[1] for b in blocks8] == ['[EDIT]'] and len(blocks8[0][2]) == 64
    edit_cond = conds8['edit']
    f8 = P.vae_scale_factor(vae8)
    h, w = edit_image.height // f8, edit_image.width // f8             # the floored size / f8
    g = torch.Generator().manual_seed(EDIT_SEED)
    edit_latents = torch.randn(1, vae8.config['latent_channels'], h, w, generator=g)
    edit_noise = torch.randn(edit_steps, 1, vae8.config['latent_channels'], h, w, generator=g)
    sched8 = scheduler(ip2p)
    edit_trace = {}
    ed = P.edit(unet8, vae8, text8, sched8, edit_cond, edit_image, edit_latents, list(edit_noise), guidance=GUIDANCE,
                image_guidance=IMAGE_GUIDANCE, trace=edit_trace)
    clock['edit'] = time.time() - t

    def half_gap(x):
        frac = (x.double() - x.double().floor() - 0.5).abs()
        return float(frac.min())

    print(f'diffusion_tiny gen: {len(spliced)} positions, cond |max| {gen_cond.abs().max():.3f}, timesteps {gen["timesteps"].tolist()}, '
          f'image mean {gen["image"].mean():.1f} min {gen["image"].min()} max {gen["image"].max()} '
          f'clamped {float(((gen["image_float"] <= 0) | (gen["image_float"] >= 255)).double().mean()):.3f}, '
          f'nearest .5 {half_gap(gen["image_float"]):.2e}')
    print(f'diffusion_tiny edit: {len(spliced8)} positions, size {ed["size"]}, timesteps {ed["timesteps"].tolist()}, '
          f'image latent |max| {ed["image_latent"].abs().max():.3f}, image mean {ed["image"].mean():.1f} min {ed["image"].min()} '
          f'max {ed["image"].max()} clamped {float(((ed["image_float"] <= 0) | (ed["image_float"] >= 255)).double().mean()):.3f}, '
          f'nearest .5 {half_gap(ed["image_float"]):.2e}')
    print('diffusion_tiny timings (s): ' + ', '.join(f'{k} {v:.1f}' for k, v in clock.items()))

    tensors = {
        'null_ids': torch.tensor(ids0, dtype=torch.int32),
        'null_condition.sd': gen['null_condition'],
        'null_condition.ip2p': ed['null_condition'],
        'gen.ids': torch.tensor(ids, dtype=torch.int32),
        'gen.spliced_ids': torch.tensor(spliced, dtype=torch.int32),
        'gen.condition': gen_cond,
        'gen.latents': gen_latents,
        'gen.timesteps': gen['timesteps'].to(torch.int32),
        'gen.noise_pred': torch.stack(gen_trace['noise_pred']),
        'gen.final_latents': gen['latents'],
        'gen.image': torch.from_numpy(gen['image']),
        'gen.image_float': gen['image_float'],
        'edit.ids': torch.tensor(ids8, dtype=torch.int32),
        'edit.spliced_ids': torch.tensor(spliced8, dtype=torch.int32),
        'edit.condition': edit_cond,
        'edit.input_image': torch.from_numpy(np.array(edit_image)),
        'edit.pixels': ed['pixels'],
        'edit.image_latent': ed['image_latent'],
        'edit.latents': edit_latents,
        'edit.noise': edit_noise,
        'edit.timesteps': ed['timesteps'].float(),
        'edit.sigmas': sched8.sigmas.float(),
        'edit.noise_pred': torch.stack(edit_trace['noise_pred']),
        'edit.final_latents': ed['latents'],
        'edit.image': torch.from_numpy(ed['image']),
        'edit.image_float': ed['image_float'],
    }
    metadata = {
        'gen_question': GEN_QUESTION,
        'gen_answer': GEN_ANSWER,
        'gen_prompt': tiny.ref.vicuna_prompt('<image>\n' + GEN_QUESTION) + ' ' + GEN_ANSWER,
        'gen_image': json.dumps(dict(file=GEN_IMAGE, role="the MLLM's image input only", tiles=len(tiles))),
        'gen_steps': str(gen_steps),
        'gen_unet_calls': str(len(gen['timesteps'])),
        'gen_size': json.dumps([GEN_SIZE, GEN_SIZE]),
        'gen_latent_seed': str(GEN_SEED),
        'edit_question': EDIT_QUESTION,
        'edit_answer': EDIT_ANSWER,
        'edit_prompt': tiny.ref.vicuna_prompt('<image>\n' + EDIT_QUESTION) + ' ' + EDIT_ANSWER,
        'edit_image': json.dumps(dict(file=EDIT_IMAGE, ori=[edit_image.height, edit_image.width], size=list(ed['size']),
                                      vae_scale_factor=f8, resize='PIL LANCZOS to the size floored to a multiple of vae_scale_factor',
                                      tiles=len(tiles8), mllm='the same image is the MLLM\'s image input')),
        'edit_steps': str(edit_steps),
        'edit_noise_seed': str(EDIT_SEED) + ' (torch.Generator: edit.latents then edit.noise)',
        'guidance_scale': str(GUIDANCE),
        'image_guidance_scale': str(IMAGE_GUIDANCE),
        'init_noise_sigma': json.dumps(dict(sd=float(scheduler(sd).init_noise_sigma), ip2p=float(sched8.init_noise_sigma))),
        'null_ids': '[bos] + [eos] * 76: CLIPTokenizer("", padding="max_length", max_length=77) with pad = eos (SD-1.5)',
        'weight_seeds': json.dumps(SEEDS),
        'sd_config': json.dumps(sd),
        'ip2p_config': json.dumps(ip2p),
        'checkpoint_bytes': str(size),
        'pipeline': 'reference_sd_pipeline.generate / edit (diffusers 0.28.2 StableDiffusionPipeline, '
                    'StableDiffusionInstructPix2PixPipeline), float64 from the F16 weights',
    }
    return {'diffusion_tiny': (tensors, metadata)}
