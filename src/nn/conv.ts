/** torch.nn.Conv2d on [B, C, H, W], with the bias and an optional activation fused. */
import type { DType } from '../engine/dtype.js';
import type { Tensor } from '../engine/tensor.js';
import type { Activation } from '../ops/index.js';
import { conv2d, type Pair } from '../ops/conv.js';

export interface Conv2dSettings {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  act?: Activation;
}

export class Conv2d {
  constructor(
    /** [out, in / groups, kh, kw] */
    readonly weight: Tensor,
    readonly bias: Tensor | undefined,
    readonly settings: Conv2dSettings = {},
  ) {}

  /** `upsample`: nearest upsampling of x by an integer factor first, in the same kernel (diffusers' Upsample2D). */
  forward(x: Tensor, options: { upsample?: number; dtype?: DType } = {}): Tensor {
    return conv2d(x, this.weight, { ...this.settings, bias: this.bias, upsample: options.upsample, dtype: options.dtype });
  }
}
