/**
 * VisionLLM v2's Mask-DINO-style mask head on Grounding DINO (decoders.md 2.A, A.3 step 6 and the
 * A.4 mask note; official OVGroundingDinoModel.forward's "build multi-scale mask features" and
 * forward_seg_heads):
 *
 *   f             = lateral_convs.0(stage 1) + bilinear_up(memory level 0 -> stride-4 size)
 *                   lateral: Conv 1x1 (C1 -> d, no bias) + GroupNorm(32)
 *   f             = output_convs.0(f): Conv 3x3 p1 (d -> d, no bias) + GroupNorm(32) + ReLU
 *   mask_features = mask_features(f): Conv 1x1 (d -> mask_dim, bias)          [mask_dim, H/4, W/4]
 *   masks         = mask_embed(hs[queries]) · mask_features                    [n, H/4, W/4]
 *
 * The lateral and output convs are detectron2 Conv2d modules (conv, then `.norm`, then the
 * activation); detectron2's get_norm('GN', C) is GroupNorm(32, C) whatever C, so the 32 is not
 * read from the config. `mask_embed` is one MLP shared by every decoder layer (the checkpoint
 * repeats it as `mask_embed.0` .. `mask_embed.{L-1}`; the aliases are freed at load). Masks are
 * computed for chosen queries only: each is a row-wise product, so this is exact.
 */
import { formatShape, type Tensor } from '../../engine/tensor.js';
import type { Conv2d } from '../../nn/conv.js';
import { Mlp } from '../../nn/mlp.js';
import type { GroupNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { transpose } from '../../ops/copy.js';
import { add } from '../../ops/elementwise.js';
import { embedding } from '../../ops/gather.js';
import { matmul } from '../../ops/matmul.js';
import { resize } from '../../ops/resize.js';
import { backboneChannels, type GdinoConfig } from './config.js';

/** detectron2 get_norm('GN', C). */
const GN_GROUPS = 32;
const NAME = 'GdinoMaskHead';

export class GdinoMaskHead {
  private constructor(
    readonly config: GdinoConfig,
    readonly stage1Channels: number,
    private readonly lateral: { conv: Conv2d; norm: GroupNorm },
    private readonly output: { conv: Conv2d; norm: GroupNorm },
    private readonly maskFeatures: Conv2d,
    readonly maskEmbed: Mlp,
  ) {}

  /** `p`: the `gdino` scope. The mask features read the backbone's first returned map. */
  static load(p: Params, config: GdinoConfig): GdinoMaskHead {
    const d = config.dModel;
    const c1 = backboneChannels(config.backbone)[0]!;
    const m = p.at('model');
    const lateral = {
      conv: m.conv2d('lateral_convs.0', c1, d, 1, { bias: 'optional' }),
      norm: m.at('lateral_convs.0').groupNorm('norm', GN_GROUPS, d, { eps: 1e-5 }),
    };
    const output = {
      conv: m.conv2d('output_convs.0', d, d, 3, { padding: 1, bias: 'optional' }),
      norm: m.at('output_convs.0').groupNorm('norm', GN_GROUPS, d, { eps: 1e-5, act: 'relu' }),
    };
    const maskFeatures = m.conv2d('mask_features', d, config.maskDim, 1);
    const maskEmbed = Mlp.gdino(p.at('mask_embed.0'), [d, d, d, config.maskDim]);
    p.releaseAliases('mask_embed.0', Array.from({ length: config.decoderLayers - 1 }, (_, i) => `mask_embed.${i + 1}`));
    return new GdinoMaskHead(config, c1, lateral, output, maskFeatures, maskEmbed);
  }

  /**
   * stage 1 [1, C1, H/4, W/4] and the encoder memory [N, d] (level 0 first, of `level0` = (h, w))
   * -> mask features [mask_dim, H/4, W/4] (f32). Call inside a scope.
   */
  features(stage1: Tensor, memory: Tensor, level0: readonly [number, number]): Tensor {
    const d = this.config.dModel;
    const [h0, w0] = level0;
    if (stage1.rank !== 4 || stage1.shape[0] !== 1 || stage1.shape[1] !== this.stage1Channels) {
      throw new RangeError(`${NAME}: stage 1 ${formatShape(stage1.shape)} must be [1, ${this.stage1Channels}, H/4, W/4]`);
    }
    if (memory.rank !== 2 || memory.shape[1] !== d || memory.shape[0]! < h0 * w0) {
      throw new RangeError(`${NAME}: memory ${formatShape(memory.shape)} must be [N >= ${h0 * w0}, ${d}] for level 0 of ${h0}x${w0}`);
    }
    const [, , H, W] = stage1.shape as [number, number, number, number];
    // Level 0 of the memory as an NCHW map, upsampled to the stride-4 size.
    const level = transpose(memory.rows(0, h0 * w0)).reshape([1, d, h0, w0]);
    const up = resize(level, [H, W], { mode: 'bilinear', alignCorners: false, dtype: 'f32' });
    const f = add(this.lateral.norm.forward(this.lateral.conv.forward(stage1, { dtype: 'f32' })), up);
    const g = this.output.norm.forward(this.output.conv.forward(f));
    return this.maskFeatures.forward(g, { dtype: 'f32' }).reshape([this.config.maskDim, H, W]);
  }

  /** Mask logits of the chosen queries: hs [Q, d] (the last layer's normed output) -> [n, H/4, W/4]. Call inside a scope. */
  masksFor(hs: Tensor, queries: readonly number[], features: Tensor): Tensor {
    const md = this.config.maskDim;
    if (features.rank !== 3 || features.shape[0] !== md) throw new RangeError(`${NAME}: mask features ${formatShape(features.shape)} must be [${md}, H/4, W/4]`);
    const [, H, W] = features.shape as [number, number, number];
    const embed = this.maskEmbed.forward(embedding(hs, queries, 'f32'));
    return matmul(embed, features.reshape([md, H * W]), { dtype: 'f32' }).reshape([queries.length, H, W]);
  }
}
