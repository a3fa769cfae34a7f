/**
 * Stable Diffusion's VAE, diffusers' AutoencoderKL (decoders.md §2.C.3), under its checkpoint names
 * (`sd.sd_vae.` / `ip2p.sd_vae.` + `decoder.up_blocks.0.resnets.1.conv2.weight`, ...):
 *   decode:     latents [B, 4, h, w] -> post_quant_conv -> decoder -> image [B, 3, f·h, f·w]
 *   encodeMean: image [B, 3, H, W] in [-1, 1] -> encoder -> quant_conv -> the first 4 of 8 channels
 * with f = 2^(blocks - 1) (8 for SD-1.5). Every GroupNorm has eps 1e-6 and is followed by SiLU, fused.
 * decode() does not divide by scaling_factor: the pipeline does (x = decode(z / 0.18215)), as in diffusers.
 * Both compute and return f32 whatever the input's and the weights' dtypes (diffusers upcasts the VAE too).
 */
import type { Tensor } from '../../engine/tensor.js';
import type { ConfigReader } from '../../io/config-reader.js';
import type { Conv2d } from '../../nn/conv.js';
import type { Linear } from '../../nn/linear.js';
import type { GroupNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { concat, slice, transpose } from '../../ops/copy.js';
import { matmul } from '../../ops/matmul.js';
import { softmax } from '../../ops/rows.js';
import { pad } from '../../ops/spatial.js';
import { ResnetBlock2D } from './unet-blocks.js';

/** diffusers' vae/config.json, the keys AutoencoderKL reads. */
export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  /** The pipeline's latent scale (SD-1.5: 0.18215); not applied by decode() or encodeMean(). */
  scalingFactor: number;
}

/** AutoencoderKL's config, with SD-1.5's values as defaults. */
export function parseVaeConfig(r: ConfigReader): VaeConfig {
  const blockOutChannels = r.positives('block_out_channels', [128, 256, 512, 512]);
  const blocks = blockOutChannels.length;
  const c: VaeConfig = {
    inChannels: r.positive('in_channels', 3),
    outChannels: r.positive('out_channels', 3),
    blockOutChannels,
    layersPerBlock: r.positive('layers_per_block', 2),
    latentChannels: r.positive('latent_channels', 4),
    normNumGroups: r.positive('norm_num_groups', 32),
    scalingFactor: r.positiveNumber('scaling_factor', 0.18215),
  };
  r.str('act_fn', ['silu'] as const, 'silu');
  for (const [key, type] of [['down_block_types', 'DownEncoderBlock2D'], ['up_block_types', 'UpDecoderBlock2D']] as const) {
    const types = r.strings(key, Array(blocks).fill(type));
    if (types.length !== blocks || types.some((t) => t !== type)) {
      throw new Error(`${r.where(key)} must be ${blocks} x "${type}" (one per block_out_channels), got ${JSON.stringify(types)}`);
    }
  }
  const odd = blockOutChannels.find((ch) => ch % c.normNumGroups);
  if (odd !== undefined) throw new Error(`${r.where('norm_num_groups')} ${c.normNumGroups} does not divide block_out_channels ${JSON.stringify(blockOutChannels)}`);
  return c;
}

/** Every GroupNorm of the VAE (the Encoder and Decoder pass resnet_eps=1e-6). */
const EPS = 1e-6;
/** Attention scores per block of query rows: a single head over h·w tokens would otherwise be (h·w)² at once. */
const SCORE_BUDGET = 1 << 24;

export interface VaeOptions {
  /** Query rows per block of the mid blocks' attention scores; default: blocks of at most 2^24 scores (one block up to 64x64 latents). */
  attentionRows?: number;
}

const norm = (p: Params, local: string, groups: number, channels: number): GroupNorm => p.groupNorm(local, groups, channels, { eps: EPS, act: 'silu' });
const conv3x3 = (p: Params, local: string, cin: number, cout: number): Conv2d => p.conv2d(local, cin, cout, 3, { padding: 1 });

/** diffusers' ResnetBlock2D as the VAE builds it, without a time embedding: x + conv2(silu(norm2(conv1(silu(norm1 x))))), the skip through a 1x1 conv_shortcut when the width changes. */
/**
 * The mid block's Attention: group_norm, then one head over all C channels of the h·w tokens,
 * to_out.0, plus the input. SD-1.5's head is 512 wide, past the fused attention kernels' limit, so
 * the scores are made explicitly, in blocks of query rows.
 */
class VaeAttention {
  private constructor(
    private readonly norm: GroupNorm,
    private readonly q: Linear,
    private readonly k: Linear,
    private readonly v: Linear,
    private readonly out: Linear,
    private readonly rows: number | undefined,
  ) {}

