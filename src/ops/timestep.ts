/**
 * Sinusoidal timestep embedding, diffusers' get_timestep_embedding:
 *   freq_j = exp(-ln(max_period) * j / (half - downscale_freq_shift)),  j < half = dim / 2
 *   emb    = [sin(scale * t * freq), cos(scale * t * freq)]  (halves swapped when flipSinToCos)
 * SD-1.5 uses flipSinToCos = true, downscaleFreqShift = 0.
 *
 * Computed on the host and uploaded: it is [batch, dim] per denoising step, and sin/cos of
 * arguments up to ~1000 radians are where GPU transcendental functions lose accuracy. The f32
 * products are rounded as PyTorch rounds them, the sines taken in double precision.
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';

export interface TimestepEmbeddingOptions {
  flipSinToCos?: boolean;
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
  dtype?: DType;
}

export function timestepEmbeddingValues(timesteps: ArrayLike<number>, dim: number, options: TimestepEmbeddingOptions = {}): Float32Array {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`timestepEmbedding: dim must be a positive integer, got ${dim}`);
  const half = Math.floor(dim / 2);
  const shift = options.downscaleFreqShift ?? 1;
  if (half - shift === 0) throw new RangeError(`timestepEmbedding: dim ${dim} with downscaleFreqShift ${shift} divides by zero`);
  const f = Math.fround;
  const logPeriod = f(-Math.log(options.maxPeriod ?? 10000));
  const freqs = Array.from({ length: half }, (_, j) => f(Math.exp(f(f(logPeriod * j) / f(half - shift)))));
  const scale = f(options.scale ?? 1);
  const out = new Float32Array(timesteps.length * dim);
  for (let b = 0; b < timesteps.length; b++) {
    const t = f(timesteps[b]!);
    if (!Number.isFinite(t)) throw new RangeError(`timestepEmbedding: timestep ${b} is ${timesteps[b]}`);
    const row = out.subarray(b * dim, (b + 1) * dim);
    for (let j = 0; j < half; j++) {
      const arg = f(scale * f(t * freqs[j]!));
      const [first, second] = options.flipSinToCos ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      row[j] = first;
      row[half + j] = second;
    }
    // An odd dim is zero-padded at the end, as diffusers does.
  }
  return out;
}

/** The embedding as a [timesteps.length, dim] tensor (f32 unless `dtype` says otherwise). */
export function timestepEmbedding(engine: Engine, timesteps: ArrayLike<number>, dim: number, options: TimestepEmbeddingOptions = {}): Tensor {
  return engine.tensor(timestepEmbeddingValues(timesteps, dim, options), [timesteps.length, dim], options.dtype ?? 'f32');
}
