/**
 * VisionLLM v2's region encoder (`region_encoder.*`; official model/region_encoder.py, built by
 * modeling_visionllmv2.py build_region_encoder; decoders.md D3): one LLM-width embedding per
 * region of the global image tile, which replaces a `<region>` token's embedding.
 *
 *   x      = cat(image [3, S, S], mask [1, S, S]) per region                       [n, 4, S, S]
 *   E      = conv1×1(GELU(LN2d(conv k2 s2(GELU(LN2d(conv k=p/2 s=p/2 (x)))))))      [n, C, g, g]
 *   per CLIP level l of the last three (hidden_states[-3:] of the tile, no class token):
 *     E   = E + level_l                           (accumulating: level l pools E + levels 1..l)
 *     o_l = pool(E)                               mean / grid_sample: a weighted sum of the cells
 *                                                 (region-pooling.ts); cross_attn: a learned query
 *                                                 attending over the g² cells (8 heads)
 *   out    = up_dim(mean_l o_l)                   [n, LLM width] (up_dim is affine: mean first)
 *
 * g = S / p is the CLIP grid, C the CLIP width; `hidden_dim` (256) is hard-coded officially.
 * One deliberate change: the official cross_attn pooling overwrites E with its flattened form at
 * the first level and then fails on the second (a shape assertion); here E keeps accumulating, as
 * for the other poolings.
 */
import type { Tensor } from '../engine/tensor.js';
import type { ConfigReader } from '../io/config-reader.js';
import { Conv2d } from '../nn/conv.js';
import type { Linear } from '../nn/linear.js';
import { MultiheadAttention } from '../nn/attention.js';
import type { LayerNorm2d } from '../nn/norm.js';
import type { Params } from '../nn/params.js';
import { broadcastTo, concat, transpose } from '../ops/copy.js';
import { add } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { SeededRandom } from '../engine/random.js';
import { gridSampleWeights, meanPoolWeights, samplePixels, type RegionMask } from './region-pooling.js';

export type MaskPoolType = 'mean' | 'cross_attn' | 'grid_sample';
const POOL_TYPES: readonly MaskPoolType[] = ['mean', 'cross_attn', 'grid_sample'];

export interface RegionEncoderConfig {
  /** The mask embedding's width (256, hard-coded officially). */
  hiddenDim: number;
  /** CLIP's width (embed_dim) and the LLM's (out_dim). */
  embedDim: number;
  outDim: number;
  /** CLIP's patch size: the mask embedding's two convolutions reduce by p/2, then 2. */
  patchSize: number;
  poolType: MaskPoolType;
  /** grid_sample: points per region at most (48 × 48 officially). */
  numPoints: number;
  /** cross_attn: heads of region_attn. */
  heads: number;
}

/** `region_encoder_config` (this project's key; the official code builds the encoder from fixed values). */
export function parseRegionEncoderConfig(r: ConfigReader, vision: { hiddenSize: number; patchSize: number }, llmHidden: number): RegionEncoderConfig {
  const config: RegionEncoderConfig = {
    hiddenDim: r.positive('hidden_dim', 256),
    embedDim: vision.hiddenSize,
    outDim: llmHidden,
    patchSize: vision.patchSize,
    poolType: r.str('mask_pool_type', POOL_TYPES, 'grid_sample'),
    numPoints: r.positive('num_points', 48 * 48),
    heads: r.positive('num_heads', 8),
  };
  if (config.patchSize % 2) throw new Error(`${r.where('mask_pool_type')}: the region encoder needs an even patch size, got ${config.patchSize}`);
  if (config.hiddenDim % 4) throw new Error(`${r.where('hidden_dim')} ${config.hiddenDim} must be divisible by 4`);
  if (config.embedDim % config.heads) throw new Error(`${r.where('num_heads')}: ${config.heads} heads do not divide the CLIP width ${config.embedDim}`);
  return config;
}

export interface RegionEncoderInputs {
  /** The global tile's CLIP input [1, 3, S, S]. */
  image: Tensor;
  /** Each region's mask at S × S. */
  masks: readonly RegionMask[];
  /** CLIP's last three hidden states of the tile, each [g², embedDim] (no class token). */
  levels: readonly Tensor[];
  /** grid_sample: the seed of the point draws (default 0). */
  seed?: number;
  /** grid_sample: the pixels to sample per region (y·S + x) instead of drawing them (tests pin the reference's). */
  samplePixels?: readonly Int32Array[];
}

export class RegionEncoder {
  private constructor(
    readonly config: RegionEncoderConfig,
    readonly embedConvs: readonly [Conv2d, Conv2d, Conv2d],
    readonly embedNorms: readonly [LayerNorm2d, LayerNorm2d],
    readonly upDim: Linear,
    /** cross_attn only: the learned query [1, embedDim] and its attention. */
    readonly query?: Tensor,
    readonly attention?: MultiheadAttention,
  ) {}

