"""PyTorch reference of the two diffusers 0.28.2 pipelines VisionLLM v2 runs (decoders.md 2.C and 2.D), on the
transcribed modules of this folder (reference_unet.UNet2DConditionModel, reference_vae.AutoencoderKL,
reference_clip_text.CLIPTextModel, reference_schedulers.PNDMScheduler / EulerAncestralDiscreteScheduler); diffusers
itself is not installed here. Only the paths the release takes are kept: batch 1, one image per prompt, classifier-free
guidance on, prompt_embeds given (the super link's condition), no negative prompt, no IP-Adapter, no
guidance_rescale, no safety checker (modeling_sd.py builds the pipeline with safety_checker=None), output_type 'pil'
(returned here as the uint8 HWC array PIL would hold).

generate(): src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py, StableDiffusionPipeline.__call__
  encode_prompt (:424-466): prompt_embeds given and negative_prompt_embeds None -> uncond_tokens = [""] (:427),
      tokenized with padding="max_length", max_length = prompt_embeds.shape[1] (77) (:448-452), text_encoder(ids)[0]
      (last_hidden_state, after final_layer_norm) (:462-466). The ids of "" are [bos, eos] padded with the tokenizer's
      pad token; SD-1.5's CLIPTokenizer pads with "<|endoftext|>" = eos, so the ids are [bos] + [eos] * 76 (SD-1.5:
      [49406] + [49407] * 76). null_ids(text_encoder.config) builds them from the config's bos_token_id /
      eos_token_id / pad_token_id.
  :945      prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
  :670-688  prepare_latents: shape (1, unet in_channels, height // vae_scale_factor, width // vae_scale_factor); the
            given latents * scheduler.init_noise_sigma (PNDM: 1.0)
  :1001-1025 for t in scheduler.timesteps: latent_model_input = torch.cat([latents] * 2); scale_model_input (PNDM:
            identity); noise_pred = unet(latent_model_input, t, encoder_hidden_states=prompt_embeds);
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2);
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond);
            latents = scheduler.step(noise_pred, t, latents)
  :1045     image = vae.decode(latents / vae.config.scaling_factor)
  then image_processor.postprocess (src/diffusers/image_processor.py VaeImageProcessor): denormalize
  (images / 2 + 0.5).clamp(0, 1) (:162), pt_to_numpy (.float(): float32) (:143-149), numpy_to_pil
  (images * 255).round().astype("uint8") (:110; numpy's round, half to even).

edit(): src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_instruct_pix2pix.py,
StableDiffusionInstructPix2PixPipeline.__call__ (defaults: num_inference_steps 100, guidance_scale 7.5,
image_guidance_scale 1.5; do_classifier_free_guidance = guidance_scale > 1 and image_guidance_scale >= 1 (:902))
  _encode_prompt: negative as above (:569, :593), then
  :623      prompt_embeds = torch.cat([prompt_embeds, negative_prompt_embeds, negative_prompt_embeds])
  :352      image = image_processor.preprocess(image): VaeImageProcessor(vae_scale_factor) (:157) with
            vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) (:156) -- 8 for SD-1.5's VAE, 2 for a
            two-level tiny VAE. preprocess (image_processor.py:468-595) on a PIL image: get_default_height_width floors
            width and height to a multiple of vae_scale_factor (:463), resize = PIL image.resize((width, height),
            LANCZOS) (:386; done even at the same size, where PIL returns a copy), pil_to_numpy
            np.array(image).astype(np.float32) / 255.0 (:126), numpy_to_pt, normalize 2.0 * images - 1.0 (:155).
  :844-883  prepare_image_latents: image_latents = retrieve_latents(vae.encode(image), sample_mode="argmax") (:859):
            the latent distribution's mode = its mean, NOT multiplied by scaling_factor;
            image_latents = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)]) (:880-881)
  :369      height, width = image_latents' size * vae_scale_factor; prepare_latents (:823-841): latents of that size
            times scheduler.init_noise_sigma (Euler-ancestral, linspace spacing: max sigma)
  :410-436  latent_model_input = torch.cat([latents] * 3); scaled = scheduler.scale_model_input(latent_model_input, t);
            scaled = torch.cat([scaled, image_latents], dim=1); noise_pred = unet(scaled, t, prompt_embeds);
            noise_pred_text, noise_pred_image, noise_pred_uncond = noise_pred.chunk(3) (:428);
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_image)
                         + image_guidance_scale * (noise_pred_image - noise_pred_uncond);
            latents = scheduler.step(noise_pred, t, latents) -- the per-step noise is injected here
            (reference_schedulers DEVIATION 1: `noise` replaces randn_tensor(generator=...)).
  :457      image = vae.decode(latents / vae.config.scaling_factor); postprocess as above.

Both functions run in the dtype of `cond` (the goldens: float64, modules .double()); the scheduler coefficients carry
diffusers' float32 rounding (reference_schedulers). They return a dict: 'image' (uint8 [H, W, 3] numpy),
'image_float' ((x / 2 + 0.5).clamp(0, 1) * 255 before rounding, [H, W, 3] torch), 'latents' (the final latents),
'timesteps', 'null_condition' [1, 77, d], and for edit 'pixels' (the preprocessed image [1, 3, h, w]),
'image_latent' [1, 4, h / f, w / f], 'size' (height, width).
"""
import numpy as np
import torch
from PIL import Image


