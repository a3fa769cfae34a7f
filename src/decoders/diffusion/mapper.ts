/**
 * torch.nn.Transformer with norm_first=True and batch_first=True, as VisionLLM v2's llm2sd_mapper
 * uses it: encoder layers x = x + SA(LN1 x); x = x + FF(LN2 x), then the encoder's final LayerNorm;
 * decoder layers y = y + SA(LN1 y); y = y + MHA(LN2 y, memory); y = y + FF(LN3 y), then the decoder's
 * final LayerNorm. FF is linear2(relu(linear1)); torch's default of 8 heads. No masks, no dropout.
 * Names: <prefix>.encoder.layers.N.{self_attn.in_proj_weight, ..., linear1, norm1}, <prefix>.encoder.norm, ...
 */
import type { Tensor } from '../../engine/tensor.js';
import { MultiheadAttention } from '../../nn/attention.js';
import { Mlp } from '../../nn/mlp.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';

export interface MapperConfig {
  dModel: number;
  heads: number;
  feedForward: number;
  encoderLayers: number;
  decoderLayers: number;
}

interface EncoderLayer {
  selfAttn: MultiheadAttention;
  norm1: LayerNorm;
  norm2: LayerNorm;
  /** linear1, ReLU, linear2. */
  ff: Mlp;
}

interface DecoderLayer extends EncoderLayer {
  multiheadAttn: MultiheadAttention;
  norm3: LayerNorm;
}

const EPS = 1e-5;

export class TransformerMapper {
  private constructor(
    private readonly encoder: EncoderLayer[],
    private readonly encoderNorm: LayerNorm,
    private readonly decoder: DecoderLayer[],
    private readonly decoderNorm: LayerNorm,
  ) {}

  static load(p: Params, c: MapperConfig): TransformerMapper {
    const d = c.dModel;
    const layer = (l: Params): EncoderLayer => ({
      selfAttn: MultiheadAttention.packed(l.at('self_attn'), d, c.heads),
      norm1: l.layerNorm('norm1', d, EPS),
      norm2: l.layerNorm('norm2', d, EPS),
      ff: Mlp.load(l, [d, c.feedForward, d], 'relu', (i) => `linear${i + 1}`),
    });
    const encoder = Array.from({ length: c.encoderLayers }, (_, i) => layer(p.at('encoder.layers', i)));
    const decoder = Array.from({ length: c.decoderLayers }, (_, i): DecoderLayer => {
      const l = p.at('decoder.layers', i);
      return { ...layer(l), multiheadAttn: MultiheadAttention.packed(l.at('multihead_attn'), d, c.heads), norm3: l.layerNorm('norm3', d, EPS) };
    });
    return new TransformerMapper(encoder, p.layerNorm('encoder.norm', d, EPS), decoder, p.layerNorm('decoder.norm', d, EPS));
  }

  /** src [S, d] (the encoder's input), tgt [T, d] (the decoder's queries) -> [T, d]. */
  forward(src: Tensor, tgt: Tensor): Tensor {
    return src.engine.scope(() => {
      let memory = src;
      for (const l of this.encoder) {
        const h = l.norm1.forward(memory);
        memory = l.selfAttn.forward(h, h, { residual: memory });
        memory = l.ff.forward(l.norm2.forward(memory), { residual: memory });
      }
      memory = this.encoderNorm.forward(memory);
      let y = tgt;
      for (const l of this.decoder) {
        const h = l.norm1.forward(y);
        y = l.selfAttn.forward(h, h, { residual: y });
        y = l.multiheadAttn.forward(l.norm2.forward(y), memory, { residual: y });
        y = l.ff.forward(l.norm3.forward(y), { residual: y });
      }
      return this.decoderNorm.forward(y);
    });
  }
}
