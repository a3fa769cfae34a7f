/**
 * What the three schedulers share: the config (a diffusers scheduler_config.json), the noise schedule
 * (betas, alphas_cumprod) and the timestep spacings, computed as diffusers 0.28.2 computes them, and the
 * Scheduler interface with the one GPU expression every step reduces to: a weighted sum of tensors.
 *
 * diffusers builds the schedule in float32 torch tensors and takes each step's scalar coefficients from
 * them with float32 arithmetic; the host mirrors that rounding with Math.fround, then combines the
 * coefficients of a step in float64 and hands each tensor one f32 weight.
 */
import type { Tensor } from '../../../engine/tensor.js';
import type { ConfigReader } from '../../../io/config-reader.js';
import { add, unary } from '../../../ops/elementwise.js';
import { roundHalfEven } from '../../../engine/dtype.js';

const f = Math.fround;

export type BetaSchedule = 'linear' | 'scaled_linear';
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/** A diffusers scheduler_config.json, the keys the three schedulers read (prediction_type is 'epsilon' only). */
export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  stepsOffset: number;
  /**
   * Left out, each scheduler takes its diffusers class default: 'leading' for PNDM and DDIM, 'linspace'
   * for Euler-ancestral (timbrooks/instruct-pix2pix's config names no spacing and so runs 'linspace').
   */
  timestepSpacing?: TimestepSpacing;
  /** PNDM and DDIM: the alpha product before the first training step, 1 or alphas_cumprod[0] (class defaults: PNDM false, DDIM true). */
  setAlphaToOne?: boolean;
  /** PNDM: only true (PLMS, as Stable Diffusion runs it) is implemented; the class default is false. */
  skipPrkSteps?: boolean;
  /** DDIM: only false is implemented; the class default is true. */
  clipSample?: boolean;
}

/** runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json (PNDM); timbrooks/instruct-pix2pix's has the same values. */
export const SD15_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
  stepsOffset: 1,
  setAlphaToOne: false,
  skipPrkSteps: true,
  clipSample: false,
};

/**
 * Reads a scheduler_config.json. Absent keys take SD-1.5's values (SD15_SCHEDULER_CONFIG), except
 * timestep_spacing, set_alpha_to_one, skip_prk_steps and clip_sample, whose diffusers defaults depend on
 * the scheduler class: left out, each scheduler applies its own. Keys diffusers reads but these
 * schedulers do not implement are refused when set, each error naming the key.
 */
export function parseSchedulerConfig(c: ConfigReader): SchedulerConfig {
  const d = SD15_SCHEDULER_CONFIG;
  const config: SchedulerConfig = {
    numTrainTimesteps: c.positive('num_train_timesteps', d.numTrainTimesteps),
    betaStart: c.positiveNumber('beta_start', d.betaStart),
    betaEnd: c.positiveNumber('beta_end', d.betaEnd),
    betaSchedule: c.str('beta_schedule', ['linear', 'scaled_linear'] as const, d.betaSchedule),
    stepsOffset: c.int('steps_offset', d.stepsOffset),
  };
  c.str('prediction_type', ['epsilon'] as const, 'epsilon');
  if (c.has('timestep_spacing')) config.timestepSpacing = c.str('timestep_spacing', ['leading', 'linspace', 'trailing'] as const);
  if (c.has('set_alpha_to_one')) config.setAlphaToOne = c.bool('set_alpha_to_one', false);
  if (c.has('skip_prk_steps')) config.skipPrkSteps = c.bool('skip_prk_steps', true);
  if (c.has('clip_sample')) config.clipSample = c.bool('clip_sample', false);
  if (c.has('trained_betas')) throw new Error(`${c.where('trained_betas')}: explicit betas are not supported (use beta_start, beta_end and beta_schedule)`);
  for (const key of ['rescale_betas_zero_snr', 'thresholding']) {
    if (c.bool(key, false)) throw new Error(`${c.where(key)} true is not supported`);
  }
  if (config.betaEnd < config.betaStart || config.betaEnd >= 1) throw new Error(`${c.where('beta_end')} must be in [beta_start, 1), got ${config.betaEnd}`);
  return config;
}

/**
 * torch.linspace(start, end, n, dtype=float32) on the CPU: the ends rounded to f32, an f32 step, and runs
 * of 8 (ATen's vectorised arange: base + f32(k * step)) whose base is start + step * i for a run starting
 * in the first half, end - step * (n - i - 1) in the second, each a fused multiply-add as the compiler
 * contracts it; the remainder elementwise from their own bases.
 */
function torchLinspaceF32(start: number, end: number, n: number): Float32Array {
  const [s, e] = [f(start), f(end)];
  const step = n > 1 ? f(f(e - s) / (n - 1)) : 0;
  const halfway = Math.floor(n / 2);
  const base = (i: number) => (i < halfway ? fmaF32(step, i, s) : fmaF32(-step, n - i - 1, e));
  const out = new Float32Array(n);
  const vectorEnd = n - (n % 8);
  for (let i = 0; i < vectorEnd; i += 8) {
    const b = base(i);
    for (let k = 0; k < 8; k++) out[i + k] = f(b + f(k * step));
  }
  for (let i = vectorEnd; i < n; i++) out[i] = base(i);
  return out;
}

/**
 * a * b + c rounded once to f32 (a, b, c f32 values). The product is exact in f64; the f64 sum's own
 * rounding error decides the f32 rounding where the sum falls exactly halfway between two f32 values.
 */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const sum = p + c;
  const bb = sum - p;
  const err = p - (sum - bb) + (c - bb);
  const r = f(sum);
  if (err === 0 || r === sum) return r;
  const other = nextF32(r, sum > r ? 1 : -1);
  if ((r + other) / 2 !== sum) return r;
  return (err > 0) === (other > r) ? other : r;
}

