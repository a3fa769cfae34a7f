/**
 * diffusers' UNet2DConditionModel as Stable Diffusion 1.5 and InstructPix2Pix use it (decoders.md
 * C.2; diffusers 0.28.2 unet_2d_condition.py and unet_2d_blocks.py), under diffusers' names
 * (`sd.sd_unet.*`, `ip2p.sd_unet.*`):
 *
 *   temb  = time_embedding(sinusoid(t))            linear_1, SiLU, linear_2: [B, 4·C0]
 *   h     = conv_in(x); skips = [h]
 *   down  each block: resnet (+ transformer) per layer, each output a skip; then a stride-2 conv, a skip
 *   mid   resnet, transformer, resnet
 *   up    each block: per layer h = cat(h, skips.pop()) on channels, resnet (+ transformer); then
 *         nearest ×2 + conv (to the skip's size when it was odd) except after the last block
 *   out   conv_out(silu(conv_norm_out(h)))
 *
 * Every size is read from the U-Net's diffusers config (block_out_channels, layers_per_block,
 * attention_head_dim, cross_attention_dim, the block types, ...), SD-1.5's by default.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { ConfigReader } from '../../io/config-reader.js';
import type { Conv2d } from '../../nn/conv.js';
import type { Linear } from '../../nn/linear.js';
import type { GroupNorm } from '../../nn/norm.js';
import type { Params } from '../../nn/params.js';
import { concat } from '../../ops/copy.js';
import { silu } from '../../ops/elementwise.js';
import { timestepEmbedding } from '../../ops/timestep.js';
import { ResnetBlock2D, Transformer2D, upsample, type BlockSettings } from './unet-blocks.js';

const DOWN_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'] as const;
const UP_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'] as const;

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  /** Heads per block (diffusers' attention_head_dim, an int for every block or one per block). */
  heads: number[];
  crossAttentionDim: number;
  normNumGroups: number;
  normEps: number;
  /** Which down and up blocks have transformers. */
  downAttention: boolean[];
  upAttention: boolean[];
  flipSinToCos: boolean;
  freqShift: number;
  /** The latents' default size (64: 512 pixels with the VAE's factor 8). */
  sampleSize: number;
}

