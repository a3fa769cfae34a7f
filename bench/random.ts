/** Deterministic pseudo-random tensors for benchmarks (a linear congruential generator: fast, reproducible). */
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';

export interface RandomOptions {
  /** Values are uniform in [-scale, scale) (default 1). */
  scale?: number;
  /** Stored dtype; f16 is rounded from the f32 values on the host (default f32). */
  dtype?: DType;
  /** Exact-size buffer outside scopes, as weights get. */
  persistent?: boolean;
}

export function randomTensor(engine: Engine, shape: readonly number[], seed: number, options: RandomOptions = {}): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const scale = options.scale ?? 1;
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return engine.tensor(data, shape, options.dtype ?? 'f32', { persistent: options.persistent });
}
