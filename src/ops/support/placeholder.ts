/**
 * A tensor bound where a kernel's optional input is absent (an override flag keeps it unread).
 * Four f32 elements: enough for any binding's minimum size, array<x_t4> ones included.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';

export function placeholder(engine: Engine): Tensor {
  return engine.constant('placeholder f32x4', new Float32Array(4));
}
