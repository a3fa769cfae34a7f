/**
 * UniPose's backbone: Microsoft's Swin Transformer detection code as VisionLLM v2 ships it
 * (model/unipose/modeling_unipose.py SwinTransformer, built by build_swin_transformer), read from
 * `unipose.backbone.0.*` (Joiner(backbone, position_embedding): the Swin is `backbone.0`).
 * Specification: decoders.md part 2.B; reference: scripts/golden/reference_unipose_swin.py.
 *
 * The maths is src/nn/swin.ts. What differs from Grounding DINO's Hugging Face backbone
 * (src/decoders/gdino/swin.ts), all in this file's mapping:
 * - names: `patch_embed.{proj,norm}`, `layers.i.blocks.j.{norm1, attn.{qkv, proj,
 *   relative_position_bias_table}, norm2, mlp.{fc1, fc2}}`, `layers.i.downsample.{reduction, norm}`,
 *   and an output norm `norm{i}` for each i of return_interm_indices (0-based stages);
 * - one fused `qkv` Linear [3C, C], split into query, key and value rows (Linear.rows());
 * - the window never shrinks and odd blocks always shift (`shrinkWindow: false`): a map smaller than
 *   the window is padded to it and still rolled, the mask computed on the padded map;
 * - every LayerNorm is nn.LayerNorm's default (eps 1e-5).
 * The checkpoint's `relative_position_index` buffers are checked for shape and released (the
 * index is recomputed, relativePositionIndex).
 */
import type { Tensor } from '../../engine/tensor.js';
import type { LayerNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { PatchMerging, SwinBlock, SwinStage, SwinTransformer, WindowAttention, checkSwinHeads } from '../../nn/swin.js';
import type { SwinConfig } from '../gdino/config.js';

/** nn.LayerNorm's default, which every norm of Microsoft's Swin uses. */
const EPS = 1e-5;

/**
 * The Swin's hyper-parameters (SwinConfig's, without HF's norm eps and out_features) and UniPose's
 * return_interm_indices: the 0-based stages returned, in order (the release: [1, 2, 3]).
 */
export type UniposeSwinConfig = Pick<SwinConfig, 'embedDim' | 'depths' | 'numHeads' | 'windowSize' | 'patchSize' | 'numChannels' | 'mlpRatio' | 'qkvBias'> & {
  returnIntermIndices: number[];
};

/** build_swin_transformer's model_para_dict (patch 4, 3 channels, mlp ratio 4, qkv bias). */
export const UNIPOSE_SWIN_PRESETS = {
  swin_T_224_1k: { embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], windowSize: 7 },
  swin_B_224_22k: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], windowSize: 7 },
  swin_B_384_22k: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], windowSize: 12 },
  swin_L_224_22k: { embedDim: 192, depths: [2, 2, 18, 2], numHeads: [6, 12, 24, 48], windowSize: 7 },
  swin_L_384_22k: { embedDim: 192, depths: [2, 2, 18, 2], numHeads: [6, 12, 24, 48], windowSize: 12 },
} as const;

/** The config of one of build_swin_transformer's backbones (build_backbone's `args.backbone`). */
export function uniposeSwinConfig(backbone: keyof typeof UNIPOSE_SWIN_PRESETS, returnIntermIndices: number[] = [1, 2, 3]): UniposeSwinConfig {
  const preset = UNIPOSE_SWIN_PRESETS[backbone];
  if (!preset) throw new RangeError(`uniposeSwinConfig: unknown backbone '${String(backbone)}'; expected one of ${Object.keys(UNIPOSE_SWIN_PRESETS).join(', ')}`);
  return {
    embedDim: preset.embedDim, depths: [...preset.depths], numHeads: [...preset.numHeads], windowSize: preset.windowSize,
    patchSize: 4, numChannels: 3, mlpRatio: 4, qkvBias: true, returnIntermIndices: [...returnIntermIndices],
  };
}

export class MicrosoftSwin {
  private constructor(
    readonly config: UniposeSwinConfig,
    private readonly swin: SwinTransformer,
    /** norm{i} of each returned stage, in returnIntermIndices order. */
    private readonly norms: readonly LayerNorm[],
    /** The query, key and value views of the fused qkv weights: each holds its weight's storage until disposed. */
    private readonly views: readonly Tensor[],
  ) {}

