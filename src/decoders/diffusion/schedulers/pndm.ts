/**
 * diffusers' PNDMScheduler with skip_prk_steps (crowsonkb's PLMS), Stable Diffusion 1.5's scheduler
 * (decoders.md 2.C, C.1 step 5).
 *
 * Timesteps: the spaced list (leading: 1, 21, ..., 981 for 50 steps) without its last entry, then its
 * second-to-last and last, reversed: 981, 961, 961, 941, ..., 21, 1 (n + 1 U-Net calls).
 *
 * step_plms, call k with U-Net output e_k (d = T // n, ets the kept outputs, newest last):
 *   k = 0: ets = [e_0], save the sample x_0, step t -> t - d with e_0.
 *   k = 1: (e_1 is not kept) step again from the saved x_0, t + d -> t, with (e_1 + e_0) / 2.
 *   k > 1: ets = last 3 of ets + [e_k]; step t -> t - d with (3e, -e) / 2, (23, -16, 5) / 12 or
 *          (55, -59, 37, -9) / 24 over the 2, 3 or 4 newest, newest first.
 * _get_prev_sample (PNDM paper formula 9), with a = alphas_cumprod, a_prev = a[0] (or 1) when prev < 0:
 *   x' = sqrt(a_prev / a_t) x - (a_prev - a_t) e / (a_t sqrt(1 - a_prev) + sqrt(a_t (1 - a_t) a_prev))
 */
import type { Engine } from '../../../engine/engine.js';
import type { Tensor } from '../../../engine/tensor.js';
import { cast } from '../../../ops/copy.js';
import { alphasCumprod, checkStep, spacedTimesteps, weightedSum, type Scheduler, type SchedulerConfig } from './schedule.js';

const f = Math.fround;

/** The PLMS weights over the 1..4 newest kept outputs, newest first. */
const PLMS_WEIGHTS = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]] as const;

export class PndmScheduler implements Scheduler {
  readonly timesteps: Float32Array;
  readonly initNoiseSigma = 1;
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  /** T // n: the distance to the previous timestep. */
  private readonly stride: number;
  private counter = 0;
  /** Copies of the kept U-Net outputs (at most 4, newest last) and the sample of call 0, in buffers of their own. */
  private ets: Tensor[] = [];
  private curSample: Tensor | null = null;

  constructor(config: SchedulerConfig, steps: number) {
    if (config.skipPrkSteps !== true) throw new Error('pndm: skip_prk_steps false (the Runge-Kutta warm-up) is not implemented; SD-1.5 sets it true');
    const spaced = spacedTimesteps(config, config.timestepSpacing ?? 'leading', steps, true);
    this.timesteps = Float32Array.from([...spaced.slice(0, -1), ...spaced.slice(-2, -1), ...spaced.slice(-1)].reverse());
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
    this.stride = Math.floor(config.numTrainTimesteps / steps);
  }

  /** The identity: a view the caller owns. */
  scaleModelInput(sample: Tensor): Tensor {
    return sample.view(sample.shape);
  }

  step(modelOutput: Tensor, index: number, sample: Tensor): Tensor {
    checkStep('pndm', this.timesteps.length, index, modelOutput, sample);
    if (index !== this.counter) throw new Error(`pndm: steps must come in order, one per call: expected call ${this.counter}, got ${index}`);
    const kept = this.ets[0];
    if (kept && kept.shape.join() !== sample.shape.join()) throw new RangeError(`pndm: sample [${sample.shape.join(', ')}] differs from the earlier calls' [${kept.shape.join(', ')}]`);
    const engine = sample.engine;
    let timestep = this.timesteps[index]!;
    let prevTimestep = timestep - this.stride;
    let terms: [number, Tensor][];
    let from = sample;
    if (this.counter === 1) {
      // The re-evaluation: the U-Net ran on call 0's result at t - d; step call 0's sample again with the mean.
      prevTimestep = timestep;
      timestep += this.stride;
      terms = [[0.5, modelOutput], [0.5, this.ets[this.ets.length - 1]!]];
      from = this.curSample!;
    } else {
      this.keep(engine, modelOutput);
      const newestFirst = [...this.ets].reverse();
      terms = PLMS_WEIGHTS[this.ets.length - 1]!.map((w, i) => [w, newestFirst[i]!]);
      if (this.counter === 0) this.curSample = this.copy(engine, sample, null);
    }
    const [sampleCoeff, outputCoeff] = this.coefficients(timestep, prevTimestep);
    const prev = weightedSum([[sampleCoeff, from], ...terms.map(([w, t]) => [w * outputCoeff, t] as const)]);
    if (this.counter === 1) {
      this.curSample!.dispose();
      this.curSample = null;
    }
    this.counter++;
    return prev;
  }

  /** x' = sampleCoeff x + outputCoeff e, with _get_prev_sample's f32 scalars. */
  private coefficients(timestep: number, prevTimestep: number): [number, number] {
    const alphaProdT = this.alphasCumprod[timestep]!;
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep]! : this.finalAlphaCumprod;
    const betaProdT = f(1 - alphaProdT);
    const betaProdTPrev = f(1 - alphaProdTPrev);
    const sampleCoeff = f(Math.sqrt(f(alphaProdTPrev / alphaProdT)));
    const denom = f(f(alphaProdT * f(Math.sqrt(betaProdTPrev))) + f(Math.sqrt(f(f(alphaProdT * betaProdT) * alphaProdTPrev))));
    return [sampleCoeff, -f(alphaProdTPrev - alphaProdT) / denom];
  }

  /** ets = last 3 of ets + [a copy of e], reusing the dropped buffer. */
  private keep(engine: Engine, e: Tensor): void {
    const reuse = this.ets.length === 4 ? this.ets.shift()! : null;
    this.ets.push(this.copy(engine, e, reuse));
  }

  /** An f32 copy in a buffer no enclosing scope() frees (the caller may free or reuse the original). */
  private copy(engine: Engine, t: Tensor, into: Tensor | null): Tensor {
    const out = into ?? engine.empty(t.shape, 'f32', { persistent: true });
    engine.scope(() => {
      const src = t.dtype === 'f32' ? t : cast(t, 'f32');
      engine.copyBytes(src, 0, out, 0, src.byteLength);
    });
    return out;
  }

  dispose(): void {
    for (const t of this.ets) t.dispose();
    this.curSample?.dispose();
    this.ets = [];
    this.curSample = null;
  }
}
