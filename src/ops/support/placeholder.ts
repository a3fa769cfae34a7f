/**
 * A tensor bound where a kernel's optional input is absent (an override flag keeps it unread).
 * Four f32 elements: enough for any binding's minimum size, array<x_t4> ones included.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';

const placeholders = new WeakMap<Engine, Tensor>();

export function placeholder(engine: Engine): Tensor {
  let t = placeholders.get(engine);
  if (!t || t.isDisposed) {
    t = engine.tensor(new Float32Array(4), [4], 'f32', { persistent: true });
    placeholders.set(engine, t);
  }
  return t;
}
