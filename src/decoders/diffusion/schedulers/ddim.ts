/**
 * diffusers' DDIMScheduler with eta = 0 (deterministic) and epsilon prediction, on Stable Diffusion's
 * betas (set_alpha_to_one false, clip_sample false, as SD-1.5's config sets them).
 *
 * Timesteps (leading): round(i * (T // n)) + steps_offset, descending; prev = t - T // n, a_prev = a[0]
 * (or 1) when prev < 0. With a = alphas_cumprod:
 *   x0 = (x - sqrt(1 - a_t) e) / sqrt(a_t);  x' = sqrt(a_prev) x0 + sqrt(1 - a_prev) e
 * The step is stateless: any call index may be stepped.
 */
import type { Tensor } from '../../../engine/tensor.js';
import { alphasCumprod, checkStep, spacedTimesteps, weightedSum, type Scheduler, type SchedulerConfig } from './schedule.js';

const f = Math.fround;

export class DdimScheduler implements Scheduler {
  readonly timesteps: Float32Array;
  readonly initNoiseSigma = 1;
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly stride: number;

  constructor(config: SchedulerConfig, steps: number) {
    if (config.clipSample !== false) throw new Error('ddim: clip_sample true (clamping x0 to [-1, 1]) is not implemented; SD-1.5 sets it false');
    this.timesteps = Float32Array.from(spacedTimesteps(config, config.timestepSpacing ?? 'leading', steps, true).reverse());
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = config.setAlphaToOne === false ? this.alphasCumprod[0]! : 1;
    this.stride = Math.floor(config.numTrainTimesteps / steps);
  }

  /** The identity: a view the caller owns. */
  scaleModelInput(sample: Tensor): Tensor {
    return sample.view(sample.shape);
  }

  step(modelOutput: Tensor, index: number, sample: Tensor): Tensor {
    checkStep('ddim', this.timesteps.length, index, modelOutput, sample);
    const timestep = this.timesteps[index]!;
    const prevTimestep = timestep - this.stride;
    const alphaProdT = this.alphasCumprod[timestep]!;
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep]! : this.finalAlphaCumprod;
    // diffusers' f32 scalars: sqrt(1 - a_t), sqrt(a_t), sqrt(a_prev), sqrt(1 - a_prev - std_dev_t^2) with std_dev_t = 0.
    const sqrtBetaT = f(Math.sqrt(f(1 - alphaProdT)));
    const sqrtAlphaT = f(Math.sqrt(alphaProdT));
    const sqrtAlphaPrev = f(Math.sqrt(alphaProdTPrev));
    const direction = f(Math.sqrt(f(1 - alphaProdTPrev)));
    const x0Weight = sqrtAlphaPrev / sqrtAlphaT;
    return weightedSum([[x0Weight, sample], [direction - x0Weight * sqrtBetaT, modelOutput]]);
  }

  dispose(): void {}
}
