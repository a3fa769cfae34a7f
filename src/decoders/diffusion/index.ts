/**
 * Stable Diffusion 1.5 (`sd.*`, behind [GEN]) and InstructPix2Pix (`ip2p.*`, behind [EDIT]). The
 * super link's side, the same for both: each block's 64 query states go through emb_proj (Linear,
 * GELU, Linear to the U-Net's cross-attention width) and llm2sd_mapper, a torch nn.Transformer
 * whose target is the 77 learned llm2sd_mapper_queries: one [77, d] condition per block, in place
 * of the CLIP text encoder's output. Each condition then drives the pipeline (pipeline.ts): one
 * image per block, generated, or the chat's image edited. Specification: decoders.md parts 2.C
 * and 2.D; what it computes and its options: docs/diffusion.md.
 */
import type { Tensor } from '../../engine/tensor.js';
import { ConfigReader } from '../../io/config-reader.js';
import { Mlp } from '../../nn/mlp.js';
import { cast, concat } from '../../ops/copy.js';
import { disposer, optionsObject, type Decoder, type DecoderOutput } from '../decoder.js';
import type { GeneratedImage } from './images.js';
import { TransformerMapper, type MapperConfig } from './mapper.js';
import { editImage, generateImage, type DiffusionParts, type DiffusionRunOptions } from './pipeline.js';
import { parseSchedulerConfig, type SchedulerConfig, type SchedulerKind } from './schedulers/index.js';
import { CLIP_BOS, CLIP_EOS, ClipTextEncoder, parseClipTextConfig, type ClipTextConfig, type NullPromptIds } from './text-encoder.js';
import { parseUNetConfig, UNet2DConditionModel, type UNetConfig } from './unet.js';
import { AutoencoderKLVae, parseVaeConfig, type VaeConfig } from './vae.js';

export type { GeneratedImage } from './images.js';

export interface DiffusionConfig {
  mapper: MapperConfig;
  /** Rows of llm2sd_mapper_queries: the condition's length. */
  queries: number;
  unet: UNetConfig;
  vae: VaeConfig;
  textEncoder: ClipTextConfig;
  nullIds: NullPromptIds;
  scheduler: { kind: SchedulerKind; config: SchedulerConfig };
  /** The pipeline's defaults: SD's 50 steps and guidance 7.5; IP2P's 100, 7.5 and image guidance 1.5. */
  defaults: { steps: number; guidance: number; imageGuidance: number };
}

export interface DiffusionOptions {
  steps?: number;
  guidance?: number;
  /** Editing only. */
  imageGuidance?: number;
  /**
   * false: the conditions alone, no image drawn (another pipeline's input, or a chat read for its
   * answer, as the evaluation reads one); default true.
   */
  draw?: boolean;
  /** Seeds the latents and (Euler ancestral) each step's noise (default 0). */
  seed?: number;
  /** Generation only: the image size in pixels, multiples of the VAE's factor (default 512: the U-Net's sample_size × 8). */
  width?: number;
  height?: number;
  scheduler?: SchedulerKind;
  /** After each denoising step: the block being drawn, the steps done and in all. */
  onStep?: (block: number, done: number, total: number) => void;
  /**
   * Reproducing another run's draws (diffusers' `latents`): the initial latents [1, 4, H/8, W/8]
   * before the scheduler's σ_init, and Euler ancestral's noise of each step; host values.
   */
  latents?: Float32Array;
  noise?: (step: number) => Float32Array | undefined;
}

export interface DiffusionOutput extends DecoderOutput {
  decoder: 'sd' | 'ip2p';
  task: 'generation' | 'editing';
  /** One condition per block, [blocks, queries, d]: the U-Net's encoder_hidden_states. */
  conditions: Tensor;
  /** One image per block (none when editing without an image, or with `draw: false`). */
  images: GeneratedImage[];
  timings: { pipelineMs: number };
}

const SCHEDULERS: readonly SchedulerKind[] = ['pndm', 'euler_ancestral', 'ddim'];

