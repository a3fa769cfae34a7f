/**
 * The two pipelines, as diffusers 0.28.2 runs them with the super link's condition in place of the
 * prompt's encoding (decoders.md C.1, D; pipeline_stable_diffusion.py, pipeline_stable_diffusion_
 * instruct_pix2pix.py):
 *
 *   generation  z ~ N(0, 1)·σ_init [1, 4, H/f, W/f]; per timestep:
 *                 ε_u, ε_c = unet([z, z], t, [null, c]);  z = step(ε_u + g·(ε_c − ε_u))
 *   editing     E = vae.encode(image).mean (not scaled); per timestep, x = scale_model_input(z):
 *                 ε_t, ε_i, ε_u = unet(cat([x, x, x], [E, E, 0]), t, [c, null, null])
 *                 z = step(ε_u + g·(ε_t − ε_i) + g_img·(ε_i − ε_u))
 *   both        image = vae.decode(z / scaling_factor) as RGB bytes (images.ts)
 *
 * The null condition is CLIP of the empty prompt (text-encoder.ts), made once per model. Noise is
 * seeded (images.ts); `latents` and `noise` inject a reference's draws. Each step runs in its own
 * scope, so only the latents and the scheduler's state live between steps.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import type { RgbImage } from '../../image/gpu-image.js';
import { concat } from '../../ops/copy.js';
import { scale } from '../../ops/elementwise.js';
import { editInput, GaussianNoise, toRgb, type GeneratedImage } from './images.js';
import { createScheduler, type Scheduler, type SchedulerConfig, type SchedulerKind } from './schedulers/index.js';
import { weightedSum } from './schedulers/schedule.js';
import type { ClipTextEncoder, NullPromptIds } from './text-encoder.js';
import type { UNet2DConditionModel } from './unet.js';
import type { AutoencoderKLVae } from './vae.js';

/** A loaded pipeline's networks and settings (one per decoder: sd, ip2p). */
export interface DiffusionParts {
  unet: UNet2DConditionModel;
  vae: AutoencoderKLVae;
  textEncoder: ClipTextEncoder;
  nullIds: NullPromptIds;
  scheduler: { kind: SchedulerKind; config: SchedulerConfig };
}

export interface DiffusionRunOptions {
  steps: number;
  guidance: number;
  /** Editing: the image guidance scale. */
  imageGuidance?: number;
  seed?: number;
  /** Generation: the output size in pixels, multiples of the VAE's factor (default the U-Net's sample_size × factor: 512). */
  width?: number;
  height?: number;
  scheduler?: SchedulerKind;
  /** Injected draws (tests, reproduction): the initial latents (before σ_init), and each step's noise, in the latents' shape. */
  latents?: Float32Array;
  noise?: (step: number) => Float32Array | undefined;
  /** After each denoising step: steps done, and in all. */
  onStep?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Text to image: one image for one condition [1, S, crossDim]. */
export async function generateImage(parts: DiffusionParts, condition: Tensor, options: DiffusionRunOptions): Promise<GeneratedImage> {
  const { unet, vae } = parts;
  const engine = condition.engine;
  const factor = vae.factor;
  const { width = unet.config.sampleSize * factor, height = unet.config.sampleSize * factor } = options;
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < factor || v % factor) throw new RangeError(`generate: ${name} ${v} must be a positive multiple of ${factor} (the VAE's factor)`);
  }
  const nullCondition = await parts.textEncoder.nullCondition(parts.nullIds);
  const conditions = engine.scope(() => concat([nullCondition.reshape([1, ...nullCondition.shape]), condition], 0));
  try {
    const shape = [1, unet.config.inChannels, height / factor, width / factor];
    return await denoise(engine, parts, options, shape, (x, t) => {
      const eps = unet.forward(concat([x, x], 0), t, conditions);
      return weightedSum([[1 - options.guidance, eps.rows(0, 1)], [options.guidance, eps.rows(1, 2)]]);
    });
  } finally {
    conditions.dispose();
  }
}

