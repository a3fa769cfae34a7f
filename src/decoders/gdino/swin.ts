/**
 * Grounding DINO's backbone: Hugging Face's SwinBackbone (transformers 4.34, as the release pins
 * it) read from `gdino.model.backbone.conv_encoder.model.*` (decoders.md A.3 step 2, A.5). The
 * maths is src/nn/swin.ts; this file maps HF's names onto it and norms the returned stages.
 *
 * HF's window rule holds per call: a stage map whose smaller side is within the window gets a window
 * of that side and no shift. Where that side is below the window HF 4.34 itself fails (its bias stays
 * [heads, 49, 49]); here the shrunk window reads the bias table at the same (dy, dx) offsets
 * (relativePositionIndex). Only inputs whose s32 map is under the window on a side (at most 192
 * pixels for Swin-T) get there.
 */
import type { Tensor } from '../../engine/tensor.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { PatchMerging, SwinBlock, SwinStage, SwinTransformer, WindowAttention, checkSwinHeads } from '../../nn/swin.js';
import type { SwinConfig } from './config.js';

/** nn.LayerNorm's default: HF builds embeddings.norm, downsample.norm and hidden_states_norms without config.layer_norm_eps. */
const DEFAULT_EPS = 1e-5;

export class SwinBackbone {
  private constructor(
    readonly config: SwinConfig,
    private readonly swin: SwinTransformer,
    /** hidden_states_norms.stageN of each returned stage, in config.outStages order. */
    private readonly norms: readonly LayerNorm[],
  ) {}

  /** `p` is the backbone's scope, e.g. p.at('gdino.model.backbone.conv_encoder.model'). */
  static load(p: Params, config: SwinConfig): SwinBackbone {
    const { embedDim, depths, numHeads, windowSize: W, patchSize, layerNormEps: eps } = config;
    const width = (i: number) => embedDim * 2 ** i;
    checkSwinHeads(p.prefix, embedDim, numHeads, 1);
    const emb = p.at('embeddings');
    const patchEmbed = emb.conv2d('patch_embeddings.projection', config.numChannels, embedDim, patchSize, { stride: patchSize });
    const patchNorm = emb.layerNorm('norm', embedDim, DEFAULT_EPS);
    const stages = depths.map((depth, i) => {
      const C = width(i);
      const stage = p.at('encoder.layers', i);
      const block = (j: number) => {
        const b = stage.at('blocks', j);
        const selfAttn = b.at('attention.self');
        selfAttn.releaseBuffer('relative_position_index', [W * W, W * W]); // recomputed (relativePositionIndex)
        const qkv = { bias: config.qkvBias };
        const attention = new WindowAttention(
          selfAttn.linear('query', C, C, qkv), selfAttn.linear('key', C, C, qkv), selfAttn.linear('value', C, C, qkv),
          b.linear('attention.output.dense', C, C),
          selfAttn.tensor('relative_position_bias_table', [(2 * W - 1) ** 2, numHeads[i]!]),
          numHeads[i]!, W,
        );
        const hidden = Math.trunc(config.mlpRatio * C);
        return new SwinBlock(
          b.layerNorm('layernorm_before', C, eps), attention, b.layerNorm('layernorm_after', C, eps),
          b.linear('intermediate.dense', C, hidden, { act: 'gelu' }), b.linear('output.dense', hidden, C),
        );
      };
      const downsample = i < depths.length - 1
        ? new PatchMerging(stage.layerNorm('downsample.norm', 4 * C, DEFAULT_EPS), stage.linear('downsample.reduction', 4 * C, 2 * C, { bias: false }))
        : undefined;
      return new SwinStage(Array.from({ length: depth }, (_, j) => block(j)), downsample);
    });
    const norms = config.outStages.map((s) => p.layerNorm(`hidden_states_norms.stage${s}`, width(s - 1), DEFAULT_EPS));
    const swin = new SwinTransformer(patchEmbed, patchNorm, stages, { windowSize: W, patchSize, shrinkWindow: true });
    return new SwinBackbone(config, swin, norms);
  }

  /** Channels of each returned map. */
  get channels(): number[] {
    return this.config.outStages.map((s) => this.config.embedDim * 2 ** (s - 1));
  }

  /**
   * pixels [1, channels, H, W] f32 -> the configured stages, each [1, C, h, w] f32 (stride
   * patch·2^(stage−1), h = ceil(H / stride)).
   */
  forward(pixels: Tensor): Tensor[] {
    return this.swin.outputs('SwinBackbone', pixels, this.config.outStages.map((s) => s - 1), this.norms);
  }

  /** Frees what the backbone derived from its weights (the weights belong to the checkpoint). */
  dispose(): void {
    this.swin.dispose();
  }
}
