/**
 * torch.nn.Transformer with norm_first=True and batch_first=True, as VisionLLM v2's llm2sd_mapper
 * uses it: encoder layers x = x + SA(LN1 x); x = x + FF(LN2 x), then the encoder's final LayerNorm;
 * decoder layers y = y + SA(LN1 y); y = y + MHA(LN2 y, memory); y = y + FF(LN3 y), then the decoder's
 * final LayerNorm. FF is linear2(relu(linear1)); attention heads default to 8. No masks, no dropout.
 * Names: <prefix>.encoder.layers.N.{self_attn.in_proj_weight, ..., linear1, norm1}, <prefix>.encoder.norm, ...
 */
import type { Tensor } from '../engine/tensor.js';
import { attention } from '../ops/attention.js';
import { linear, linearResidual } from '../ops/matmul.js';
import { layerNorm } from '../ops/rows.js';
import type { Weights } from '../model/weights.js';

type Affine = [Tensor, Tensor];

interface Attention {
  /** in_proj: q, k and v rows packed, [3d, d] and [3d]. */
  inProj: Affine;
  out: Affine;
}

interface EncoderLayer {
  selfAttn: Attention;
  norm1: Affine;
  norm2: Affine;
  linear1: Affine;
  linear2: Affine;
}

interface DecoderLayer extends EncoderLayer {
  crossAttn: Attention;
  norm3: Affine;
}

const EPS = 1e-5;

export class TransformerMapper {
  private constructor(
    readonly dModel: number,
    readonly heads: number,
    private readonly encoder: EncoderLayer[],
    private readonly encoderNorm: Affine,
    private readonly decoder: DecoderLayer[],
    private readonly decoderNorm: Affine,
  ) {}

  static fromWeights(w: Weights, prefix: string, options: { dModel: number; heads?: number; feedForward?: number; encoderLayers?: number; decoderLayers?: number }): TransformerMapper {
    const d = options.dModel;
    const heads = options.heads ?? 8;
    const ff = options.feedForward ?? 4 * d;
    if (d % heads) throw new Error(`${prefix}: d_model ${d} is not divisible by ${heads} heads`);
    const affine = (name: string, rows: number, cols?: number): Affine => [
      w.get(`${name}.weight`, cols === undefined ? [rows] : [rows, cols]),
      w.get(`${name}.bias`, [rows]),
    ];
    const mha = (name: string): Attention => ({
      inProj: [w.get(`${name}.in_proj_weight`, [3 * d, d]), w.get(`${name}.in_proj_bias`, [3 * d])],
      out: affine(`${name}.out_proj`, d, d),
    });
    const layer = (name: string): EncoderLayer => ({
      selfAttn: mha(`${name}.self_attn`),
      norm1: affine(`${name}.norm1`, d),
      norm2: affine(`${name}.norm2`, d),
      linear1: affine(`${name}.linear1`, ff, d),
      linear2: affine(`${name}.linear2`, d, ff),
    });
    const encoder = Array.from({ length: options.encoderLayers ?? 1 }, (_, i) => layer(`${prefix}.encoder.layers.${i}`));
    const decoder = Array.from({ length: options.decoderLayers ?? 1 }, (_, i): DecoderLayer => {
      const name = `${prefix}.decoder.layers.${i}`;
      return { ...layer(name), crossAttn: mha(`${name}.multihead_attn`), norm3: affine(`${name}.norm3`, d) };
    });
    return new TransformerMapper(d, heads, encoder, affine(`${prefix}.encoder.norm`, d), decoder, affine(`${prefix}.decoder.norm`, d));
  }

  /** src [S, d] (the encoder's input), tgt [T, d] (the decoder's queries) -> [T, d]. */
  forward(src: Tensor, tgt: Tensor): Tensor {
    return src.engine.scope(() => {
      let memory = src;
      for (const l of this.encoder) {
        const h = layerNorm(memory, ...l.norm1, EPS);
        memory = this.attend(l.selfAttn, h, h, memory);
        memory = this.feedForward(l, layerNorm(memory, ...l.norm2, EPS), memory);
      }
      memory = layerNorm(memory, ...this.encoderNorm, EPS);
      let y = tgt;
      for (const l of this.decoder) {
        const h = layerNorm(y, ...l.norm1, EPS);
        y = this.attend(l.selfAttn, h, h, y);
        y = this.attend(l.crossAttn, layerNorm(y, ...l.norm2, EPS), memory, y);
        y = this.feedForward(l, layerNorm(y, ...l.norm3, EPS), y);
      }
      return layerNorm(y, ...this.decoderNorm, EPS);
    });
  }

  /** residual + MultiheadAttention(query, key = value = source). */
  private attend(a: Attention, query: Tensor, source: Tensor, residual: Tensor): Tensor {
    const [L, S, d] = [query.shape[0]!, source.shape[0]!, this.dModel];
    const hd = d / this.heads;
    // Row views of the packed in_proj (inside the caller's scope, which frees them).
    const part = (x: Tensor, i: number) => linear(x, a.inProj[0].rows(i * d, (i + 1) * d), a.inProj[1].rows(i * d, (i + 1) * d));
    const q = part(query, 0).reshape([1, L, this.heads, hd]);
    const k = part(source, 1).reshape([1, S, this.heads, hd]);
    const v = part(source, 2).reshape([1, S, this.heads, hd]);
    const o = attention(q, k, v, { layout: 'blhd' }).reshape([L, this.dModel]);
    return linearResidual(o, a.out[0], residual, a.out[1]);
  }

  private feedForward(l: EncoderLayer, h: Tensor, residual: Tensor): Tensor {
    return linearResidual(linear(h, ...l.linear1, 'relu'), l.linear2[0], residual, l.linear2[1]);
  }
}