/**
 * `<name>_config`: the mapper's keys (official), and the pipeline's parts as their diffusers /
 * transformers config.json files hold them, under `unet_config`, `vae_config`, `text_encoder_config`,
 * `scheduler_config`, `scheduler` and `tokenizer_config` (this project's keys: the official code loads
 * them from a Stable Diffusion folder). Absent, each takes SD-1.5's (IP2P: in_channels 8, Euler ancestral).
 */
function parseDiffusionConfig(c: ConfigReader, name: 'sd' | 'ip2p'): DiffusionConfig {
  const dModel = c.positive('sd_hidden_size', 768);
  // The official mapper keeps nn.Transformer's default of 8 heads and a 4x feed-forward (modeling_sd.py).
  const heads = 8;
  if (dModel % heads) throw new Error(`${c.where('sd_hidden_size')} ${dModel} is not divisible by the mapper's ${heads} heads`);
  const section = (key: string, fallback: Record<string, unknown> = {}) => (c.has(key) ? c.sub(key) : new ConfigReader(c.file, fallback, `${c.at}.${key}`));
  const editing = name === 'ip2p';
  const unet = parseUNetConfig(section('unet_config', editing ? { in_channels: 8 } : {}));
  if (unet.crossAttentionDim !== dModel) throw new Error(`${c.where('unet_config')}: cross_attention_dim ${unet.crossAttentionDim} differs from sd_hidden_size ${dModel}, the condition's width`);
  const textEncoder = parseClipTextConfig(section('text_encoder_config'));
  if (textEncoder.hiddenSize !== dModel) throw new Error(`${c.where('text_encoder_config')}: hidden_size ${textEncoder.hiddenSize} differs from sd_hidden_size ${dModel} (the null condition's width)`);
  const tokenizer = section('tokenizer_config');
  return {
    mapper: { dModel, heads, feedForward: 4 * dModel, encoderLayers: c.positive('num_encoder_layers', 1), decoderLayers: c.positive('num_decoder_layers', 1) },
    queries: c.positive('num_queries', 77),
    unet,
    vae: parseVaeConfig(section('vae_config')),
    textEncoder,
    nullIds: { bos: tokenizer.int('bos_token_id', CLIP_BOS), eos: tokenizer.int('eos_token_id', CLIP_EOS) },
    scheduler: { kind: c.str('scheduler', SCHEDULERS, editing ? 'euler_ancestral' : 'pndm'), config: parseSchedulerConfig(section('scheduler_config', editing ? {} : { skip_prk_steps: true })) },
    defaults: { steps: editing ? 100 : 50, guidance: 7.5, imageGuidance: 1.5 },
  };
}

function parseDiffusionOptions(name: 'sd' | 'ip2p', raw: unknown): DiffusionOptions {
  const keys: (keyof DiffusionOptions)[] = ['draw', 'steps', 'guidance', 'seed', 'scheduler', 'onStep', 'latents', 'noise', ...(name === 'sd' ? (['width', 'height'] as const) : (['imageGuidance'] as const))];
  const o = optionsObject<DiffusionOptions>(name, raw, keys);
  const where = (key: string) => `chat: decoders.${name}.${key}`;
  for (const key of ['steps', 'width', 'height'] as const) {
    if (o[key] !== undefined && !(Number.isInteger(o[key]) && o[key]! >= 1)) throw new RangeError(`${where(key)} must be a positive integer, got ${JSON.stringify(o[key])}`);
  }
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed < 2 ** 32)) throw new RangeError(`${where('seed')} must be an integer in [0, 2^32), got ${JSON.stringify(o.seed)}`);
  for (const key of ['guidance', 'imageGuidance'] as const) {
    if (o[key] !== undefined && !(typeof o[key] === 'number' && Number.isFinite(o[key]))) throw new RangeError(`${where(key)} must be a finite number, got ${JSON.stringify(o[key])}`);
  }
  if (o.draw !== undefined && typeof o.draw !== 'boolean') throw new TypeError(`${where('draw')} must be a boolean, got ${JSON.stringify(o.draw)}`);
  if (o.scheduler !== undefined && !SCHEDULERS.includes(o.scheduler)) throw new TypeError(`${where('scheduler')} must be one of ${SCHEDULERS.join(', ')}, got ${JSON.stringify(o.scheduler)}`);
  for (const key of ['onStep', 'noise'] as const) if (o[key] !== undefined && typeof o[key] !== 'function') throw new TypeError(`${where(key)} must be a function`);
  if (o.latents !== undefined && !(o.latents instanceof Float32Array)) throw new TypeError(`${where('latents')} must be a Float32Array`);
  return o;
}

