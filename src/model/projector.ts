/**
 * VisionLLM v2's vl_bridge: vision features to LLM embeddings. 'mlp2x_gelu' (the released model)
 * is Linear, GELU, Linear (names vl_bridge.0.*, vl_bridge.2.*); 'linear' is one Linear (vl_bridge.*).
 */
import type { Tensor } from '../engine/tensor.js';
import { linear } from '../ops/matmul.js';
import type { VisionLLMConfig } from './config.js';
import type { Weights } from './weights.js';

export class VisionProjector {
  private constructor(private readonly layers: [Tensor, Tensor][]) {}

  static fromWeights(w: Weights, config: VisionLLMConfig, prefix = 'vl_bridge.'): VisionProjector {
    const v = config.vision.hiddenSize;
    const d = config.llm.hiddenSize;
    const pair = (name: string, rows: number, cols: number): [Tensor, Tensor] => [w.get(`${name}.weight`, [rows, cols]), w.get(`${name}.bias`, [rows])];
    if (config.bridgeType === 'linear') return new VisionProjector([pair(prefix.slice(0, -1), d, v)]);
    return new VisionProjector([pair(`${prefix}0`, d, v), pair(`${prefix}2`, d, d)]);
  }

  /** features [..., vision hidden] -> [..., llm hidden] */
  forward(features: Tensor): Tensor {
    const [first, second] = this.layers;
    if (!second) return linear(features, ...first!);
    return features.engine.scope(() => linear(linear(features, ...first!, 'gelu'), ...second));
  }
}
