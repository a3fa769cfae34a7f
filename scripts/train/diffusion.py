"""The decoders stage's sixth part (miniature.py): generation behind [GEN] and editing behind [EDIT],
Stable Diffusion's and InstructPix2Pix's pipelines at ShapesWorld's scale, trained through the super
link as the official training does (decoders.md 2.C, 2.D). The reference modules keep diffusers' and
torch's names, so the exported tensors are the release's.

  vae         one AutoencoderKL learns SIDE x SIDE world pictures (L1 and L2 plus a small KL). Its latents'
              spread sets scaling_factor, as SD-1.5's 0.18215 was set. The checkpoint holds it twice
              (sd.sd_vae, ip2p.sd_vae), as the release's two pipeline folders do.
  generation  SD's U-Net learns the noise of noised latents of one-object pictures, conditioned by the
              super link: the frozen MLLM reads "Generate image with caption: <the picture's caption>"
              with the answer "Here it is [GEN]" (no image, as generate() asks), the 64
              emb_embeddings_gen rows spliced after [GEN]; their final hidden states go through
              sd.emb_proj and sd.llm2sd_mapper (target: sd.llm2sd_mapper_queries) into the U-Net's
              cross-attention.
  editing     IP2P's U-Net (8 input channels: the noised latents and the input picture's latents,
              unscaled as the pipeline passes them) learns the world's recolouring edits. The target is
              the same picture with the object painted the new colour (render_picture's recolour); the
              MLLM reads the input picture and the editing prompt, the queries after [EDIT].
Classifier-free guidance's null condition is the CLIP text encoder's output for "", as the pipelines
compute it; the encoder keeps its seeded weights (it only ever reads ""). The conditions are dropped to
it as SD (10 %) and IP2P (5 % text, 5 % image, 5 % both) train.

The MLLM is frozen here, its query tables included, as in the paper's third stage (the decoders alone
learn): the gradient reaches the query states and stops. So the states are computed once, without
gradients (3.4 s a batch of 16 with them, against 0.2 s for the U-Net's step).
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from decoders import LossLog, query_hidden, scale_learning_rates, turn_queries, warmup_then_drop
from miniature_data import pack, pixels, ref, render_picture, tile_array
import detector  # noqa: F401  (puts scripts/golden on the path)
import miniature_model as mm
import reference_clip_text as C
import reference_sd_pipeline as P
import reference_unet as U
import reference_vae as V
import tiny_diffusion
from scripts.shapesworld import conversations as talk
from scripts.shapesworld.world import COLOURS, decode_rle

SIDE = 64                       # pixels: generated pictures, and pictures to edit (docs/miniature.md)
SD_DIM = 96                     # sd_hidden_size: the condition's width, the U-Nets' cross-attention
QUERIES = 77
DIFFUSION_SEED = 51
VAE_CONFIG = dict(tiny_diffusion.VAE, block_out_channels=[32, 32, 32], sample_size=SIDE)
GEN_SCAN, EDIT_PICTURES = 9000, 1500
VAE_STEPS, VAE_BATCH, VAE_LR, KL_WEIGHT = 2500, 16, 1.5e-3, 1e-6
SD_STEPS, IP2P_STEPS, UNET_BATCH, UNET_LR, QUERY_LR = 1500, 1500, 16, 1e-3, 1e-4
TRAIN_TIMESTEPS = 1000
HELD_OUT = 12


def section(module):
    """The config section (sd_config / ip2p_config) of a module: the mapper's keys and the pipeline's parts."""
    values = tiny_diffusion.section_values(module)
    unet = dict(values['unet_config'], sample_size=SIDE // P.vae_scale_factor(V.AutoencoderKL(VAE_CONFIG)))
    return dict(values, unet_config=unet, vae_config=dict(VAE_CONFIG), llm_hidden_size=mm.LLM['hidden_size'],
                sd_hidden_size=SD_DIM, num_queries=QUERIES)


class Link(nn.Module):
    """The super link's side of one diffusion decoder: emb_proj, llm2sd_mapper and its queries (official names)."""

    def __init__(self):
        super().__init__()
        self.emb_proj = nn.Sequential(nn.Linear(mm.LLM['hidden_size'], SD_DIM), nn.GELU(), nn.Linear(SD_DIM, SD_DIM))
        self.llm2sd_mapper = nn.Transformer(d_model=SD_DIM, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                                            dim_feedforward=4 * SD_DIM, dropout=0.0, batch_first=True, norm_first=True)
        self.llm2sd_mapper_queries = nn.Parameter(torch.randn(1, QUERIES, SD_DIM) * 0.02)

    def forward(self, states):
        """[B, 64, llm] query states -> [B, 77, SD_DIM] conditions."""
        return self.llm2sd_mapper(src=self.emb_proj(states), tgt=self.llm2sd_mapper_queries.expand(states.shape[0], -1, -1))