/** Image editing: the image, changed as the condition [1, S, crossDim] says; output size = the image's, floored to the VAE's factor. */
export async function editImage(parts: DiffusionParts, condition: Tensor, image: RgbImage, options: DiffusionRunOptions): Promise<GeneratedImage> {
  const { unet, vae } = parts;
  const engine = condition.engine;
  const g = options.guidance;
  const gi = options.imageGuidance ?? 1.5;
  const nullCondition = (await parts.textEncoder.nullCondition(parts.nullIds)).reshape([1, -1, condition.shape[2]!]);
  const fixed = engine.scope(() => {
    const latent = vae.encodeMean(editInput(engine, image, vae.factor));
    return {
      conditions: concat([condition, nullCondition, nullCondition], 0),
      imageLatents: concat([latent, latent, engine.tensor(new Float32Array(latent.size), latent.shape)], 0),
    };
  });
  nullCondition.dispose();
  try {
    const [, channels, h, w] = fixed.imageLatents.shape as [number, number, number, number];
    const latentChannels = unet.config.inChannels - channels;
    if (latentChannels < 1) throw new RangeError(`edit: the U-Net reads ${unet.config.inChannels} channels; the image latent alone has ${channels}`);
    return await denoise(engine, parts, options, [1, latentChannels, h, w], (x, t) => {
      const eps = unet.forward(concat([concat([x, x, x], 0), fixed.imageLatents], 1), t, fixed.conditions);
      return weightedSum([[g, eps.rows(0, 1)], [gi - g, eps.rows(1, 2)], [1 - gi, eps.rows(2, 3)]]);
    });
  } finally {
    fixed.conditions.dispose();
    fixed.imageLatents.dispose();
  }
}

/**
 * The denoising loop shared by both pipelines: latents of `shape`, `guided(x, t)` gives the guided ε
 * for the scaled latents x at timestep t (inside the step's scope); then the VAE decode.
 */
async function denoise(engine: Engine, parts: DiffusionParts, options: DiffusionRunOptions, shape: number[], guided: (x: Tensor, t: number) => Tensor): Promise<GeneratedImage> {
  const { vae } = parts;
  const noise = new GaussianNoise(options.seed ?? 0);
  const scheduler = createScheduler(options.scheduler ?? parts.scheduler.kind, parts.scheduler.config, options.steps, { random: noise.uniform });
  let z = initialLatents(engine, scheduler, noise, shape, options.latents);
  try {
    const total = scheduler.timesteps.length;
    for (let i = 0; i < total; i++) {
      if (options.signal?.aborted) throw options.signal.reason ?? new DOMException('generation aborted', 'AbortError');
      const next = engine.scope(() => {
        const injected = options.noise?.(i);
        if (injected && injected.length !== z.size) throw new RangeError(`diffusion: step ${i}'s injected noise has ${injected.length} values for latents ${JSON.stringify(z.shape)}`);
        return scheduler.step(guided(scheduler.scaleModelInput(z, i), scheduler.timesteps[i]!), i, z, injected && engine.tensor(injected, z.shape));
      });
      z.dispose();
      z = next;
      if (options.onStep) {
        await engine.sync();
        options.onStep(i + 1, total);
      }
    }
    const decoded = engine.scope(() => vae.decode(scale(z, 1 / vae.config.scalingFactor)));
    try {
      return await toRgb(decoded);
    } finally {
      decoded.dispose();
    }
  } finally {
    z.dispose();
    scheduler.dispose();
  }
}

/** The first latents: injected or drawn, times the scheduler's initial σ. */
function initialLatents(engine: Engine, scheduler: Scheduler, noise: GaussianNoise, shape: number[], injected?: Float32Array): Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  if (injected && injected.length !== size) throw new RangeError(`diffusion: injected latents hold ${injected.length} values; the latents are ${JSON.stringify(shape)}`);
  return engine.scope(() => scale(injected ? engine.tensor(injected, shape) : noise.sample(engine, shape), scheduler.initNoiseSigma));
}
