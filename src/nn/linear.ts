/** torch.nn.Linear: y = x·Wᵀ + b, with an optional fused activation, or added onto a residual stream. */
import type { DType } from '../engine/dtype.js';
import type { Tensor } from '../engine/tensor.js';
import type { Activation } from '../ops/index.js';
import { matmul } from '../ops/matmul.js';

export class Linear {
  constructor(
    /** [out, in], PyTorch's layout. */
    readonly weight: Tensor,
    readonly bias?: Tensor,
    readonly act?: Activation,
  ) {}

  /** [..., in] -> [..., out]; `residual` (shaped like the output) is added after the activation, in the same dispatch. */
  forward(x: Tensor, options: { residual?: Tensor; dtype?: DType } = {}): Tensor {
    return matmul(x, this.weight, { transposeB: true, bias: this.bias, act: this.act, residual: options.residual, dtype: options.dtype });
  }

  /** Output rows r0..r1 of this layer (a view into the weight, e.g. one of a packed q|k|v projection). */
  rows(r0: number, r1: number): Linear {
    return new Linear(this.weight.rows(r0, r1), this.bias?.rows(r0, r1), this.act);
  }
}
