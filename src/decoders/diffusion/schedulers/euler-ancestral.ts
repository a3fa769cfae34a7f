/**
 * diffusers' EulerAncestralDiscreteScheduler, InstructPix2Pix's scheduler (decoders.md 2.D step 5).
 *
 * Timesteps (linspace, timbrooks' config): linspace(0, T - 1, n) as float32, descending, given to the U-Net
 * as they are. sigma(t) = np.interp(t, 0..T-1, sqrt((1 - a) / a)) with a = alphas_cumprod, then a final 0;
 * init_noise_sigma = max sigma (sqrt(max^2 + 1) for 'leading').
 * scale_model_input: x / sqrt(sigma_i^2 + 1).
 * step i: x0 = x - sigma_i e; sigma_up = sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2);
 *   sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2); x' = x + (x - x0) / sigma_i (sigma_down - sigma_i) + sigma_up z
 *   = x + (sigma_down - sigma_i) e + sigma_up z, z ~ N(0, 1): the step is stochastic.
 * The step is stateless: any call index may be stepped (diffusers counts the calls from the index of the
 * first timestep it is given, 0 in the pipelines).
 */
import type { Tensor } from '../../../engine/tensor.js';
import { alphasCumprod, checkStep, spacedTimesteps, weightedSum, type Scheduler, type SchedulerConfig, type SchedulerOptions } from './schedule.js';
import { normalValues } from '../../../engine/random.js';

const f = Math.fround;

/** numpy.interp over xp = 0, 1, ..., fp.length - 1, in float64. */
function interpUnitGrid(x: number, fp: Float32Array): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0]!;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  if (j === x) return fp[j]!;
  return (fp[j + 1]! - fp[j]!) * (x - j) + fp[j]!;
}

export class EulerAncestralScheduler implements Scheduler {
  readonly timesteps: Float32Array;
  /** One per call and a final 0 (float32, as diffusers keeps them). */
  readonly sigmas: Float32Array;
  readonly initNoiseSigma: number;
  private readonly random?: () => number;

  constructor(config: SchedulerConfig, steps: number, options: SchedulerOptions = {}) {
    const spacing = config.timestepSpacing ?? 'linspace';
    this.timesteps = Float32Array.from(spacedTimesteps(config, spacing, steps, false).reverse());
    // ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32 torch arithmetic.
    const trained = alphasCumprod(config).map((a) => f(Math.sqrt(f(f(1 - a) / a))));
    this.sigmas = Float32Array.from([...this.timesteps].map((t) => interpUnitGrid(t, trained)).concat(0));
    const max = this.sigmas.reduce((m, s) => Math.max(m, s), 0);
    this.initNoiseSigma = spacing === 'leading' ? f(Math.sqrt(f(f(max * max) + 1))) : max;
    this.random = options.random;
  }

  scaleModelInput(sample: Tensor, index: number): Tensor {
    checkStep('euler_ancestral', this.timesteps.length, index, sample, sample);
    const sigma = this.sigmas[index]!;
    return weightedSum([[1 / f(Math.sqrt(f(f(sigma * sigma) + 1))), sample]]);
  }

  step(modelOutput: Tensor, index: number, sample: Tensor, noise?: Tensor): Tensor {
    checkStep('euler_ancestral', this.timesteps.length, index, modelOutput, sample, noise);
    const sigma = this.sigmas[index]!;
    const sigmaTo = this.sigmas[index + 1]!;
    const [from2, to2] = [f(sigma * sigma), f(sigmaTo * sigmaTo)];
    const sigmaUp = f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)));
    const sigmaDown = f(Math.sqrt(f(to2 - f(sigmaUp * sigmaUp))));
    const dt = f(sigmaDown - sigma);
    const z = noise ?? (sigmaUp === 0 ? null : this.draw(sample));
    const prev = weightedSum([[1, sample], [dt, modelOutput], ...(z ? [[sigmaUp, z] as const] : [])]);
    if (z && z !== noise) z.dispose();
    return prev;
  }

  /** N(0, 1) values in the sample's shape from the caller's uniform draws. */
  private draw(sample: Tensor): Tensor {
    if (!this.random) throw new Error('euler_ancestral: step() needs noise, or options.random to draw it (the step is stochastic)');
    return sample.engine.tensor(normalValues(this.random, sample.size), sample.shape);
  }

  dispose(): void {}
}