class Decoder(nn.Module):
    """One module's parts, named as the checkpoint's `sd.` / `ip2p.` tensors."""

    def __init__(self, module, vae):
        super().__init__()
        values = section(module)
        torch.manual_seed(DIFFUSION_SEED + (module == 'ip2p'))
        self.link = Link()
        self.sd_unet = U.UNet2DConditionModel(values['unet_config'])
        self.sd_vae = vae
        self.sd_text_encoder = C.CLIPTextModel(values['text_encoder_config'])
        C.randomize(self.sd_text_encoder, tiny_diffusion.SEEDS[module]['text_encoder'])
        self.module, self.values = module, values

    def named_state(self):
        out = {f'{self.module}.{k}': v for k, v in self.link.state_dict().items()}
        for part in ('sd_unet', 'sd_vae', 'sd_text_encoder'):
            out.update({f'{self.module}.{part}.{k}': v for k, v in getattr(self, part).state_dict().items()})
        return out

    def null_condition(self):
        return P.null_condition(self.sd_text_encoder, torch.float32, QUERIES)


def resized(image):
    return np.asarray(Image.fromarray(image).resize((SIDE, SIDE), Image.LANCZOS))


def to_unit(images):
    """uint8 [N, S, S, 3] -> float [N, 3, S, S] in [-1, 1], as the pipelines' preprocess."""
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


# ----------------------------------------------------------------------------- data

def generation_pictures(seed):
    """The one-object pictures among the seed's first GEN_SCAN, at SIDE x SIDE, and their objects."""
    images, objects = [], []
    for index in range(GEN_SCAN):
        image, annotation = render_picture(seed, index)
        if len(annotation['objects']) == 1:
            images.append(resized(image))
            objects.append(annotation['objects'])
    return np.stack(images), objects


def editing_pairs(seed):
    """Pictures with an object that can be named, its recolouring edit (the world's editing turn) and the result."""
    inputs, targets, turns = [], [], []
    for index in range(EDIT_PICTURES):
        image, annotation = render_picture(seed, index)
        editable = talk.unique_things(annotation['objects'])
        if not editable:
            continue
        rng = np.random.default_rng([seed, 30, index])
        turn = talk._editing(editable[int(rng.integers(len(editable)))], annotation['objects'], rng)
        edited, _ = render_picture(seed, index, {turn['objects'][0]: turn['colour']})
        inputs.append(resized(image))
        targets.append(resized(edited))
        turns.append({k: turn[k] for k in ('question', 'answer', 'phrases', 'colour', 'objects')})
    return np.stack(inputs), np.stack(targets), turns


def build_data(run, seed):
    data = run.load('diffusion-data.pt')
    if data is None:
        t = time.time()
        gen_images, gen_objects = generation_pictures(seed)
        edit_inputs, edit_targets, edit_turns = editing_pairs(seed)
        data = dict(gen_images=gen_images, gen_objects=gen_objects, edit_inputs=edit_inputs, edit_targets=edit_targets,
                    edit_turns=edit_turns)
        run.save('diffusion-data.pt', data)
        run.log(f'diffusion data: {len(gen_images)} one-object pictures, {len(edit_turns)} edits ({time.time() - t:.0f} s)')
    return data


def caption(objects, rng):
    """A generation question in the world's words for these objects."""
    forms = talk.PARAPHRASES['caption']
    return talk.generation(forms[int(rng.integers(len(forms)))].format(objects=talk.object_list(objects)))['question']


# ----------------------------------------------------------------------------- the super link's query states

