/**
 * The U-Net's building blocks, as diffusers 0.28.2 builds Stable Diffusion's (decoders.md C.2):
 *
 *   ResnetBlock2D      h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb)); h = conv2(silu(norm2(h)));
 *                      x' = shortcut(x) + h   (shortcut: conv_shortcut 1×1 when the width changes)
 *   Transformer2D      (Transformer2DModel, use_linear_projection false) h = proj_in(norm(x)) as tokens;
 *                      per block: h += attn1(norm1 h); h += attn2(norm2 h, condition); h += ff(norm3 h);
 *                      x' = proj_out(h) + x. GroupNorm eps 1e-6; ff is GEGLU: a · gelu(g) of the halves
 *                      (a, g) of ff.net.0.proj, then ff.net.2
 *   Downsample2D       conv 3×3 stride 2 padding 1
 *   Upsample2D         nearest ×2 (or to the skip's size when the input was odd) then conv 3×3
 *
 * Attention: heads = diffusers' `attention_head_dim` (its quirk: SD-1.5's 8 is the head count), no bias
 * on to_q/to_k/to_v, a bias on to_out.0.
 */
import type { Tensor } from '../../engine/tensor.js';
import { MultiheadAttention } from '../../nn/attention.js';
import type { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import type { GroupNorm, LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { transpose } from '../../ops/copy.js';
import { add, mul } from '../../ops/elementwise.js';
import { resize } from '../../ops/resize.js';

/** What every block of one U-Net shares: GroupNorm's groups and eps, and the time embedding's width. */
export interface BlockSettings {
  groups: number;
  eps: number;
  /** Width of the time embedding each resnet projects (4 × block_out_channels[0]). */
  timeDim: number;
  /** Width of the condition the cross-attention reads. */
  crossDim: number;
}

/** diffusers' ResnetBlock2D, with a time embedding (the U-Net's) or without (the VAE's: `timeDim` undefined). */
export class ResnetBlock2D {
  private constructor(
    readonly norm1: GroupNorm,
    readonly conv1: Conv2d,
    readonly timeProj: Linear | undefined,
    readonly norm2: GroupNorm,
    readonly conv2: Conv2d,
    readonly shortcut?: Conv2d,
  ) {}

  static load(p: Params, inChannels: number, outChannels: number, s: Pick<BlockSettings, 'groups' | 'eps'> & { timeDim?: number }): ResnetBlock2D {
    return new ResnetBlock2D(
      p.groupNorm('norm1', s.groups, inChannels, { eps: s.eps, act: 'silu' }),
      p.conv2d('conv1', inChannels, outChannels, 3, { padding: 1 }),
      s.timeDim === undefined ? undefined : p.linear('time_emb_proj', s.timeDim, outChannels),
      p.groupNorm('norm2', s.groups, outChannels, { eps: s.eps, act: 'silu' }),
      p.conv2d('conv2', outChannels, outChannels, 3, { padding: 1 }),
      inChannels === outChannels ? undefined : p.conv2d('conv_shortcut', inChannels, outChannels, 1),
    );
  }

  /** x [B, C, H, W]; siluTemb = silu(temb) [B, timeDim] when the block has a time embedding. Call inside a scope. */
  forward(x: Tensor, siluTemb?: Tensor): Tensor {
    const [B] = x.shape as [number];
    let h = this.conv1.forward(this.norm1.forward(x), { dtype: 'f32' });
    if (this.timeProj) {
      if (!siluTemb) throw new Error('ResnetBlock2D: this block adds a time embedding; none was given');
      const t = this.timeProj.forward(siluTemb);
      h = add(h, t.reshape([B, t.shape[1]!, 1, 1]), { dtype: 'f32' });
    }
    h = this.conv2.forward(this.norm2.forward(h), { dtype: 'f32' });
    return add(this.shortcut ? this.shortcut.forward(x, { dtype: 'f32' }) : x, h, { dtype: 'f32' });
  }
}

/** BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward, each pre-norm with a residual. */
class TransformerBlock {
  constructor(
    readonly norm1: LayerNorm,
    readonly attn1: MultiheadAttention,
    readonly norm2: LayerNorm,
    readonly attn2: MultiheadAttention,
    readonly norm3: LayerNorm,
    /** The two halves of ff.net.0.proj: the value, and the gate (GELU fused). */
    readonly ffValue: Linear,
    readonly ffGate: Linear,
    readonly ffOut: Linear,
  ) {}

  static load(p: Params, C: number, heads: number, s: BlockSettings): TransformerBlock {
    const names = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };
    const proj = p.linear('ff.net.0.proj', C, 8 * C);
    return new TransformerBlock(
      p.layerNorm('norm1', C, 1e-5),
      MultiheadAttention.split(p.at('attn1'), C, heads, { names, bias: false, outBias: true }),
      p.layerNorm('norm2', C, 1e-5),
      MultiheadAttention.split(p.at('attn2'), C, heads, { names, bias: false, outBias: true, kdim: s.crossDim }),
      p.layerNorm('norm3', C, 1e-5),
      proj.rows(0, 4 * C),
      new Linear(proj.weight.rows(4 * C, 8 * C), proj.bias?.rows(4 * C, 8 * C), 'gelu'),
      p.linear('ff.net.2', 4 * C, C),
    );
  }

  /** h [B, L, C], condition [B, S, crossDim]. */
  forward(h: Tensor, condition: Tensor): Tensor {
    let n = this.norm1.forward(h);
    h = this.attn1.forward(n, n, { residual: h });
    h = this.attn2.forward(this.norm2.forward(h), condition, { residual: h });
    n = this.norm3.forward(h);
    return this.ffOut.forward(mul(this.ffValue.forward(n), this.ffGate.forward(n)), { residual: h });
  }

  /** The views of ff.net.0.proj's halves hold its storage: freed with the block. */
  dispose(): void {
    [this.ffValue, this.ffGate].forEach((l) => [l.weight, l.bias].forEach((t) => t?.dispose()));
  }
}

export class Transformer2D {
  private constructor(
    readonly norm: GroupNorm,
    readonly projIn: Conv2d,
    readonly blocks: readonly TransformerBlock[],
    readonly projOut: Conv2d,
  ) {}

  static load(p: Params, C: number, heads: number, s: BlockSettings): Transformer2D {
    return new Transformer2D(
      p.groupNorm('norm', s.groups, C, { eps: 1e-6 }),
      p.conv2d('proj_in', C, C, 1),
      [TransformerBlock.load(p.at('transformer_blocks.0'), C, heads, s)],
      p.conv2d('proj_out', C, C, 1),
    );
  }

  /** x [B, C, H, W], condition [B, S, crossDim]. Call inside a scope. */
  forward(x: Tensor, condition: Tensor): Tensor {
    const [B, C, H, W] = x.shape as [number, number, number, number];
    let h = transpose(this.projIn.forward(this.norm.forward(x), { dtype: 'f32' }).reshape([B, C, H * W]));
    for (const block of this.blocks) h = block.forward(h, condition);
    const map = transpose(h).reshape([B, C, H, W]);
    return add(this.projOut.forward(map, { dtype: 'f32' }), x, { dtype: 'f32' });
  }

  dispose(): void {
    this.blocks.forEach((b) => b.dispose());
  }
}

/** Upsample2D: nearest ×2 fused into the convolution, or to `size` (an odd skip's) first. */
export function upsample(conv: Conv2d, x: Tensor, size?: readonly [number, number]): Tensor {
  const [H, W] = x.shape.slice(2) as [number, number];
  if (!size || (size[0] === 2 * H && size[1] === 2 * W)) return conv.forward(x, { upsample: 2, dtype: 'f32' });
  return conv.forward(resize(x, size, { mode: 'nearest' }), { dtype: 'f32' });
}