function diffusionDecoder(name: 'sd' | 'ip2p', token: string, task: DiffusionOutput['task'], title: string): Decoder<DiffusionConfig, DiffusionOptions, DiffusionOutput> {
  return {
    name,
    routes: [{ token, table: `emb_embeddings_${name === 'sd' ? 'gen' : 'edit'}`, queries: 'num_embs_gen' }],
    maxBlocks: 16,
    prefixes: [`${name}.`],
    absent: `the checkpoint has no ${title} (use_${name} is false)`,

    parseConfig(root: ConfigReader): DiffusionConfig | undefined {
      if (!root.bool(`use_${name}`, false)) return undefined;
      return parseDiffusionConfig(root.sub(`${name}_config`), name);
    },

    parseOptions: (raw) => parseDiffusionOptions(name, raw),

    load(p, config, llm) {
      const d = config.mapper.dModel;
      const s = p.at(name);
      const embProj = Mlp.sequential(s.at('emb_proj'), [llm.hiddenSize, d, d], 'gelu');
      const mapper = TransformerMapper.load(s.at('llm2sd_mapper'), config.mapper);
      const targets = s.tensor('llm2sd_mapper_queries', [1, config.queries, d]);
      const unet = UNet2DConditionModel.load(s.at('sd_unet'), config.unet);
      const parts: DiffusionParts = {
        unet,
        vae: AutoencoderKLVae.load(s.at('sd_vae'), config.vae),
        textEncoder: ClipTextEncoder.load(s.at('sd_text_encoder'), config.textEncoder),
        nullIds: config.nullIds,
        scheduler: config.scheduler,
      };
      return {
        async run(group, { engine, image, options, signal }) {
          const start = performance.now();
          const conditions = engine.scope(() => {
            // The queries are stored like any matrix (f16 by default); the condition stays f32, as the U-Net's inputs are.
            const stored = targets.reshape(targets.shape.slice(1));
            const tgt = stored.dtype === 'f32' ? stored : cast(stored, 'f32');
            const perBlock = group.blocks.map((_, b) => {
              const block = group.hidden.rows(b, b + 1).reshape(group.hidden.shape.slice(1));
              return mapper.forward(embProj.forward(block), tgt).reshape([1, ...tgt.shape]);
            });
            return perBlock.length === 1 ? perBlock[0]! : concat(perBlock, 0);
          });
          const images: GeneratedImage[] = [];
          try {
            if (options.draw !== false && (task === 'generation' || image)) {
              for (let b = 0; b < group.blocks.length; b++) {
                const run: DiffusionRunOptions = {
                  steps: options.steps ?? config.defaults.steps,
                  guidance: options.guidance ?? config.defaults.guidance,
                  imageGuidance: options.imageGuidance ?? config.defaults.imageGuidance,
                  seed: options.seed,
                  width: options.width,
                  height: options.height,
                  scheduler: options.scheduler,
                  onStep: options.onStep && ((done, total) => options.onStep!(b, done, total)),
                  latents: options.latents,
                  noise: options.noise,
                  signal,
                };
                const condition = conditions.rows(b, b + 1);
                try {
                  images.push(task === 'generation' ? await generateImage(parts, condition, run) : await editImage(parts, condition, image!, run));
                } finally {
                  condition.dispose();
                }
              }
            }
          } catch (err) {
            conditions.dispose();
            throw err;
          }
          const tokens = group.blocks.map((b) => b.token);
          const phrases = group.blocks.map((b) => b.phrase);
          return { decoder: name, task, tokens, phrases, conditions, images, timings: { pipelineMs: performance.now() - start }, dispose: disposer([conditions]) };
        },
        dispose() {
          unet.dispose();
          void parts.textEncoder.dispose();
        },
      };
    },
  };
}

export const sd = diffusionDecoder('sd', '[GEN]', 'generation', 'Stable Diffusion');
export const ip2p = diffusionDecoder('ip2p', '[EDIT]', 'editing', 'InstructPix2Pix');
