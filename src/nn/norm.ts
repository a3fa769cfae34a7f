/**
 * Normalisation modules: LayerNorm and RMSNorm over the last dimension; GroupNorm and LayerNorm2d
 * (every pixel's channels) over [B, C, H, W].
 */
import type { DType } from '../engine/dtype.js';
import type { Tensor } from '../engine/tensor.js';
import type { Activation } from '../ops/index.js';
import { groupNorm, layerNorm2d } from '../ops/norm2d.js';
import { layerNorm, rmsNorm } from '../ops/rows.js';

export class LayerNorm {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor,
    readonly eps: number,
  ) {}

  forward(x: Tensor, dtype?: DType): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps, dtype);
  }
}

export class RMSNorm {
  constructor(
    readonly weight: Tensor,
    readonly eps: number,
  ) {}

  forward(x: Tensor, dtype?: DType): Tensor {
    return rmsNorm(x, this.weight, this.eps, dtype);
  }
}

export class GroupNorm {
  constructor(
    readonly groups: number,
    readonly weight: Tensor,
    readonly bias: Tensor,
    readonly eps: number,
    readonly act?: Activation,
  ) {}

  forward(x: Tensor, dtype?: DType): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, { eps: this.eps, act: this.act, dtype });
  }
}

/** LayerNorm over the channels at every pixel of [B, C, H, W] (SAM's and the region encoder's LayerNorm2d), optionally with a fused activation. */
export class LayerNorm2d {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor,
    readonly eps: number,
    readonly act?: Activation,
  ) {}

  forward(x: Tensor, dtype?: DType): Tensor {
    return layerNorm2d(x, this.weight, this.bias, { eps: this.eps, act: this.act, dtype });
  }
}
