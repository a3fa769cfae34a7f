/**
 * VisionLLM v2's MLLM, end to end: an image is tiled ("anyres": up to 4 tiles + a thumbnail),
 * each tile encoded by CLIP (second-to-last layer, class token dropped) and projected by vl_bridge;
 * the prompt is built with the Vicuna v1 template, <image> expanded to 576 <im_patch> positions per
 * tile whose embeddings are overwritten by the projected features; LLaMA then generates the answer.
 *
 * A plain Hugging Face LLaMA checkpoint loads too (text-only mode).
 */
import path from 'node:path';
import type { DType } from '../engine/dtype.js';
import { Engine, type EngineOptions } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { decodeImage, decodeImageFile, type DecodeOptions } from '../image/decode.js';
import type { RgbImage } from '../image/gpu-image.js';
import { anyresPreprocess } from '../image/preprocess.js';
import { Checkpoint, type Progress, type StoragePolicy } from '../io/checkpoint.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { IMAGE_TOKEN, promptIds, vicunaPrompt, type ChatTurn } from './chat-template.js';
import { ClipVisionTower } from './clip-vision.js';
import { readConfigFile, type ModelConfig, type VisionLLMConfig } from './config.js';
import { generate, type FinishReason, type GenerationTimings, type SamplingSettings } from './generate.js';
import { Llama, type LlamaCache } from './llama.js';
import { VisionProjector } from './projector.js';
import { Weights } from './weights.js';
import { ROUTE_WEIGHT_PREFIXES } from '../superlink/routes.js';
import { SuperLink, type Link } from '../superlink/superlink.js';

export interface LoadOptions {
  /** Run on this engine (the model does not dispose it); by default the model creates its own. */
  engine?: Engine;
  engineOptions?: EngineOptions;
  /** GPU dtypes of the weights (default: f16 matrices where the adapter can, f32 vectors). */
  policy?: StoragePolicy;
  /** Positions the KV cache holds (default and maximum: the model's context length). */
  contextLength?: number;
  /** Storage dtype of the KV cache (default f16 where the adapter can: half the memory and traffic). */
  cacheDType?: DType;
  onProgress?: (p: Progress) => void;
}

/** An image: a file path, encoded bytes (PNG, JPEG, ...), or decoded RGB pixels. */
export type ImageInput = string | Uint8Array | RgbImage;

export interface ChatOptions extends SamplingSettings {
  prompt: string;
  /**
   * Teacher forcing: process this answer (with its routing blocks, e.g. "person[DET], dog[DET]")
   * in one forward pass instead of generating one.
   */
  answer?: string;
  /** Pose: how many leading [POSE] blocks are object classes (the rest are keypoints). Default 1. */
  poseObjectClasses?: number;
  image?: ImageInput;
  /** Earlier turns of the conversation; the image belongs to the first one, as in the official code. */
  history?: readonly ChatTurn[];
  /** Streaming: each token's newly final text. */
  onToken?: (text: string, id: number) => void;
  signal?: AbortSignal;
  /** Limits for decoding the image. */
  imageLimits?: DecodeOptions;
}

export interface ChatTimings extends GenerationTimings {
  /** Image decoding, tiling and the vision encoder + projector. */
  visionMs: number;
  imageTiles: number;
  totalMs: number;
}

export interface ChatResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  /** The super link's outputs, in answer order: one per routing block, ready for the decoders. Dispose their conditions. */
  links: Link[];
  timings: ChatTimings;
}

const VISIONLLM_PREFIXES = ['vis_encoder.', 'llm.', 'vl_bridge.', ...ROUTE_WEIGHT_PREFIXES];

export class VisionLLM {
  private cache: LlamaCache | null = null;

  private constructor(
    readonly engine: Engine,
    private readonly ownsEngine: boolean,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly weights: Weights,
    readonly llm: Llama,
    readonly vision: { tower: ClipVisionTower; projector: VisionProjector } | null,
    /** Routing tokens to decoders (VisionLLM v2 checkpoints); null for a plain LLaMA. */
    readonly superlink: SuperLink | null,
    private readonly contextLength: number,
    private readonly cacheDType: DType | undefined,
  ) {}

