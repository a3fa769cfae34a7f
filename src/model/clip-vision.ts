/**
 * CLIP's vision transformer (Hugging Face CLIPVisionModel, the names under vis_encoder.vision_model.):
 * 14x14 patches -> tokens, a class token, learned positions, pre-layernorm, then pre-LN encoder
 * layers with quick_gelu MLPs. VisionLLM v2 takes the hidden state of the second-to-last layer
 * without the class token, so only the layers up to the requested one are run.
 */
import type { Tensor } from '../engine/tensor.js';
import { attention } from '../ops/attention.js';
import { conv2d } from '../ops/conv.js';
import { broadcastTo, concat, slice, transpose } from '../ops/copy.js';
import { add } from '../ops/elementwise.js';
import { linear, linearResidual } from '../ops/matmul.js';
import { layerNorm } from '../ops/rows.js';
import type { ClipVisionConfig } from './config.js';
import type { Weights } from './weights.js';

interface ClipLayer {
  norm1: [Tensor, Tensor];
  q: [Tensor, Tensor];
  k: [Tensor, Tensor];
  v: [Tensor, Tensor];
  out: [Tensor, Tensor];
  norm2: [Tensor, Tensor];
  fc1: [Tensor, Tensor];
  fc2: [Tensor, Tensor];
}

export class ClipVisionTower {
  private constructor(
    readonly config: ClipVisionConfig,
    private readonly patchWeight: Tensor,
    private readonly classEmbedding: Tensor,
    private readonly positions: Tensor,
    private readonly preNorm: [Tensor, Tensor],
    private readonly layers: ClipLayer[],
  ) {}

  /** Patches per side and tokens per image (with the class token). */
  get grid(): number {
    return this.config.imageSize / this.config.patchSize;
  }

  static fromWeights(w: Weights, config: ClipVisionConfig, prefix = 'vis_encoder.vision_model.'): ClipVisionTower {
    const { hiddenSize: d, intermediateSize: ff, patchSize: p } = config;
    const tokens = (config.imageSize / p) ** 2 + 1;
    const pair = (name: string, rows: number, cols?: number): [Tensor, Tensor] => [
      w.get(`${prefix}${name}.weight`, cols === undefined ? [rows] : [rows, cols]),
      w.get(`${prefix}${name}.bias`, [rows]),
    ];
    const layers: ClipLayer[] = [];
    for (let i = 0; i < config.layers; i++) {
      const l = `encoder.layers.${i}.`;
      layers.push({
        norm1: pair(l + 'layer_norm1', d),
        q: pair(l + 'self_attn.q_proj', d, d),
        k: pair(l + 'self_attn.k_proj', d, d),
        v: pair(l + 'self_attn.v_proj', d, d),
        out: pair(l + 'self_attn.out_proj', d, d),
        norm2: pair(l + 'layer_norm2', d),
        fc1: pair(l + 'mlp.fc1', ff, d),
        fc2: pair(l + 'mlp.fc2', d, ff),
      });
    }
    return new ClipVisionTower(
      config,
      w.get(`${prefix}embeddings.patch_embedding.weight`, [d, 3, p, p]),
      w.get(`${prefix}embeddings.class_embedding`, [d]),
      w.get(`${prefix}embeddings.position_embedding.weight`, [tokens, d]),
      pair('pre_layrnorm', d),
      layers,
    );
  }

  /**
   * Hidden state `layer` of CLIPVisionModel(output_hidden_states=True) for pixels [n, 3, S, S]:
   * 0 is the embeddings after pre_layrnorm, i the output of encoder layer i, negative counts from
   * the end (-2: the second-to-last layer). The class token is dropped: [n, grid^2, hidden].
   */
  features(pixels: Tensor, layer: number): Tensor {
    const { layers, hiddenSize: d, imageSize, patchSize, layerNormEps: eps } = this.config;
    const depth = layer < 0 ? layers + 1 + layer : layer;
    if (!Number.isInteger(depth) || depth < 0 || depth > layers) throw new RangeError(`clip: hidden state ${layer} of ${layers + 1} does not exist`);
    if (pixels.rank !== 4 || pixels.shape[1] !== 3 || pixels.shape[2] !== imageSize || pixels.shape[3] !== imageSize) {
      throw new RangeError(`clip: pixels ${JSON.stringify(pixels.shape)} must be [n, 3, ${imageSize}, ${imageSize}]`);
    }
    const n = pixels.shape[0]!;
    const grid = this.grid;
    const engine = pixels.engine;
    return engine.scope(() => {
      // Patches as tokens: a stride-14 convolution, then channels last.
      const patches = transpose(conv2d(pixels, this.patchWeight, { stride: patchSize }).reshape([n, d, grid * grid]), 1, 2);
      const cls = broadcastTo(this.classEmbedding.reshape([1, 1, d]), [n, 1, d]);
      let x = add(concat([cls, patches], 1), this.positions);
      x = layerNorm(x, ...this.preNorm, eps);
      for (let i = 0; i < depth; i++) x = this.layer(this.layers[i]!, x);
      return slice(x, 1, 1, grid * grid + 1);
    });
  }

  private layer(l: ClipLayer, x: Tensor): Tensor {
    const { heads, hiddenSize: d, layerNormEps: eps, act } = this.config;
    const [n, tokens] = x.shape as [number, number, number];
    const h = layerNorm(x, ...l.norm1, eps);
    const split = (t: Tensor) => t.reshape([n, tokens, heads, d / heads]);
    const q = split(linear(h, ...l.q));
    const k = split(linear(h, ...l.k));
    const v = split(linear(h, ...l.v));
    const o = attention(q, k, v, { layout: 'blhd' }).reshape([n, tokens, d]);
    x = linearResidual(o, l.out[0], x, l.out[1]);
    const m = linear(layerNorm(x, ...l.norm2, eps), ...l.fc1, act);
    return linearResidual(m, l.fc2[0], x, l.fc2[1]);
  }
}