  /** `p` is the backbone's scope, e.g. p.at('unipose.backbone.0'). */
  static load(p: Params, config: UniposeSwinConfig): MicrosoftSwin {
    const { embedDim, depths, numHeads, returnIntermIndices } = config;
    if (numHeads.length !== depths.length) {
      throw new RangeError(`${p.prefix}: ${numHeads.length} head counts for ${depths.length} stages`);
    }
    const seen = new Set<number>();
    returnIntermIndices.forEach((i) => {
      if (!Number.isInteger(i) || i < 0 || i >= depths.length || seen.has(i)) {
        throw new RangeError(`${p.prefix}: return_interm_indices [${returnIntermIndices.join(', ')}] must be distinct stages 0..${depths.length - 1}`);
      }
      seen.add(i);
    });
    checkSwinHeads(p.prefix, embedDim, numHeads, 0);
    const views: Tensor[] = [];
    try {
      return MicrosoftSwin.build(p, config, views);
    } catch (e) {
      views.forEach((t) => t.dispose());
      throw e;
    }
  }

  private static build(p: Params, config: UniposeSwinConfig, views: Tensor[]): MicrosoftSwin {
    const { embedDim, depths, numHeads, windowSize: W, patchSize, returnIntermIndices } = config;
    const width = (i: number) => embedDim * 2 ** i;
    const patchEmbed = p.conv2d('patch_embed.proj', config.numChannels, embedDim, patchSize, { stride: patchSize });
    const patchNorm = p.layerNorm('patch_embed.norm', embedDim, EPS);
    const stages = depths.map((depth, i) => {
      const C = width(i);
      const layer = p.at('layers', i);
      const block = (j: number) => {
        const b = layer.at('blocks', j);
        const attn = b.at('attn');
        attn.releaseBuffer('relative_position_index', [W * W, W * W]); // recomputed (relativePositionIndex)
        const qkv = attn.linear('qkv', C, 3 * C, { bias: config.qkvBias });
        const [query, key, value] = [0, 1, 2].map((k) => qkv.rows(k * C, (k + 1) * C));
        [query, key, value].forEach((l) => views.push(l!.weight, ...(l!.bias ? [l!.bias] : [])));
        const attention = new WindowAttention(
          query!, key!, value!,
          attn.linear('proj', C, C),
          attn.tensor('relative_position_bias_table', [(2 * W - 1) ** 2, numHeads[i]!]),
          numHeads[i]!, W,
        );
        const hidden = Math.trunc(config.mlpRatio * C);
        return new SwinBlock(
          b.layerNorm('norm1', C, EPS), attention, b.layerNorm('norm2', C, EPS),
          b.linear('mlp.fc1', C, hidden, { act: 'gelu' }), b.linear('mlp.fc2', hidden, C),
        );
      };
      const downsample = i < depths.length - 1
        ? new PatchMerging(layer.layerNorm('downsample.norm', 4 * C, EPS), layer.linear('downsample.reduction', 4 * C, 2 * C, { bias: false }))
        : undefined;
      return new SwinStage(Array.from({ length: depth }, (_, j) => block(j)), downsample);
    });
    const norms = returnIntermIndices.map((i) => p.layerNorm(`norm${i}`, width(i), EPS));
    const swin = new SwinTransformer(patchEmbed, patchNorm, stages, { windowSize: W, patchSize, shrinkWindow: false });
    return new MicrosoftSwin(config, swin, norms, views);
  }

  /** Channels of each returned map (backbone.num_channels). */
  get channels(): number[] {
    return this.config.returnIntermIndices.map((i) => this.config.embedDim * 2 ** i);
  }

  /**
   * pixels [1, channels, H, W] f32 -> the stages of returnIntermIndices, each [1, C, h, w] f32
   * (stride patch·2^i, h = ceil(H / stride) through the ceil of every merge).
   */
  forward(pixels: Tensor): Tensor[] {
    return this.swin.outputs('MicrosoftSwin', pixels, this.config.returnIntermIndices, this.norms);
  }

  /** Frees what the backbone derived from its weights (the weights belong to the checkpoint). */
  dispose(): void {
    this.swin.dispose();
    this.views.forEach((t) => t.dispose());
  }
}