/** The f32 value next to r, up (dir 1) or down (dir -1). */
function nextF32(r: number, dir: 1 | -1): number {
  const bits = new Float32Array([r]);
  const int = new Int32Array(bits.buffer);
  if (r === 0) return dir * 2 ** -149;
  int[0]! += (r > 0) === (dir > 0) ? 1 : -1;
  return bits[0]!;
}

/** diffusers' alphas_cumprod: betas in f32, alphas = 1 - betas, and torch's CPU cumprod (a float64 running product, each entry rounded to f32). */
export function alphasCumprod(config: SchedulerConfig): Float32Array {
  const n = config.numTrainTimesteps;
  const betas = config.betaSchedule === 'linear'
    ? torchLinspaceF32(config.betaStart, config.betaEnd, n)
    : torchLinspaceF32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n).map((b) => f(b * b));
  const out = new Float32Array(n);
  let product = 1;
  for (let i = 0; i < n; i++) {
    product *= f(1 - betas[i]!);
    out[i] = product;
  }
  return out;
}


/**
 * set_timesteps' spacing, ascending, before each class reverses it: 'leading' = round(i * (T // n)) +
 * steps_offset; 'linspace' = linspace(0, T - 1, n) in float64, rounded (half to even) unless
 * `integer` is false (Euler-ancestral keeps the fractions, as float32); 'trailing' = round(arange(T, 0,
 * -T / n)) - 1.
 */
export function spacedTimesteps(config: SchedulerConfig, spacing: TimestepSpacing, steps: number, integer: boolean): number[] {
  const T = config.numTrainTimesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new RangeError(`scheduler: steps must be an integer in [1, num_train_timesteps ${T}], got ${steps}`);
  switch (spacing) {
    case 'leading': {
      const ratio = Math.floor(T / steps);
      return Array.from({ length: steps }, (_, i) => i * ratio + config.stepsOffset);
    }
    case 'linspace': {
      // numpy.linspace: i * step + start in float64, the last set to stop.
      const step = steps > 1 ? (T - 1) / (steps - 1) : 0;
      const values = Array.from({ length: steps }, (_, i) => (i === steps - 1 && steps > 1 ? T - 1 : i * step));
      return values.map(integer ? roundHalfEven : f);
    }
    case 'trailing': {
      // numpy.arange(T, 0, -r): ceil(T / r) values T + i * delta, delta taken back from the first two.
      const r = T / steps;
      const count = Math.ceil(-T / -r);
      const delta = T + -r - T;
      return Array.from({ length: count }, (_, i) => roundHalfEven(T + i * delta) - 1).reverse();
    }
  }
}

/**
 * One generation's scheduler. The U-Net is called once per entry of `timesteps`; call i passes its
 * output to step(..., i, ...) with the sample it was given. An instance serves one generation: PNDM
 * keeps the past model outputs (and its steps must come in order); make a new one for the next.
 */
export interface Scheduler {
  /** What the U-Net is given per call (PNDM repeats its second timestep; Euler-ancestral's are fractional). */
  readonly timesteps: Float32Array;
  /** The initial latents are N(0, 1) times this. */
  readonly initNoiseSigma: number;
  /** The U-Net's input at call `index`, a tensor the caller owns (for PNDM and DDIM a view of `sample`: the identity). */
  scaleModelInput(sample: Tensor, index: number): Tensor;
  /** The sample for the next call: a new f32 tensor. `noise` is Euler-ancestral's N(0, 1) draw, ignored by the others. */
  step(modelOutput: Tensor, index: number, sample: Tensor, noise?: Tensor): Tensor;
  /** Frees the state the scheduler holds on the GPU. */
  dispose(): void;
}

export type SchedulerKind = 'pndm' | 'euler_ancestral' | 'ddim';

export interface SchedulerOptions {
  /**
   * Euler-ancestral, where step() is given no noise: uniform draws in [0, 1) (e.g. SeededRandom.next,
   * src/engine/random.ts) turned into N(0, 1) values by Box-Muller, filled in row-major order.
   */
  random?: () => number;
}

/** Checks a step's tensors and call index; names the scheduler. */
export function checkStep(name: string, calls: number, index: number, modelOutput: Tensor, sample: Tensor, noise?: Tensor): void {
  if (!Number.isInteger(index) || index < 0 || index >= calls) throw new RangeError(`${name}: call index ${index} is outside [0, ${calls})`);
  for (const [what, t] of [['model output', modelOutput], ['noise', noise]] as const) {
    if (t && t.shape.join() !== sample.shape.join()) throw new RangeError(`${name}: ${what} [${t.shape.join(', ')}] and sample [${sample.shape.join(', ')}] differ in shape`);
  }
}

/**
 * sum_i weight_i * x_i over tensors of one shape, as a new f32 tensor: one scaling per weighted term and
 * one add per term after the first (weights of 0 are skipped, weights of 1 after the first not scaled).
 */
export function weightedSum(terms: readonly (readonly [number, Tensor])[]): Tensor {
  const used = terms.filter(([w], i) => w !== 0 || i === 0);
  const engine = used[0]![1].engine;
  return engine.scope(() => {
    let acc = unary(used[0]![1], 'none', { alpha: used[0]![0], dtype: 'f32' });
    for (const [w, x] of used.slice(1)) acc = add(acc, w === 1 && x.dtype === 'f32' ? x : unary(x, 'none', { alpha: w, dtype: 'f32' }));
    return acc;
  });
}
