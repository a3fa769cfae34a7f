/**
 * One layer of CLIP's transformer encoder, the same in the vision and the text tower (Hugging Face
 * CLIPEncoderLayer, names `layer_norm1`, `self_attn.{q,k,v,out}_proj`, `layer_norm2`, `mlp.fc1`,
 * `mlp.fc2`): pre-LN, x = x + attn(ln1 x); x = x + fc2(act(fc1(ln2 x))). The text tower attends
 * causally; the vision tower does not.
 */
import type { Tensor } from '../engine/tensor.js';
import type { ConfigReader } from '../io/config-reader.js';
import { MultiheadAttention } from './attention.js';
import { Mlp } from './mlp.js';
import type { LayerNorm } from './norm.js';
import type { Params } from './params.js';

/** The sizes a CLIP config (vision or text) gives its encoder layers. */
export interface ClipLayerConfig {
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  layerNormEps: number;
  act: 'quick_gelu' | 'gelu';
}

/**
 * The encoder's keys of a CLIP config (CLIPVisionConfig and CLIPTextConfig alike), with the tower's
 * defaults. The layer count may be 0; sizes and head counts must be at least 1, and the width must
 * split into the heads.
 */
export function parseClipEncoderConfig(
  r: ConfigReader,
  defaults: { hiddenSize: number; intermediateSize: number; layers: number; heads: number },
): ClipLayerConfig & { layers: number } {
  const c = {
    hiddenSize: r.positive('hidden_size', defaults.hiddenSize),
    intermediateSize: r.positive('intermediate_size', defaults.intermediateSize),
    layers: r.int('num_hidden_layers', defaults.layers),
    heads: r.positive('num_attention_heads', defaults.heads),
    layerNormEps: r.positiveNumber('layer_norm_eps', 1e-5),
    act: r.str('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
  };
  if (c.hiddenSize % c.heads) throw new Error(`${r.where('hidden_size')} ${c.hiddenSize} is not divisible by num_attention_heads ${c.heads}`);
  return c;
}

export class ClipEncoderLayer {
  private constructor(
    private readonly layerNorm1: LayerNorm,
    private readonly selfAttn: MultiheadAttention,
    private readonly layerNorm2: LayerNorm,
    private readonly mlp: Mlp,
  ) {}

  static load(p: Params, c: ClipLayerConfig): ClipEncoderLayer {
    const d = c.hiddenSize;
    return new ClipEncoderLayer(
      p.layerNorm('layer_norm1', d, c.layerNormEps),
      MultiheadAttention.split(p.at('self_attn'), d, c.heads),
      p.layerNorm('layer_norm2', d, c.layerNormEps),
      Mlp.load(p.at('mlp'), [d, c.intermediateSize, d], c.act, (k) => `fc${k + 1}`),
    );
  }

  /** `count` layers of CLIPEncoder in scope `p` (`<tower>.encoder`): `layers.0` .. `layers.{count-1}`. */
  static stack(p: Params, count: number, c: ClipLayerConfig): ClipEncoderLayer[] {
    return Array.from({ length: count }, (_, i) => ClipEncoderLayer.load(p.at('layers', i), c));
  }

  /** [..., L, d] -> [..., L, d]; the residual adds ride in the output projections. Call inside a scope. */
  forward(x: Tensor, options: { causal?: boolean } = {}): Tensor {
    const h = this.layerNorm1.forward(x);
    x = this.selfAttn.forward(h, h, { residual: x, causal: options.causal });
    return this.mlp.forward(this.layerNorm2.forward(x), { residual: x });
  }
}
