/**
 * Multi-head attention as PyTorch and Hugging Face name it: separate q/k/v projections
 * (`q_proj`, `k_proj`, `v_proj`, `out_proj`: CLIP, Grounding DINO) or torch.nn.MultiheadAttention's
 * packed `in_proj_weight` / `in_proj_bias` with `out_proj`. Inputs are [..., L, d] (any leading
 * batch dimensions, or none); the fused attention kernel reads them head-interleaved ('blhd'),
 * so no transposes are made.
 */
import type { Tensor } from '../engine/tensor.js';
import { attention } from '../ops/attention.js';
import { Linear } from './linear.js';
import type { Params } from './params.js';

export interface AttendOptions {
  /** Added to the output projection, in its dispatch: the transformer's skip connection. */
  residual?: Tensor;
  /** Additive terms on the scaled scores, broadcast as the attention op documents ([B, H, Lq, Lk] or smaller). */
  bias?: Tensor;
  causal?: boolean;
  /** Where the values come from when they differ from the keys' source ([..., S, d]): torch's MultiheadAttention(query, key, value). */
  value?: Tensor;
}

export interface SplitNames {
  q: string;
  k: string;
  v: string;
  out: string;
}

const HF_NAMES: SplitNames = { q: 'q_proj', k: 'k_proj', v: 'v_proj', out: 'out_proj' };

export class MultiheadAttention {
  private constructor(
    readonly dim: number,
    readonly heads: number,
    /** Separate projections, or one packed [3d, d] projection whose row blocks are q, k, v. */
    private readonly proj: { q: Linear; k: Linear; v: Linear } | { packed: Linear },
    readonly out: Linear,
  ) {}

  /**
   * q/k/v/out projections under their own names (Hugging Face). `kdim`: width of keys/values' source,
   * default `dim`; `outBias`: the output projection's bias when it differs from q/k/v's (diffusers: none on q/k/v, one on to_out.0).
   */
  static split(p: Params, dim: number, heads: number, options: { names?: SplitNames; bias?: boolean; outBias?: boolean; kdim?: number } = {}): MultiheadAttention {
    checkHeads(p, dim, heads);
    const n = options.names ?? HF_NAMES;
    const bias = options.bias ?? true;
    const kdim = options.kdim ?? dim;
    return new MultiheadAttention(
      dim,
      heads,
      { q: p.linear(n.q, dim, dim, { bias }), k: p.linear(n.k, kdim, dim, { bias }), v: p.linear(n.v, kdim, dim, { bias }) },
      p.linear(n.out, dim, dim, { bias: options.outBias ?? bias }),
    );
  }

  /** torch.nn.MultiheadAttention: `in_proj_weight` [3d, d], `in_proj_bias` [3d], `out_proj`. */
  static packed(p: Params, dim: number, heads: number): MultiheadAttention {
    checkHeads(p, dim, heads);
    const packed = new Linear(p.tensor('in_proj_weight', [3 * dim, dim]), p.tensor('in_proj_bias', [3 * dim]));
    return new MultiheadAttention(dim, heads, { packed }, p.linear('out_proj', dim, dim));
  }

  get headDim(): number {
    return this.dim / this.heads;
  }

  /** query [..., L, d] attends to source [..., S, d] (default: itself) -> [..., L, d]. Call inside a scope. */
  forward(query: Tensor, source: Tensor = query, options: AttendOptions = {}): Tensor {
    const [q, k, v] = this.project(query, source, options.value ?? source);
    const split = (t: Tensor) => t.reshape([-1, t.shape[t.rank - 2]!, this.heads, this.headDim]);
    const o = attention(split(q), split(k), split(v), { layout: 'blhd', bias: options.bias, causal: options.causal }).reshape(query.shape);
    return this.out.forward(o, { residual: options.residual });
  }

  private project(query: Tensor, source: Tensor, value: Tensor): [Tensor, Tensor, Tensor] {
    const proj = this.proj;
    if ('packed' in proj) {
      // Row views of the packed projection (freed with the caller's scope).
      const d = this.dim;
      const part = (x: Tensor, i: number) => proj.packed.rows(i * d, (i + 1) * d).forward(x);
      return [part(query, 0), part(source, 1), part(value, 2)];
    }
    const { q, k, v } = proj;
    return [q.forward(query), k.forward(source), v.forward(value)];
  }
}

function checkHeads(p: Params, dim: number, heads: number): void {
  if (!Number.isInteger(heads) || heads <= 0 || dim % heads) throw new RangeError(`${p.prefix}: width ${dim} is not divisible by ${heads} heads`);
}