def vae_scale_factor(vae):
    """pipeline_stable_diffusion.py:266 / pipeline_stable_diffusion_instruct_pix2pix.py:156."""
    return 2 ** (len(vae.config['block_out_channels']) - 1)


def null_ids(text_config, length=77):
    """CLIPTokenizer("", padding="max_length", max_length=length).input_ids: <|startoftext|>, <|endoftext|>, then the
    pad token (SD-1.5: "<|endoftext|>", the eos) up to `length`."""
    bos, eos = text_config['bos_token_id'], text_config['eos_token_id']
    pad = text_config.get('pad_token_id', eos)
    return [bos, eos] + [pad] * (length - 2)


@torch.no_grad()
def null_condition(text_encoder, dtype=torch.float64, length=77):
    """encode_prompt's negative_prompt_embeds for negative_prompt None: text_encoder(ids of "")[0], [1, length, d]."""
    ids = torch.tensor([null_ids(text_encoder.config, length)])
    return text_encoder(ids).to(dtype)


def postprocess(image):
    """VaeImageProcessor.postprocess(output_type='pil') of a [1, 3, H, W] decoder output: (uint8 [H, W, 3], float
    [H, W, 3] = the denormalized values * 255 before rounding)."""
    x = (image / 2 + 0.5).clamp(0, 1)                                  # denormalize
    hwc = x[0].permute(1, 2, 0)
    as_f32 = hwc.float().numpy()                                        # pt_to_numpy: .float()
    return (as_f32 * 255).round().astype('uint8'), hwc * 255            # numpy_to_pil


def preprocess(image, factor):
    """VaeImageProcessor(vae_scale_factor=factor).preprocess(PIL image) -> [1, 3, h, w] float32 in [-1, 1] and the
    resized PIL image."""
    width, height = (x - x % factor for x in (image.width, image.height))
    resized = image.resize((width, height), resample=Image.LANCZOS)
    arr = np.array(resized).astype(np.float32) / 255.0
    pixels = torch.from_numpy(arr[None].transpose(0, 3, 1, 2).copy())
    return 2.0 * pixels - 1.0, resized