  static async load(dir: string, options: LoadOptions = {}): Promise<VisionLLM> {
    const config = readConfigFile(dir);
    const tokenizer = Tokenizer.fromDirectory(dir);
    if (tokenizer.vocabSize > config.llm.vocabSize) {
      throw new Error(`${path.join(dir, 'tokenizer.model')}: ${tokenizer.vocabSize} tokens, more than the model's vocabulary of ${config.llm.vocabSize}`);
    }
    const engine = options.engine ?? (await Engine.create(options.engineOptions));
    let weights: Weights | null = null;
    try {
      const checkpoint = await Checkpoint.open(dir);
      try {
        weights = await Weights.load(engine, checkpoint, {
          prefixes: config.kind === 'visionllmv2' ? VISIONLLM_PREFIXES : undefined,
          policy: options.policy,
          onProgress: options.onProgress,
        });
      } finally {
        await checkpoint.close();
      }
      const llm = Llama.fromWeights(weights, config.llm, config.kind === 'visionllmv2' ? 'llm.' : '');
      const vision =
        config.kind === 'visionllmv2'
          ? { tower: ClipVisionTower.fromWeights(weights, config.vision), projector: VisionProjector.fromWeights(weights, config) }
          : null;
      const superlink = config.kind === 'visionllmv2' ? SuperLink.fromWeights(weights, config, tokenizer) : null;
      const contextLength = Math.min(options.contextLength ?? config.llm.maxPositions, config.llm.maxPositions);
      return new VisionLLM(engine, !options.engine, config, tokenizer, weights, llm, vision, superlink, contextLength, options.cacheDType);
    } catch (err) {
      weights?.dispose();
      if (!options.engine) engine.dispose();
      throw err;
    }
  }

  /** Answers a prompt about an optional image; streams through onToken, returns the whole answer. */
  async chat(options: ChatOptions): Promise<ChatResult> {
    const t0 = performance.now();
    const history = [...(options.history ?? [])];
    let question = options.prompt;
    let features: Tensor | null = null;
    let tiles = 0;
    const embeds: Tensor[] = [];
    try {
      if (options.image !== undefined) {
        features = await this.encodeImage(options.image, options.imageLimits);
        tiles = features.shape[0]! / this.tokensPerTile;
        // The official code puts <image> at the start of the first user message.
        const withImage = (text: string) => (text.includes(IMAGE_TOKEN) ? text : `${IMAGE_TOKEN}\n${text}`);
        if (history.length) history[0] = { ...history[0]!, user: withImage(history[0]!.user) };
        else question = withImage(question);
      } else if ([question, ...history.map((h) => h.user)].some((t) => t.includes(IMAGE_TOKEN))) {
        throw new Error(`chat: the prompt contains ${IMAGE_TOKEN} but no image was given`);
      }
      const visionMs = performance.now() - t0;
      const prompt = vicunaPrompt(question, history);
      if (options.answer !== undefined) {
        return await this.teacherForce(prompt, options.answer, features, options, { visionMs, imageTiles: tiles, t0 });
      }
      const ids = promptIds(this.tokenizer, prompt, features ? features.shape[0]! : 0);
      const promptEmbeds = this.llm.embed(ids);
      embeds.push(promptEmbeds);
      if (features) this.spliceImage(promptEmbeds, ids, features);

      const cache = this.conversationCache();
      const decoder = this.tokenizer.decoder({ skipSpecialTokens: true });
      const spliced: Tensor[] = [];
      const link = this.superlink;
      try {
        const result = await generate(this.llm, cache, promptEmbeds, {
          maxNewTokens: options.maxNewTokens,
          temperature: options.temperature,
          topK: options.topK,
          topP: options.topP,
          seed: options.seed,
          stopIds: [this.config.llm.eosTokenId],
          decoder,
          onToken: options.onToken,
          signal: options.signal,
          expand: link ? (id) => link.queriesFor(id) : undefined,
          onSpliced: (_, hidden) => spliced.push(hidden),
        });
        const answerIds = result.finishReason === 'stop' ? result.tokenIds.slice(0, -1) : result.tokenIds;
        let links: Link[] = [];
        if (link && spliced.length) {
          const blocks = link.generatedBlocks(result.tokenIds);
          const gathered = link.stack(blocks, spliced);
          try {
            links = link.links(blocks, gathered, link.phrases(result.tokenIds, blocks.map((b) => b.tokenIndex)), options);
          } finally {
            gathered.forEach((t) => t.dispose());
          }
        }
        return {
          text: this.tokenizer.decode(answerIds, { skipSpecialTokens: true }).trim(),
          tokenIds: result.tokenIds,
          finishReason: result.finishReason,
          links,
          timings: { ...result.timings, visionMs, imageTiles: tiles, totalMs: performance.now() - t0 },
        };
      } finally {
        spliced.forEach((t) => t.dispose());
      }
    } finally {
      features?.dispose();
      embeds.forEach((t) => t.dispose());
    }
  }