  static load(p: Params, channels: number, groups: number, rows: number | undefined): VaeAttention {
    const linear = (local: string) => p.linear(local, channels, channels);
    return new VaeAttention(p.groupNorm('group_norm', groups, channels, { eps: EPS }), linear('to_q'), linear('to_k'), linear('to_v'), linear('to_out.0'), rows);
  }

  /** [B, C, H, W] -> [B, C, H, W]. */
  forward(x: Tensor): Tensor {
    return x.engine.scope(() => this.attend(x));
  }

  private attend(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape as [number, number, number, number];
    const n = H * W;
    // Tokens [B·n, C], as diffusers' view(B, C, n).transpose(1, 2).
    const tokens = (t: Tensor) => transpose(t.reshape([B, C, n]), 1, 2).reshape([B * n, C]);
    const h = tokens(this.norm.forward(x));
    const [q, k, v] = [this.q.forward(h), this.k.forward(h), this.v.forward(h)];
    const step = this.rows ?? Math.max(1, Math.floor(SCORE_BUDGET / n));
    const parts: Tensor[] = [];
    for (let b = 0; b < B; b++) {
      const [kb, vb] = [k.rows(b * n, (b + 1) * n), v.rows(b * n, (b + 1) * n)];
      for (let r = 0; r < n; r += step) {
        // Each block's scores are freed before the next block's are made.
        parts.push(x.engine.scope(() => {
          const scores = matmul(q.rows(b * n + r, b * n + Math.min(n, r + step)), kb, { transposeB: true });
          return matmul(softmax(scores, { scale: 1 / Math.sqrt(C) }), vb);
        }));
      }
    }
    const o = parts.length === 1 ? parts[0]! : concat(parts, 0);
    const y = this.out.forward(o, { residual: tokens(x) });
    return transpose(y.reshape([B, n, C]), 1, 2).reshape([B, C, H, W]);
  }
}

/** UNetMidBlock2D as the VAE builds it: resnet, attention, resnet. */
class MidBlock {
  private constructor(
    private readonly resnets: [ResnetBlock2D, ResnetBlock2D],
    private readonly attention: VaeAttention,
  ) {}

  static load(p: Params, channels: number, groups: number, options: VaeOptions): MidBlock {
    const resnet = (i: number) => ResnetBlock2D.load(p.at('resnets', i), channels, channels, { groups, eps: EPS });
    return new MidBlock([resnet(0), resnet(1)], VaeAttention.load(p.at('attentions', 0), channels, groups, options.attentionRows));
  }

  forward(x: Tensor): Tensor {
    return this.resnets[1].forward(this.attention.forward(this.resnets[0].forward(x)));
  }
}

/** DownEncoderBlock2D / UpDecoderBlock2D: resnets, then (all blocks but the last) a stride-2 conv after a (0, 1, 0, 1) zero pad, or nearest x2 then a conv. */
interface Block {
  resnets: ResnetBlock2D[];
  resample?: Conv2d;
}

function loadBlock(p: Params, cin: number, cout: number, layers: number, groups: number, resample: 'downsamplers' | 'upsamplers' | undefined): Block {
  const resnets = Array.from({ length: layers }, (_, i) => ResnetBlock2D.load(p.at('resnets', i), i ? cout : cin, cout, { groups, eps: EPS }));
  if (!resample) return { resnets };
  const stride = resample === 'downsamplers' ? 2 : 1;
  return { resnets, resample: p.at(resample, 0).conv2d('conv', cout, cout, 3, { stride, padding: stride === 2 ? 0 : 1 }) };
}

/** The encoder's and decoder's output intermediates (tests compare the mid blocks). */
export interface VaeStages {
  /** The mid block's output [B, C_last, h, w]. */
  mid: Tensor;
  /** encodeMean's or decode's result. */
  out: Tensor;
}

export class AutoencoderKLVae {
  private constructor(
    readonly config: VaeConfig,
    private readonly encoder: { convIn: Conv2d; down: Block[]; mid: MidBlock; normOut: GroupNorm; convOut: Conv2d; quantConv: Conv2d },
    private readonly decoder: { postQuantConv: Conv2d; convIn: Conv2d; mid: MidBlock; up: Block[]; normOut: GroupNorm; convOut: Conv2d },
  ) {}

