/**
 * Closed-form test inputs, reproduced bit for bit by scripts/golden/attention.py (hash_u32, hashed):
 * large inputs are generated on both sides instead of being stored in golden files.
 */
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';

/** lowbias32 of (index * golden ratio + seed). */
export function hashU32(index: number, seed: number): number {
  let x = (Math.imul(index, 0x9e3779b1) + seed) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** ((h & 1023) - 512) / 512 * amp: multiples of amp/512 in [-amp, amp), exact in f16 for amp <= 2. */
export function hashed(shape: readonly number[], seed: number, amp = 1): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (((hashU32(i, seed) & 1023) - 512) / 512) * amp;
  return out;
}

/** Uploads host values as f32 or f16 (exact for hashed values). */
export function upload(engine: Engine, data: Float32Array, shape: readonly number[], dtype: DType): Tensor {
  return engine.tensor(data, shape, dtype);
}

/** Rows `rows` of a [B, H, L, D] array (row-major), as the golden files store sampled outputs. */
export function pickRows(data: ArrayLike<number>, [B, H, L, D]: readonly number[], rows: readonly number[]): Float32Array {
  const out = new Float32Array(B! * H! * rows.length * D!);
  let at = 0;
  for (let bh = 0; bh < B! * H!; bh++) {
    for (const r of rows) {
      for (let d = 0; d < D!; d++) out[at++] = data[(bh * L! + r) * D! + d]!;
    }
  }
  return out;
}

/** [B, H, L, D] -> [B, L, H, D] on the host (token-major inputs for layout 'blhd'). */
export function toTokenMajor(data: ArrayLike<number>, [B, H, L, D]: readonly number[]): Float32Array {
  const out = new Float32Array(B! * H! * L! * D!);
  for (let b = 0; b < B!; b++)
    for (let h = 0; h < H!; h++)
      for (let l = 0; l < L!; l++)
        for (let d = 0; d < D!; d++) out[((b * L! + l) * H! + h) * D! + d] = data[((b * H! + h) * L! + l) * D! + d]!;
  return out;
}

/** [B, L, H, D] -> [B, H, L, D]. */
export function toHeadMajor(data: ArrayLike<number>, [B, L, H, D]: readonly number[]): Float32Array {
  const out = new Float32Array(B! * H! * L! * D!);
  for (let b = 0; b < B!; b++)
    for (let l = 0; l < L!; l++)
      for (let h = 0; h < H!; h++)
        for (let d = 0; d < D!; d++) out[((b * H! + h) * L! + l) * D! + d] = data[((b * L! + l) * H! + h) * D! + d]!;
  return out;
}