def generation_states(params, tokens, question):
    """The 64 query states after [GEN] of generate()'s teacher-forced prompt (no image) [64, llm]."""
    ids = [1] + tokens.encode(f'{ref.SYSTEM} USER: {question} ASSISTANT: Here it is [GEN].')
    at = ids.index(tokens.added['[GEN]']) + 1
    table = params['emb_embeddings_gen.weight']
    embeds = torch.cat([params['llm.model.embed_tokens.weight'][torch.tensor(ids[:at])], table[:mm.NUM_EMBS_GEN]])
    return ref.llama_hidden(params, mm.LLM, embeds[None])[0, at:]


def editing_states(params, tokens, features, turn, rng):
    """The 64 query states after [EDIT] of the picture's editing prompt [64, llm]."""
    seq = pack(tokens, features.shape[0], [turn], rng, splice_odds=1.0)
    return query_hidden(params, features, seq)[turn_queries(seq, [turn])[0][0]]


# ----------------------------------------------------------------------------- training

def train_vae(run, images, steps):
    saved = run.state.get('diffusion', {}).get('vae')
    torch.manual_seed(DIFFUSION_SEED)
    vae = V.AutoencoderKL(dict(VAE_CONFIG))
    opt = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    step = 0
    if saved:
        vae.load_state_dict(saved['model'])
        opt.load_state_dict(saved['opt'])
        step = saved['step']
    base, clock, log = [VAE_LR], time.time(), LossLog()
    while step < steps:
        rng = np.random.default_rng([DIFFUSION_SEED, 1, step])
        x = to_unit(images[rng.choice(len(images), VAE_BATCH, replace=False)])
        if rng.random() < 0.5:
            x = x.flip(-1)
        scale_learning_rates(opt, base, warmup_then_drop(step, steps, 50))
        mean, logvar = torch.chunk(vae.quant_conv(vae.encoder(x)), 2, dim=1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = vae.decode(z)
        l1 = (recon - x).abs().mean()
        l2 = ((recon - x) ** 2).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()
        loss = l1 + l2 + KL_WEIGHT * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        log.add(loss, {'l1': float(l1), 'l2': float(l2), 'kl': float(kl)})
        if step % 50 == 0:
            run.log(f'vae step {step}/{steps}: {log.line()}')
        if time.time() - clock > 240 or step == steps:
            run.checkpoint(diffusion={'vae': {'model': vae.state_dict(), 'opt': opt.state_dict(), 'step': step}})
            clock = time.time()
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae


@torch.no_grad()
def latents_of(vae, images):
    return torch.cat([vae.encode_mean(to_unit(images[i:i + 64])) for i in range(0, len(images), 64)])


def set_scaling_factor(vae, images):
    """1 / the std of the latents' means, as SD-1.5's scaling_factor was set (unit-variance latents for the U-Net)."""
    vae.config['scaling_factor'] = round(float(1 / latents_of(vae, images[:512]).std()), 5)
    return vae.config['scaling_factor']


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, TRAIN_TIMESTEPS, dtype=torch.float64) ** 2   # scaled_linear
    return torch.cumprod(1 - betas, 0).float()


def noise_loss(unet, clean, condition, image_latents, rng):
    """DDPM's ε loss at uniformly drawn timesteps (SD's and IP2P's training objective)."""
    t = torch.from_numpy(rng.integers(0, TRAIN_TIMESTEPS, clean.shape[0]))
    ab = alphas_cumprod()[t].view(-1, 1, 1, 1)
    noise = torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
    noisy = ab.sqrt() * clean + (1 - ab).sqrt() * noise
    sample = noisy if image_latents is None else torch.cat([noisy, image_latents], 1)
    return F.mse_loss(unet(sample, t.float(), condition), noise)


@torch.no_grad()
def centre_link(link, states):
    """emb_proj's first bias starts where the query states' mean maps to zero. The states of different
    captions share most of their length (their mean's norm is 8 times their spread around it), and what
    tells them apart is the rest: centred, it is all the mapper sees."""
    link.emb_proj[0].bias.copy_(-link.emb_proj[0].weight @ states.mean((0, 1)))