  /** Spatial factor between image and latents: 2 per block but the last (SD-1.5: 8). */
  get factor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** From AutoencoderKL's state_dict names in scope `p` (VisionLLM v2: `sd.sd_vae`, `ip2p.sd_vae`). */
  static load(p: Params, config: VaeConfig, options: VaeOptions = {}): AutoencoderKLVae {
    const rows = options.attentionRows;
    if (rows !== undefined && !(Number.isInteger(rows) && rows >= 1)) throw new RangeError(`AutoencoderKLVae: attentionRows must be an integer >= 1, got ${rows}`);
    const { blockOutChannels: ch, layersPerBlock: layers, normNumGroups: groups, latentChannels: latent } = config;
    const last = ch.length - 1;
    const e = p.at('encoder');
    const encoder = {
      convIn: conv3x3(e, 'conv_in', config.inChannels, ch[0]!),
      down: ch.map((cout, i) => loadBlock(e.at('down_blocks', i), i ? ch[i - 1]! : ch[0]!, cout, layers, groups, i < last ? 'downsamplers' : undefined)),
      mid: MidBlock.load(e.at('mid_block'), ch[last]!, groups, options),
      normOut: norm(e, 'conv_norm_out', groups, ch[last]!),
      convOut: conv3x3(e, 'conv_out', ch[last]!, 2 * latent),
      quantConv: p.conv2d('quant_conv', 2 * latent, 2 * latent, 1),
    };
    const d = p.at('decoder');
    const reversed = [...ch].reverse();
    const decoder = {
      postQuantConv: p.conv2d('post_quant_conv', latent, latent, 1),
      convIn: conv3x3(d, 'conv_in', latent, ch[last]!),
      mid: MidBlock.load(d.at('mid_block'), ch[last]!, groups, options),
      up: reversed.map((cout, i) => loadBlock(d.at('up_blocks', i), i ? reversed[i - 1]! : reversed[0]!, cout, layers + 1, groups, i < last ? 'upsamplers' : undefined)),
      normOut: norm(d, 'conv_norm_out', groups, ch[0]!),
      convOut: conv3x3(d, 'conv_out', ch[0]!, config.outChannels),
    };
    return new AutoencoderKLVae(config, encoder, decoder);
  }

  /** vae.decode(latents).sample: latents [B, latent, h, w] -> image [B, out, f·h, f·w] (about [-1, 1]). */
  decode(latents: Tensor): Tensor {
    return latents.engine.scope(() => this.decodeStages(latents).out);
  }

  /** vae.encode(image).latent_dist.mode(): image [B, in, H, W] in [-1, 1] -> the mean [B, latent, ⌈H/f⌉, ⌈W/f⌉], unscaled. */
  encodeMean(image: Tensor): Tensor {
    return image.engine.scope(() => this.encodeStages(image).out);
  }

  /** decode() with the decoder's mid-block output. */
  decodeStages(latents: Tensor): VaeStages {
    this.check('decode', 'latents', latents, this.config.latentChannels);
    const d = this.decoder;
    const mid = chain(latents, [(z) => d.postQuantConv.forward(z, { dtype: 'f32' }), (z) => d.convIn.forward(z), (x) => d.mid.forward(x)]);
    const out = chain(mid, [
      ...d.up.flatMap((block) => stages(block, (x) => block.resample!.forward(x, { upsample: 2 }))),
      (x) => d.convOut.forward(d.normOut.forward(x)),
    ]);
    return { mid, out };
  }

  /** encodeMean() with the encoder's mid-block output. */
  encodeStages(image: Tensor): VaeStages {
    this.check('encodeMean', 'image', image, this.config.inChannels);
    const e = this.encoder;
    const mid = chain(image, [
      (x) => e.convIn.forward(x, { dtype: 'f32' }),
      // Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then the stride-2 conv.
      ...e.down.flatMap((block) => stages(block, (x) => block.resample!.forward(pad(x, [0, 1, 0, 1])))),
      (x) => e.mid.forward(x),
    ]);
    // DiagonalGaussianDistribution: the moments' channels are the mean, then the log-variance.
    const out = chain(mid, [(x) => e.quantConv.forward(e.convOut.forward(e.normOut.forward(x))), (m) => slice(m, 1, 0, this.config.latentChannels)]);
    return { mid, out };
  }

  private check(op: string, role: string, x: Tensor, channels: number): void {
    if (x.rank !== 4 || x.shape[1] !== channels || x.shape[2]! < 1 || x.shape[3]! < 1) {
      throw new RangeError(`AutoencoderKLVae.${op}: ${role} [${x.shape.join(', ')}] must be [B, ${channels}, H, W] with H, W >= 1`);
    }
  }
}

type Stage = (x: Tensor) => Tensor;

/** A block's resnets, then its resampler (when it has one). */
function stages(block: Block, resample: Stage): Stage[] {
  const resnets: Stage[] = block.resnets.map((r) => (x) => r.forward(x));
  return block.resample ? [...resnets, resample] : resnets;
}

/**
 * The stages one after another, each in its own scope, each intermediate freed once the next exists
 * (the input is the caller's): at 512x512 the decoder's full-size maps are 128 MB each.
 */
function chain(input: Tensor, steps: readonly Stage[]): Tensor {
  let x = input;
  try {
    for (const step of steps) {
      const next = x.engine.scope(() => step(x));
      if (x !== input) x.dispose();
      x = next;
    }
  } catch (err) {
    if (x !== input) x.dispose();
    throw err;
  }
  return x;
}
