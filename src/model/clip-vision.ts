/**
 * CLIP's vision transformer (Hugging Face CLIPVisionModel, the names under vis_encoder.vision_model.):
 * 14x14 patches -> tokens, a class token, learned positions, pre-layernorm, then pre-LN encoder
 * layers with quick_gelu MLPs. VisionLLM v2 takes the hidden state of the second-to-last layer
 * without the class token, so only the layers up to the requested one are run.
 */
import type { Tensor } from '../engine/tensor.js';
import { broadcastTo, concat, slice, transpose } from '../ops/copy.js';
import { add } from '../ops/elementwise.js';
import { ClipEncoderLayer } from '../nn/clip-layer.js';
import type { Conv2d } from '../nn/conv.js';
import type { LayerNorm } from '../nn/norm.js';
import type { Params } from '../nn/params.js';
import type { ClipVisionConfig } from './config.js';

export class ClipVisionTower {
  private constructor(
    readonly config: ClipVisionConfig,
    private readonly patchEmbedding: Conv2d,
    private readonly classEmbedding: Tensor,
    private readonly positions: Tensor,
    private readonly preNorm: LayerNorm,
    private readonly layers: ClipEncoderLayer[],
  ) {}

  /** Patches per side and tokens per image (with the class token). */
  get grid(): number {
    return this.config.imageSize / this.config.patchSize;
  }

  /** From CLIPVisionModel's names in scope `p` (VisionLLM v2: `vis_encoder.vision_model`). */
  static load(p: Params, config: ClipVisionConfig): ClipVisionTower {
    const { hiddenSize: d, patchSize, layerNormEps: eps } = config;
    const tokens = (config.imageSize / patchSize) ** 2 + 1;
    const embeddings = p.at('embeddings');
    const layers = ClipEncoderLayer.stack(p.at('encoder'), config.layers, config);
    return new ClipVisionTower(
      config,
      embeddings.conv2d('patch_embedding', 3, d, patchSize, { stride: patchSize, bias: false }),
      embeddings.tensor('class_embedding', [d]),
      embeddings.tensor('position_embedding.weight', [tokens, d]),
      p.layerNorm('pre_layrnorm', d, eps),
      layers,
    );
  }

  /**
   * Hidden state `layer` of CLIPVisionModel(output_hidden_states=True) for pixels [n, 3, S, S]:
   * 0 is the embeddings after pre_layrnorm, i the output of encoder layer i, negative counts from
   * the end (-2: the second-to-last layer). The class token is dropped: [n, grid^2, hidden].
   */
  features(pixels: Tensor, layer: number): Tensor {
    return this.hiddenStates(pixels, [layer])[0]!;
  }

  /** Several hidden states of one pass (the region encoder reads the last three), each as features() gives it. */
  hiddenStates(pixels: Tensor, layers: readonly number[]): Tensor[] {
    const { layers: count, hiddenSize: d, imageSize } = this.config;
    const depths = layers.map((layer) => {
      const depth = layer < 0 ? count + 1 + layer : layer;
      if (!Number.isInteger(depth) || depth < 0 || depth > count) throw new RangeError(`clip: hidden state ${layer} of ${count + 1} does not exist`);
      return depth;
    });
    if (pixels.rank !== 4 || pixels.shape[1] !== 3 || pixels.shape[2] !== imageSize || pixels.shape[3] !== imageSize) {
      throw new RangeError(`clip: pixels ${JSON.stringify(pixels.shape)} must be [n, 3, ${imageSize}, ${imageSize}]`);
    }
    const n = pixels.shape[0]!;
    const grid = this.grid;
    return pixels.engine.scope(() => {
      // Patches as tokens: a stride-14 convolution, then channels last.
      const patches = transpose(this.patchEmbedding.forward(pixels).reshape([n, d, grid * grid]), 1, 2);
      const cls = broadcastTo(this.classEmbedding.reshape([1, 1, d]), [n, 1, d]);
      const states = [this.preNorm.forward(add(concat([cls, patches], 1), this.positions))];
      for (let i = 0; i < Math.max(...depths); i++) states.push(this.layers[i]!.forward(states[i]!));
      return depths.map((depth) => slice(states[depth]!, 1, 1, grid * grid + 1));
    });
  }
}