  /**
   * Teacher forcing: "<prompt> <answer></s>" in one forward pass, the routing blocks' queries spliced
   * in, their last-layer hidden states gathered and projected on the GPU.
   */
  private async teacherForce(
    prompt: string,
    answer: string,
    features: Tensor | null,
    options: ChatOptions,
    timing: { visionMs: number; imageTiles: number; t0: number },
  ): Promise<ChatResult> {
    const link = this.superlink;
    const promptOnly = promptIds(this.tokenizer, prompt, features ? features.shape[0]! : 0);
    const ids = promptIds(this.tokenizer, `${prompt} ${answer}</s>`, features ? features.shape[0]! : 0);
    const plan = link ? link.plan(ids, promptOnly.length) : { ids, blocks: [] };
    const cache = this.conversationCache();
    if (plan.ids.length > cache.maxLength) {
      throw new RangeError(`chat: the prompt and answer need ${plan.ids.length} positions, and the context holds ${cache.maxLength}`);
    }
    const start = performance.now();
    const gathered = this.engine.scope(() => {
      const embeds = this.llm.embed(plan.ids);
      if (features) this.spliceImage(embeds, plan.ids, features);
      link?.fill(embeds, plan.blocks);
      return link ? link.gather(this.llm.forward(embeds, cache), plan.blocks) : new Map();
    });
    try {
      const phrases = link ? link.phrases(plan.ids, plan.blocks.map((b) => b.tokenIndex), promptOnly.length) : [];
      const links = link ? link.links(plan.blocks, gathered, phrases, options) : [];
      await this.engine.sync();
      const forwardMs = performance.now() - start;
      return {
        text: answer,
        tokenIds: plan.ids.slice(promptOnly.length),
        finishReason: 'stop',
        links,
        timings: {
          promptTokens: plan.ids.length, prefillMs: forwardMs, decodeTokens: 0, decodeMs: 0, recordMsPerToken: 0,
          dispatchesPerToken: 0, submitsPerToken: 0, bindGroupsPerToken: 0, replayedSteps: 0, visionMs: timing.visionMs, imageTiles: timing.imageTiles,
          totalMs: performance.now() - timing.t0,
        },
      };
    } finally {
      gathered.forEach((t) => t.dispose());
    }
  }

  /** Image -> projected features [tiles * 576, llm hidden] (anyres tiling, CLIP, vl_bridge). */
  async encodeImage(image: ImageInput, limits?: DecodeOptions): Promise<Tensor> {
    if (!this.vision) throw new Error(`chat: this checkpoint (${this.config.kind}) has no vision encoder; it is text-only`);
    const rgb = typeof image === 'string' ? await decodeImageFile(image, limits) : image instanceof Uint8Array ? await decodeImage(image, limits) : image;
    const { tower, projector } = this.vision;
    const config = this.config as VisionLLMConfig;
    return this.engine.scope(() => {
      const { pixelValues } = anyresPreprocess(this.engine, rgb, { tileSize: config.imageSize, maxTiles: config.maxTiles });
      const projected = projector.forward(tower.features(pixelValues, config.visOutputLayer));
      return projected.reshape([-1, config.llm.hiddenSize]);
    });
  }

  get tokensPerTile(): number {
    return this.vision ? this.vision.tower.grid ** 2 : 0;
  }

  dispose(): void {
    this.superlink?.dispose();
    this.cache?.dispose();
    this.cache = null;
    this.weights.dispose();
    if (this.ownsEngine) this.engine.dispose();
  }

  /** Overwrites the <im_patch> positions (one contiguous run) with the image features, on the GPU. */
  private spliceImage(embeds: Tensor, ids: readonly number[], features: Tensor): void {
    const patch = this.tokenizer.tokenToId('<im_patch>');
    const first = ids.indexOf(patch!);
    const count = features.shape[0]!;
    if (first < 0 || ids[first + count - 1] !== patch) throw new Error(`chat: the prompt has no run of ${count} <im_patch> positions for the image`);
    const rowBytes = embeds.byteLength / embeds.shape[0]!;
    this.engine.copyBytes(features, 0, embeds, first * rowBytes, features.byteLength);
  }

  /** One KV cache, kept between chats (each chat starts it empty). */
  private conversationCache(): LlamaCache {
    this.cache ??= this.llm.newCache({ maxLength: this.contextLength, dtype: this.cacheDType });
    this.cache.truncate(0);
    return this.cache;
  }
}
