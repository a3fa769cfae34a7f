/**
 * VisionLLM v2's vl_bridge: vision features to LLM embeddings. 'mlp2x_gelu' (the released model)
 * is Linear, GELU, Linear (names vl_bridge.0.*, vl_bridge.2.*); 'linear' is one Linear (vl_bridge.*).
 */
import type { Tensor } from '../engine/tensor.js';
import { Mlp } from '../nn/mlp.js';
import type { Params } from '../nn/params.js';
import type { VisionLLMConfig } from './config.js';

export class VisionProjector {
  private constructor(private readonly mlp: Mlp) {}

  /** From the scope `p` (VisionLLM v2: `vl_bridge`). */
  static load(p: Params, config: VisionLLMConfig): VisionProjector {
    const [v, d] = [config.vision.hiddenSize, config.llm.hiddenSize];
    if (config.bridgeType === 'linear') return new VisionProjector(new Mlp([p.linear('', v, d)]));
    return new VisionProjector(Mlp.sequential(p, [v, d, d], 'gelu'));
  }

  /** features [..., vision hidden] -> [..., llm hidden] */
  forward(features: Tensor): Tensor {
    return features.engine.scope(() => this.mlp.forward(features));
  }
}