/** A diffusers unet config.json (SD-1.5's values by default; in_channels 8 for InstructPix2Pix). */
export function parseUNetConfig(r: ConfigReader): UNetConfig {
  const blockOutChannels = r.positives('block_out_channels', [320, 640, 1280, 1280]);
  const n = blockOutChannels.length;
  const types = <T extends string>(key: string, allowed: readonly T[], fallback: T[]) => {
    const list = r.strings(key, fallback);
    if (list.length !== n) throw new Error(`${r.where(key)} has ${list.length} blocks for ${n} block_out_channels`);
    list.forEach((t) => {
      if (!allowed.includes(t as T)) throw new Error(`${r.where(key)}: '${t}' is not supported (${allowed.join(', ')})`);
    });
    return list.map((t) => t.startsWith('CrossAttn'));
  };
  const headsRaw = r.value('attention_head_dim') ?? 8;
  const heads = Array.isArray(headsRaw) ? r.positives('attention_head_dim') : Array.from({ length: n }, () => r.positive('attention_head_dim', 8));
  if (heads.length !== n) throw new Error(`${r.where('attention_head_dim')} has ${heads.length} entries for ${n} blocks`);
  const c: UNetConfig = {
    inChannels: r.positive('in_channels', 4),
    outChannels: r.positive('out_channels', 4),
    blockOutChannels,
    layersPerBlock: r.positive('layers_per_block', 2),
    heads,
    crossAttentionDim: r.positive('cross_attention_dim', 768),
    normNumGroups: r.positive('norm_num_groups', 32),
    normEps: r.positiveNumber('norm_eps', 1e-5),
    downAttention: types('down_block_types', DOWN_TYPES, ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']),
    upAttention: types('up_block_types', UP_TYPES, ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']),
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.integer('freq_shift', 0),
    sampleSize: r.positive('sample_size', 64),
  };
  r.str('act_fn', ['silu'] as const, 'silu');
  if (r.bool('use_linear_projection', false)) throw new Error(`${r.where('use_linear_projection')} true is not supported (SD-1.5's projections are 1×1 convolutions)`);
  blockOutChannels.forEach((ch, i) => {
    if (ch % c.normNumGroups) throw new Error(`${r.where('block_out_channels')}: block ${i}'s ${ch} channels do not split into ${c.normNumGroups} groups`);
    if (ch % heads[i]!) throw new Error(`${r.where('attention_head_dim')}: block ${i}'s ${ch} channels are not divisible by ${heads[i]} heads`);
  });
  return c;
}

/** One level of the U-Net: its resnets, their transformers (when it has attention), and the resampling conv. */
interface Level {
  resnets: ResnetBlock2D[];
  attentions: Transformer2D[];
  sampler?: Conv2d;
}

export class UNet2DConditionModel {
  private constructor(
    readonly config: UNetConfig,
    readonly timeLinear1: Linear,
    readonly timeLinear2: Linear,
    readonly convIn: Conv2d,
    readonly down: readonly Level[],
    readonly mid: Level,
    readonly up: readonly Level[],
    readonly normOut: GroupNorm,
    readonly convOut: Conv2d,
  ) {}

  /** `p`: the U-Net's scope, e.g. p.at('sd.sd_unet'). */
  static load(p: Params, config: UNetConfig): UNet2DConditionModel {
    const { blockOutChannels: ch, layersPerBlock: L, heads, normNumGroups: groups, normEps: eps } = config;
    const c0 = ch[0]!;
    const s: BlockSettings = { groups, eps, timeDim: 4 * c0, crossDim: config.crossAttentionDim };
    const last = ch.length - 1;
    const down = ch.map((out, i): Level => {
      const b = p.at('down_blocks', i);
      const input = i === 0 ? c0 : ch[i - 1]!;
      return {
        resnets: Array.from({ length: L }, (_, j) => ResnetBlock2D.load(b.at('resnets', j), j === 0 ? input : out, out, s)),
        attentions: config.downAttention[i] ? Array.from({ length: L }, (_, j) => Transformer2D.load(b.at('attentions', j), out, heads[i]!, s)) : [],
        sampler: i < last ? b.conv2d('downsamplers.0.conv', out, out, 3, { stride: 2, padding: 1 }) : undefined,
      };
    });
    const m = p.at('mid_block');
    const top = ch[last]!;
    const mid: Level = {
      resnets: [0, 1].map((j) => ResnetBlock2D.load(m.at('resnets', j), top, top, s)),
      attentions: [Transformer2D.load(m.at('attentions.0'), top, heads[last]!, s)],
    };
    const reversed = [...ch].reverse();
    const upHeads = [...heads].reverse();
    const up = reversed.map((out, i): Level => {
      const b = p.at('up_blocks', i);
      const prev = i === 0 ? top : reversed[i - 1]!;
      const skipOf = (j: number) => (j === L ? reversed[Math.min(i + 1, last)]! : out); // the skip each resnet takes, popped from the end
      return {
        resnets: Array.from({ length: L + 1 }, (_, j) => ResnetBlock2D.load(b.at('resnets', j), (j === 0 ? prev : out) + skipOf(j), out, s)),
        attentions: config.upAttention[i] ? Array.from({ length: L + 1 }, (_, j) => Transformer2D.load(b.at('attentions', j), out, upHeads[i]!, s)) : [],
        sampler: i < last ? b.conv2d('upsamplers.0.conv', out, out, 3, { padding: 1 }) : undefined,
      };
    });
    return new UNet2DConditionModel(
      config,
      p.linear('time_embedding.linear_1', c0, 4 * c0, { act: 'silu' }),
      p.linear('time_embedding.linear_2', 4 * c0, 4 * c0),
      p.conv2d('conv_in', config.inChannels, c0, 3, { padding: 1 }),
      down,
      mid,
      up,
      p.groupNorm('conv_norm_out', groups, c0, { eps, act: 'silu' }),
      p.conv2d('conv_out', c0, config.outChannels, 3, { padding: 1 }),
    );
  }

  /**
   * ε for latents `sample` [B, in, H, W] at `timesteps` (one per batch row, or one for all) with the
   * condition [B, S, crossDim]. Returns [B, out, H, W] f32.
   */
  forward(sample: Tensor, timesteps: number | readonly number[], condition: Tensor): Tensor {
    const c = this.config;
    const [B, channels] = sample.shape as [number, number];
    if (sample.rank !== 4 || channels !== c.inChannels) throw new RangeError(`unet: sample ${JSON.stringify(sample.shape)} must be [B, ${c.inChannels}, H, W]`);
    if (condition.rank !== 3 || condition.shape[0] !== B || condition.shape[2] !== c.crossAttentionDim) {
      throw new RangeError(`unet: condition ${JSON.stringify(condition.shape)} must be [${B}, S, ${c.crossAttentionDim}]`);
    }
    const ts = typeof timesteps === 'number' ? new Array(B).fill(timesteps) : [...timesteps];
    if (ts.length !== B) throw new RangeError(`unet: ${ts.length} timesteps for a batch of ${B}`);
    const engine = sample.engine;
    return engine.scope(() => {
      const siluTemb = silu(this.timeEmbedding(engine, ts));
      // Each block in its own scope, and each map freed once nothing reads it: only the skips and the
      // current map live between blocks (one scope for the whole pass kept every intermediate).
      const skips: Tensor[] = [];
      let h = engine.scope(() => this.convIn.forward(sample, { dtype: 'f32' }));
      skips.push(h);
      const next = (f: (x: Tensor) => Tensor, keep = false) => {
        const x = h;
        h = engine.scope(() => f(x));
        if (!skips.includes(x)) x.dispose();
        if (keep) skips.push(h);
      };
      for (const level of this.down) {
        level.resnets.forEach((resnet, j) => {
          next((x) => resnet.forward(x, siluTemb), !level.attentions[j]);
          if (level.attentions[j]) next((x) => level.attentions[j]!.forward(x, condition), true);
        });
        if (level.sampler) next((x) => level.sampler!.forward(x, { dtype: 'f32' }), true);
      }
      next((x) => this.mid.resnets[0]!.forward(x, siluTemb));
      next((x) => this.mid.attentions[0]!.forward(x, condition));
      next((x) => this.mid.resnets[1]!.forward(x, siluTemb));
      for (const level of this.up) {
        level.resnets.forEach((resnet, j) => {
          const skip = skips.pop()!;
          next((x) => resnet.forward(concat([x, skip], 1), siluTemb));
          skip.dispose();
          if (level.attentions[j]) next((x) => level.attentions[j]!.forward(x, condition));
        });
        if (level.sampler) next((x) => upsample(level.sampler!, x, skips[skips.length - 1]!.shape.slice(2) as [number, number]));
      }
      return this.convOut.forward(this.normOut.forward(h), { dtype: 'f32' });
    });
  }

  /** time_embedding(sinusoid(t)) [B, 4·C0]. Call inside a scope. */
  timeEmbedding(engine: Engine, timesteps: readonly number[]): Tensor {
    const { blockOutChannels, flipSinToCos, freqShift } = this.config;
    const t = timestepEmbedding(engine, timesteps, blockOutChannels[0]!, { flipSinToCos, downscaleFreqShift: freqShift });
    return this.timeLinear2.forward(this.timeLinear1.forward(t));
  }

  /** Frees the views the transformers made of their weights (the weights belong to the checkpoint). */
  dispose(): void {
    for (const level of [...this.down, this.mid, ...this.up]) level.attentions.forEach((a) => a.dispose());
  }
}

/** The U-Net config from `section` (a diffusers unet config.json), SD-1.5's when absent. */
export function unetConfigOf(r: ConfigReader, key: string): UNetConfig {
  return parseUNetConfig(r.has(key) ? r.sub(key) : new ConfigReader(r.file, {}, r.at ? `${r.at}.${key}` : key));
}
