/** A one-element tensor bound where a kernel's optional input is absent (an override flag keeps it unread). */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';

const placeholders = new WeakMap<Engine, Tensor>();

export function placeholder(engine: Engine): Tensor {
  let t = placeholders.get(engine);
  if (!t || t.isDisposed) {
    t = engine.tensor(new Float32Array(1), [1], 'f32', { persistent: true });
    placeholders.set(engine, t);
  }
  return t;
}