def train_unet(run, decoder, steps, batch_fn):
    """The U-Net and the link learn; batch_fn(rng) -> (clean latents, query states, image latents, condition dropped)."""
    saved = run.state.get('diffusion', {}).get(decoder.module)
    if not saved:
        centre_link(decoder.link, torch.cat([batch_fn(np.random.default_rng([DIFFUSION_SEED, 9, k]))[1] for k in range(4)]))
    opt = torch.optim.AdamW(list(decoder.sd_unet.parameters()) + list(decoder.link.parameters()), lr=UNET_LR, weight_decay=0.0)
    step = 0
    if saved:
        decoder.sd_unet.load_state_dict(saved['unet'])
        decoder.link.load_state_dict(saved['link'])
        opt.load_state_dict(saved['opt'])
        step = saved['step']
    null = decoder.null_condition()
    base, clock, log = [UNET_LR], time.time(), LossLog()
    while step < steps:
        rng = np.random.default_rng([DIFFUSION_SEED, 2 + (decoder.module == 'ip2p'), step])
        clean, states, image_latents, dropped = batch_fn(rng)
        scale_learning_rates(opt, base, warmup_then_drop(step, steps, 50))
        condition = decoder.link(states)
        condition = torch.where(dropped.view(-1, 1, 1), null.expand_as(condition), condition)
        loss = noise_loss(decoder.sd_unet, clean, condition, image_latents, rng)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        step += 1
        log.add(loss, {})
        if step % 50 == 0:
            run.log(f'{decoder.module} step {step}/{steps}: {log.line()}')
        if time.time() - clock > 240 or step == steps:
            state = {**run.state['diffusion'], decoder.module: {'unet': decoder.sd_unet.state_dict(), 'link': decoder.link.state_dict(),
                                                                'opt': opt.state_dict(), 'step': step}}
            run.checkpoint(diffusion=state)
            clock = time.time()
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)


def generation_batches(params, tokens, vae, data):
    factor = vae.config['scaling_factor']
    latents = latents_of(vae, data['gen_images']) * factor
    flipped = latents_of(vae, data['gen_images'][:, :, ::-1].copy()) * factor
    states = {}   # by question: one-object captions are a few hundred

    def question_states(question):
        if question not in states:
            with torch.no_grad():
                states[question] = generation_states(params, tokens, question)
        return states[question]

    def batch(rng):
        chosen = rng.choice(len(latents), UNET_BATCH, replace=False)
        flip = torch.from_numpy(rng.random(UNET_BATCH) < 0.5).view(-1, 1, 1, 1)
        questions = [caption(data['gen_objects'][i], rng) for i in chosen]
        return (torch.where(flip, flipped[chosen], latents[chosen]), torch.stack([question_states(q) for q in questions]), None,
                torch.from_numpy(rng.random(UNET_BATCH) < 0.1))
    return batch


@torch.no_grad()
def editing_batches(params, tokens, vae, data):
    inputs = latents_of(vae, data['edit_inputs'])
    targets = latents_of(vae, data['edit_targets']) * vae.config['scaling_factor']
    states = torch.stack([editing_states(params, tokens, mm.clip_features(params, pixels(tile_array(Image.fromarray(image)))), turn,
                                         np.random.default_rng(0))
                          for image, turn in zip(data['edit_inputs'], data['edit_turns'])])

    def batch(rng):
        chosen = rng.choice(len(targets), UNET_BATCH, replace=False)
        # IP2P's conditioning dropout: 5 % without the text, 5 % without the image, 5 % without both.
        draw = rng.random(UNET_BATCH)
        no_text = torch.from_numpy((draw < 0.05) | ((draw >= 0.10) & (draw < 0.15)))
        no_image = torch.from_numpy((draw >= 0.05) & (draw < 0.15)).view(-1, 1, 1, 1)
        return targets[chosen], states[chosen], torch.where(no_image, torch.zeros_like(inputs[chosen]), inputs[chosen]), no_text
    return batch


# ----------------------------------------------------------------------------- held out

def nearest_colour(rgb):
    return min(COLOURS, key=lambda name: sum((float(a) - b) ** 2 for a, b in zip(rgb, COLOURS[name])))