@torch.no_grad()
def generate(unet, vae, text_encoder, scheduler, cond, latents, guidance=7.5, steps=50, trace=None):
    """StableDiffusionPipeline(prompt_embeds=cond, latents=latents, guidance_scale=guidance,
    num_inference_steps=steps). cond [1, 77, d]; latents [1, 4, h, w] (height = h * vae_scale_factor). `scheduler` is
    a fresh reference_schedulers.PNDMScheduler; `trace` (a dict) receives per-call 'noise_pred' (the guided ε) and
    'latents' (after each step)."""
    dtype = cond.dtype
    negative_prompt_embeds = null_condition(text_encoder, dtype, cond.shape[1])
    prompt_embeds = torch.cat([negative_prompt_embeds, cond])
    scheduler.set_timesteps(steps)
    latents = latents.to(dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        latent_model_input = torch.cat([latents] * 2)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        noise_pred = unet(latent_model_input, t, prompt_embeds)
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents)
        if trace is not None:
            trace.setdefault('noise_pred', []).append(noise_pred)
            trace.setdefault('latents', []).append(latents)
    decoded = vae.decode(latents / vae.config['scaling_factor'])
    image, image_float = postprocess(decoded)
    return dict(image=image, image_float=image_float, latents=latents, timesteps=scheduler.timesteps.clone(),
                null_condition=negative_prompt_embeds)


@torch.no_grad()
def edit(unet8, vae, text_encoder, scheduler, cond, image_uint8, latents, step_noises, guidance=7.5, image_guidance=1.5,
         trace=None):
    """StableDiffusionInstructPix2PixPipeline(prompt_embeds=cond, image=image, latents=latents,
    guidance_scale=guidance, image_guidance_scale=image_guidance, num_inference_steps=len(step_noises)) with the
    Euler-ancestral noise of step i = step_noises[i]. image_uint8: a PIL RGB image or an HWC uint8 array;
    latents [1, 4, h / f, w / f] of the FLOORED size (before init_noise_sigma); `scheduler` a fresh
    reference_schedulers.EulerAncestralDiscreteScheduler."""
    assert guidance > 1.0 and image_guidance >= 1.0, 'the three-way guidance path only'
    dtype = cond.dtype
    image = image_uint8 if isinstance(image_uint8, Image.Image) else Image.fromarray(np.asarray(image_uint8, dtype=np.uint8))
    negative_prompt_embeds = null_condition(text_encoder, dtype, cond.shape[1])
    prompt_embeds = torch.cat([cond, negative_prompt_embeds, negative_prompt_embeds])

    factor = vae_scale_factor(vae)
    pixels, _ = preprocess(image, factor)
    scheduler.set_timesteps(len(step_noises))
    image_latent = vae.encode_mean(pixels.to(dtype))                    # latent_dist.mode(), unscaled
    image_latents = torch.cat([image_latent, image_latent, torch.zeros_like(image_latent)])
    assert tuple(latents.shape[-2:]) == tuple(image_latent.shape[-2:]), (latents.shape, image_latent.shape)
    latents = latents.to(dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        latent_model_input = torch.cat([latents] * 3)
        scaled_latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        scaled_latent_model_input = torch.cat([scaled_latent_model_input, image_latents], dim=1)
        noise_pred = unet8(scaled_latent_model_input, t, prompt_embeds)
        noise_pred_text, noise_pred_image, noise_pred_uncond = noise_pred.chunk(3)
        noise_pred = (noise_pred_uncond + guidance * (noise_pred_text - noise_pred_image)
                      + image_guidance * (noise_pred_image - noise_pred_uncond))
        latents = scheduler.step(noise_pred, t, latents, noise=step_noises[i].to(dtype))
        if trace is not None:
            trace.setdefault('noise_pred', []).append(noise_pred)
            trace.setdefault('latents', []).append(latents)
    decoded = vae.decode(latents / vae.config['scaling_factor'])
    out_image, image_float = postprocess(decoded)
    return dict(image=out_image, image_float=image_float, latents=latents, timesteps=scheduler.timesteps.clone(),
                null_condition=negative_prompt_embeds, pixels=pixels, image_latent=image_latent,
                size=(pixels.shape[2], pixels.shape[3]))