  /** `p`: the scope `region_encoder`. */
  static load(p: Params, config: RegionEncoderConfig): RegionEncoder {
    const { hiddenDim: h, embedDim: C, outDim, patchSize } = config;
    const k = patchSize / 2;
    const e = p.at('mask_embedding');
    const convs: [Conv2d, Conv2d, Conv2d] = [
      e.conv2d('0', 4, h / 4, k, { stride: k }),
      e.conv2d('3', h / 4, h, 2, { stride: 2 }),
      e.conv2d('6', h, C, 1),
    ];
    const norms: [LayerNorm2d, LayerNorm2d] = [e.layerNorm2d('1', h / 4, { act: 'gelu' }), e.layerNorm2d('4', h, { act: 'gelu' })];
    const upDim = p.linear('up_dim', C, outDim);
    if (config.poolType !== 'cross_attn') return new RegionEncoder(config, convs, norms, upDim);
    return new RegionEncoder(config, convs, norms, upDim, p.tensor('region_query.weight', [1, C]), MultiheadAttention.packed(p.at('region_attn'), C, config.heads));
  }

  /** [n regions, outDim] f32. */
  forward(x: RegionEncoderInputs): Tensor {
    const { embedDim: C, patchSize, poolType } = this.config;
    const { image, masks, levels } = x;
    const engine = image.engine;
    const S = image.shape[2]!;
    const g = S / patchSize;
    const n = masks.length;
    if (image.rank !== 4 || image.shape[0] !== 1 || image.shape[1] !== 3 || image.shape[3] !== S || !Number.isInteger(g)) {
      throw new RangeError(`region encoder: image ${JSON.stringify(image.shape)} must be [1, 3, S, S] with S a multiple of ${patchSize}`);
    }
    if (!n) throw new RangeError('region encoder: no regions');
    masks.forEach((m, i) => {
      if (m.size !== S || m.data.length !== S * S) throw new RangeError(`region encoder: region ${i}'s mask is ${m.size}x${m.size} (${m.data.length} bytes); the tile is ${S}x${S}`);
    });
    if (levels.length < 1 || levels.some((l) => l.rank !== 2 || l.shape[0] !== g * g || l.shape[1] !== C)) {
      throw new RangeError(`region encoder: image features ${JSON.stringify(levels.map((l) => l.shape))} must be levels of [${g * g}, ${C}]`);
    }
    const weights = poolType === 'cross_attn' ? undefined : this.poolWeights(masks, g, x);
    return engine.scope(() => {
      const maskPlanes = engine.tensor(Float32Array.from(masks.flatMap((m) => Array.from(m.data, (v) => (v ? 1 : 0)))), [n, 1, S, S]);
      const input = concat([broadcastTo(image, [n, 3, S, S]), maskPlanes], 1);
      let e = this.embedConvs[0].forward(input, { dtype: 'f32' });
      e = this.embedConvs[1].forward(this.embedNorms[0].forward(e, 'f32'), { dtype: 'f32' });
      e = this.embedConvs[2].forward(this.embedNorms[1].forward(e, 'f32'), { dtype: 'f32' }).reshape([n, C, g * g]);
      const pooled: Tensor[] = [];
      for (const level of levels) {
        e = add(e, transpose(level).reshape([1, C, g * g]), { dtype: 'f32' });
        pooled.push(weights ? matmul(e, weights).reshape([n, C]) : this.attend(e));
      }
      const mean = matmul(engine.tensor(new Float32Array(levels.length).fill(1 / levels.length), [1, levels.length]), concat(pooled, 0).reshape([levels.length, n * C]));
      return this.upDim.forward(mean.reshape([n, C]));
    });
  }

  /** [n, g², 1]: each region's weights over the cells (mean or grid_sample). */
  private poolWeights(masks: readonly RegionMask[], g: number, x: RegionEncoderInputs): Tensor {
    const random = new SeededRandom(x.seed ?? 0);
    const rows = masks.map((m, i) => {
      if (this.config.poolType === 'mean') return meanPoolWeights(m, g);
      const pixels = x.samplePixels?.[i] ?? samplePixels(m, this.config.numPoints, random);
      return gridSampleWeights(pixels, m.size, g);
    });
    const flat = new Float32Array(masks.length * g * g);
    rows.forEach((w, i) => flat.set(w, i * g * g));
    return x.image.engine.tensor(flat, [masks.length, g * g, 1]);
  }

  /** cross_attn: the learned query over the cells of each region, e [n, C, g²] -> [n, C]. */
  private attend(e: Tensor): Tensor {
    const [n, C] = e.shape as [number, number, number];
    const tokens = transpose(e, 1, 2);
    const query = broadcastTo(this.query!.reshape([1, 1, C]), [n, 1, C]);
    return this.attention!.forward(query, tokens).reshape([n, C]);
  }
}
