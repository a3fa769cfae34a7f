/**
 * A stack of Linear layers with an activation between them (none after the last): Grounding DINO's
 * MLP (`layers.0` .. `layers.{n-1}`, ReLU) or a torch Sequential of Linear, act, Linear (`0`, `2`).
 */
import type { Tensor } from '../engine/tensor.js';
import type { Activation } from '../ops/index.js';
import { matmul } from '../ops/matmul.js';
import type { Linear } from './linear.js';
import type { Params } from './params.js';

export class Mlp {
  constructor(readonly layers: readonly Linear[]) {
    if (!layers.length) throw new RangeError('Mlp: no layers');
  }

  /**
   * `dims` = [in, hidden..., out]; layer i is named `name(i)`. The activation follows every layer
   * but the last.
   */
  static load(p: Params, dims: readonly number[], act: Activation, name: (i: number) => string): Mlp {
    const layers = dims.slice(1).map((out, i) => p.linear(name(i), dims[i]!, out, { act: i < dims.length - 2 ? act : undefined }));
    return new Mlp(layers);
  }

  /** Grounding DINO's MLP class: `layers.N`. */
  static gdino(p: Params, dims: readonly number[], act: Activation = 'relu'): Mlp {
    return Mlp.load(p.at('layers'), dims, act, String);
  }

  /** torch.nn.Sequential(Linear, act, Linear, ...): names 0, 2, 4, ... */
  static sequential(p: Params, dims: readonly number[], act: Activation): Mlp {
    return Mlp.load(p, dims, act, (i) => String(2 * i));
  }

  /**
   * [B, N, in] -> [B, out]: the MLP of each of the N rows, then their mean. The mean commutes with
   * the last (affine) layer, so it is taken before it: that layer projects B rows instead of B·N.
   */
  forwardMean(x: Tensor): Tensor {
    const [B, N, width] = x.shape as [number, number, number];
    if (x.rank !== 3) throw new RangeError(`Mlp.forwardMean: input ${JSON.stringify(x.shape)} must be [batch, rows, width]`);
    return x.engine.scope(() => {
      let h = x.reshape([B * N, width]);
      this.layers.slice(0, -1).forEach((layer) => (h = layer.forward(h)));
      // The mean as a product: [1, N] of 1/N times each batch's [N, hidden].
      const average = x.engine.tensor(new Float32Array(N).fill(1 / N), [1, N], 'f32');
      const mean = matmul(average, h.reshape([B, N, h.shape[1]!])).reshape([B, h.shape[1]!]);
      return this.layers[this.layers.length - 1]!.forward(mean);
    });
  }

  /** [..., in] -> [..., out]; `residual` is added by the last layer, in its dispatch. Call inside a scope. */
  forward(x: Tensor, options: { residual?: Tensor } = {}): Tensor {
    const last = this.layers.length - 1;
    this.layers.forEach((layer, i) => (x = layer.forward(x, i === last ? options : {})));
    return x;
  }
}