@torch.no_grad()
def held_out(params, tokens, sd, ip2p, seed, steps=20):
    """The share of generations whose pixels unlike the picture's border take the asked colour (nearest
    of the palette, a red circle, a green square, ...), and of edits of pictures past the training ones
    whose object's pixels take the asked colour; at `steps` steps, the pipelines' guidance."""
    generated = 0
    for k in range(HELD_OUT):
        colour, cls = list(COLOURS)[k % 8], mm.CLASSES[k % 5]
        cond = sd.link(generation_states(params, tokens, talk.generation(f'a {colour} {cls}')['question'])[None])
        latents = torch.randn(1, 4, SIDE // 4, SIDE // 4, generator=torch.Generator().manual_seed(k))
        image = P.generate(sd.sd_unet, sd.sd_vae, sd.sd_text_encoder, tiny_diffusion.scheduler(sd.values), cond, latents,
                           steps=steps)['image'].astype(np.float32)
        border = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), 0)
        foreground = np.abs(image - border).max(-1) > 60
        generated += bool(foreground.any()) and nearest_colour(np.median(image[foreground], 0)) == colour
    edited, index = [], EDIT_PICTURES
    while len(edited) < HELD_OUT:
        image, annotation = render_picture(seed, index)
        editable = talk.unique_things(annotation['objects'])
        index += 1
        if not editable:
            continue
        rng = np.random.default_rng([seed, 30, index])
        turn = talk._editing(editable[int(rng.integers(len(editable)))], annotation['objects'], rng)
        small = resized(image)
        features = mm.clip_features(params, pixels(tile_array(Image.fromarray(small))))
        cond = ip2p.link(editing_states(params, tokens, features, turn, rng)[None])
        g = torch.Generator().manual_seed(index)
        latents = torch.randn(1, 4, SIDE // 4, SIDE // 4, generator=g)
        noises = [torch.randn(1, 4, SIDE // 4, SIDE // 4, generator=g) for _ in range(steps)]
        out = P.edit(ip2p.sd_unet, ip2p.sd_vae, ip2p.sd_text_encoder, tiny_diffusion.scheduler(ip2p.values), cond, small,
                     latents, noises)['image']
        mask = np.asarray(Image.fromarray(decode_rle(annotation['objects'][turn['objects'][0]]['mask']).astype(np.uint8) * 255)
                          .resize((SIDE, SIDE), Image.NEAREST)) > 0
        edited.append(bool(mask.any()) and nearest_colour(np.median(out[mask].astype(np.float32), 0)) == turn['colour'])
    return generated / HELD_OUT, float(np.mean(edited))


# ----------------------------------------------------------------------------- the part

def train_diffusion(run, params, tokens, seed, vae_steps, sd_steps, ip2p_steps):
    """The VAE, then SD behind [GEN], then IP2P behind [EDIT]; the run's state keeps each (resumable)."""
    data = build_data(run, seed)
    t = time.time()
    vae = train_vae(run, np.concatenate([data['gen_images'], data['edit_inputs'], data['edit_targets']]), vae_steps)
    factor = set_scaling_factor(vae, data['edit_inputs'])
    run.checkpoint(diffusion={**run.state['diffusion'], 'scaling_factor': factor})
    run.log(f'vae done ({time.time() - t:.0f} s this session): scaling_factor {factor}')
    sd, ip2p = Decoder('sd', vae), Decoder('ip2p', vae)
    t = time.time()
    train_unet(run, sd, sd_steps, generation_batches(params, tokens, vae, data))
    run.log(f'sd done ({time.time() - t:.0f} s this session)')
    t = time.time()
    train_unet(run, ip2p, ip2p_steps, editing_batches(params, tokens, vae, data))
    run.log(f'ip2p done ({time.time() - t:.0f} s this session)')
    gen, edit = held_out(params, tokens, sd, ip2p, seed)
    run.log(f'diffusion held-out: generations in the asked colour {gen:.3f}, edits to the asked colour {edit:.3f}')


def exported(state):
    """The checkpoint's sd.* and ip2p.* tensors and their config sections from a run's diffusion state."""
    vae = V.AutoencoderKL(dict(VAE_CONFIG))
    vae.load_state_dict(state['vae']['model'])
    vae.config['scaling_factor'] = state['scaling_factor']
    tensors, config = {}, {}
    for module in ('sd', 'ip2p'):
        decoder = Decoder(module, vae)
        decoder.sd_unet.load_state_dict(state[module]['unet'])
        decoder.link.load_state_dict(state[module]['link'])
        tensors.update(decoder.named_state())
        config[f'{module}_config'] = dict(decoder.values, vae_config=vae.config)
    return tensors, config
