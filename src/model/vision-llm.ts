/**
 * VisionLLM v2 end to end. chat() reads top to bottom as the model works:
 *
 *   encode the image     anyres tiles (up to 4 + a thumbnail) -> CLIP (second-to-last layer, no CLS) -> vl_bridge
 *   build the prompt     Vicuna v1 template, <image> expanded to 576 <im_patch> positions per tile
 *   answer               generate (routing tokens get their queries spliced in as they appear), or force a given answer
 *   collect              the super link groups the routing blocks' hidden states by decoder
 *   decode               each decoder runs once on its group: typed outputs in answer order
 *
 * A plain Hugging Face LLaMA checkpoint loads too (text-only mode).
 */
import path from 'node:path';
import type { AnyDecoder, Decoder, DecoderOutput, LoadedDecoder } from '../decoders/decoder.js';
import { DEFAULT_DECODERS } from '../decoders/index.js';
import type { DType } from '../engine/dtype.js';
import { Engine, type EngineOptions } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { decodeImage, decodeImageFile, type DecodeOptions } from '../image/decode.js';
import type { RgbImage } from '../image/gpu-image.js';
import { anyresPreprocess } from '../image/preprocess.js';
import { Checkpoint, type Progress, type StoragePolicy } from '../io/checkpoint.js';
import { Params } from '../nn/params.js';
import { Weights } from '../nn/weights.js';
import { SuperLink, type LinkGroup } from '../superlink/superlink.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { IMAGE_TOKEN, promptIds, vicunaPrompt, type ChatTurn } from './chat-template.js';
import { ClipVisionTower } from './clip-vision.js';
import { checkRegistry, decoderPrefixes, linkTarget, toolTokens } from './decoder-registry.js';
import { readConfigFile, type LlamaConfig, type ModelConfig, type VisionLLMConfig } from './config.js';
import { generate, type FinishReason, type GenerationTimings, type SamplingSettings } from './generate.js';
import { Llama, type LlamaCache } from './llama.js';
import { VisionProjector } from './projector.js';

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
  /** The decoders to register (default DEFAULT_DECODERS); those the checkpoint holds are loaded. */
  decoders?: readonly AnyDecoder[];
  onProgress?: (p: Progress) => void;
  /** Told about recoverable oddities of the checkpoint (default console.warn). */
  warn?: (message: string) => void;
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
  image?: ImageInput;
  /** Earlier turns of the conversation; the image belongs to the first one, as in the official code. */
  history?: readonly ChatTurn[];
  /** Streaming: each token's newly final text. */
  onToken?: (text: string, id: number) => void;
  signal?: AbortSignal;
  /** Limits for decoding the image. */
  imageLimits?: DecodeOptions;
  /** Each decoder's own options, by decoder name (e.g. `{ gdino: { task: 'grounding' } }`). */
  decoders?: Readonly<Record<string, unknown>>;
  /**
   * Tokens generated before </s> may end the answer. Default 1 for VisionLLM v2 checkpoints, as
   * the official evaluation runs (an empty answer is never given), 0 for a plain LLaMA.
   */
  minNewTokens?: number;
}

export interface ChatTimings extends GenerationTimings {
  /** Image decoding, tiling and the vision encoder + projector. */
  visionMs: number;
  imageTiles: number;
  /** The decoders' run() calls. */
  decodersMs: number;
  totalMs: number;
}

export interface ChatResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  /** One output per decoder the answer's routing blocks went to, in the order of their first block. */
  outputs: DecoderOutput[];
  /** The outputs of one decoder, typed. */
  outputsOf<O extends DecoderOutput>(decoder: Decoder<any, any, O>): O[];
  timings: ChatTimings;
  /** Frees the GPU tensors the outputs hold. */
  dispose(): void;
}

/** The answer and, when it routed blocks, their hidden states, before the decoders run. */
interface Answer {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  /** The ids that were run, the answer's first index among them, and each routing block's last-layer hidden states [N, d]. */
  ranIds: readonly number[];
  answerStart: number;
  blockHidden: Tensor[];
  timings: GenerationTimings;
}

const MLLM_PREFIXES = ['vis_encoder.', 'llm.', 'vl_bridge.'];

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
    /** The registered decoders, and the loaded ones (those the checkpoint holds) by name. */
    private readonly registered: readonly AnyDecoder[],
    private readonly decoders: ReadonlyMap<string, LoadedDecoder<unknown, DecoderOutput>>,
    private readonly contextLength: number,
    private readonly cacheDType: DType | undefined,
  ) {}

  static async load(dir: string, options: LoadOptions = {}): Promise<VisionLLM> {
    const registered = checkRegistry(options.decoders ?? DEFAULT_DECODERS);
    const config = readConfigFile(dir, registered);
    const tokenizer = Tokenizer.fromDirectory(dir);
    const engine = options.engine ?? (await Engine.create(options.engineOptions));
    let weights: Weights | null = null;
    const loaded = new Map<string, LoadedDecoder<unknown, DecoderOutput>>();
    let link: SuperLink | null = null;
    try {
      const isV2 = config.kind === 'visionllmv2';
      const present = isV2 ? registered.filter((d) => config.decoders.has(d.name)) : [];
      const checkpoint = await Checkpoint.open(dir);
      try {
        config.llm = vocabularyFromCheckpoint(checkpoint, config.llm, isV2 ? 'llm.' : '', options.warn ?? console.warn);
        weights = await Weights.load(engine, checkpoint, {
          prefixes: isV2 ? [...MLLM_PREFIXES, ...decoderPrefixes(present)] : undefined,
          policy: options.policy,
          onProgress: options.onProgress,
        });
      } finally {
        await checkpoint.close();
      }
      if (tokenizer.vocabSize > config.llm.vocabSize) {
        throw new Error(`${path.join(dir, 'tokenizer.model')}: ${tokenizer.vocabSize} tokens, more than the model's vocabulary of ${config.llm.vocabSize}`);
      }
      const p = new Params(weights);
      const llm = Llama.load(isV2 ? p.at('llm') : p, config.llm);
      let vision: { tower: ClipVisionTower; projector: VisionProjector } | null = null;
      if (isV2) {
        vision = { tower: ClipVisionTower.load(p.at('vis_encoder.vision_model'), config.vision), projector: VisionProjector.load(p.at('vl_bridge'), config) };
        for (const d of present) loaded.set(d.name, d.load(p, config.decoders.get(d.name), { hiddenSize: config.llm.hiddenSize }));
        link = SuperLink.create(p, registered.map((d) => linkTarget(d, config)), tokenizer, toolTokens(registered), config.llm.hiddenSize);
      }
      const contextLength = Math.min(options.contextLength ?? config.llm.maxPositions, config.llm.maxPositions);
      return new VisionLLM(engine, !options.engine, config, tokenizer, weights, llm, vision, link, registered, loaded, contextLength, options.cacheDType);
    } catch (err) {
      link?.dispose();
      loaded.forEach((d) => d.dispose());
      weights?.dispose();
      if (!options.engine) engine.dispose();
      throw err;
    }
  }

  /** Answers a prompt about an optional image; streams through onToken; runs the decoders its routing blocks name. */
  async chat(options: ChatOptions): Promise<ChatResult> {
    const t0 = performance.now();
    const decoderOptions = this.decoderOptions(options.decoders);
    if (options.image !== undefined) this.requireVision();
    const image = options.image === undefined ? undefined : await readImage(options.image, options.imageLimits);
    const features = image ? this.encodeRgb(image) : null;
    try {
      const tiles = features ? features.shape[0]! / this.tokensPerTile : 0;
      const visionMs = performance.now() - t0;
      const prompt = this.prompt(options, features !== null);
      const answer = options.answer !== undefined ? this.forceAnswer(prompt, options.answer, features) : await this.generateAnswer(prompt, features, options);
      let groups: LinkGroup[];
      try {
        groups = this.superlink?.collect(answer.ranIds, answer.blockHidden, answer.answerStart) ?? [];
      } finally {
        answer.blockHidden.forEach((t) => t.dispose());
      }
      const decodeStart = performance.now();
      const outputs = await this.runDecoders(groups, image, decoderOptions);
      return chatResult(answer, outputs, { visionMs, imageTiles: tiles, decodersMs: performance.now() - decodeStart, totalMs: performance.now() - t0 });
    } finally {
      features?.dispose();
    }
  }

  /** Image -> projected features [tiles * 576, llm hidden] (anyres tiling, CLIP, vl_bridge). */
  async encodeImage(image: ImageInput, limits?: DecodeOptions): Promise<Tensor> {
    this.requireVision();
    return this.encodeRgb(await readImage(image, limits));
  }

  get tokensPerTile(): number {
    return this.vision ? this.vision.tower.grid ** 2 : 0;
  }

  /** Decoders this model can run (registered, and present in the checkpoint). */
  get decoderNames(): string[] {
    return [...this.decoders.keys()];
  }

  dispose(): void {
    this.decoders.forEach((d) => d.dispose());
    this.superlink?.dispose();
    this.cache?.dispose();
    this.cache = null;
    this.weights.dispose();
    if (this.ownsEngine) this.engine.dispose();
  }

  private requireVision(): { tower: ClipVisionTower; projector: VisionProjector } {
    if (!this.vision) throw new Error(`chat: this checkpoint (${this.config.kind}) has no vision encoder; it is text-only`);
    return this.vision;
  }

  private encodeRgb(rgb: RgbImage): Tensor {
    const { tower, projector } = this.requireVision();
    const config = this.config as VisionLLMConfig;
    return this.engine.scope(() => {
      const { pixelValues } = anyresPreprocess(this.engine, rgb, { tileSize: config.imageSize, maxTiles: config.maxTiles });
      const projected = projector.forward(tower.features(pixelValues, config.visOutputLayer));
      return projected.reshape([-1, config.llm.hiddenSize]);
    });
  }

  /** The Vicuna prompt; with an image, <image> opens the first user message, as in the official code. */
  private prompt(options: ChatOptions, hasImage: boolean): string {
    const history = [...(options.history ?? [])];
    let question = options.prompt;
    if (hasImage) {
      const withImage = (text: string) => (text.includes(IMAGE_TOKEN) ? text : `${IMAGE_TOKEN}\n${text}`);
      if (history.length) history[0] = { ...history[0]!, user: withImage(history[0]!.user) };
      else question = withImage(question);
    } else if ([question, ...history.map((h) => h.user)].some((t) => t.includes(IMAGE_TOKEN))) {
      throw new Error(`chat: the prompt contains ${IMAGE_TOKEN} but no image was given`);
    }
    return vicunaPrompt(question, history);
  }

  /** Generation; each routing token's queries are spliced in during decoding, their hidden states kept. */
  private async generateAnswer(prompt: string, features: Tensor | null, options: ChatOptions): Promise<Answer> {
    const ids = promptIds(this.tokenizer, prompt, features ? features.shape[0]! : 0);
    const promptEmbeds = this.llm.embed(ids);
    const blockHidden: Tensor[] = [];
    const link = this.superlink;
    try {
      if (features) this.spliceImage(promptEmbeds, ids, features);
      const result = await generate(this.llm, this.conversationCache(), promptEmbeds, {
        maxNewTokens: options.maxNewTokens,
        minNewTokens: options.minNewTokens ?? (this.config.kind === 'visionllmv2' ? 1 : 0),
        temperature: options.temperature,
        topK: options.topK,
        topP: options.topP,
        seed: options.seed,
        stopIds: [this.config.llm.eosTokenId],
        decoder: this.tokenizer.decoder({ skipSpecialTokens: true }),
        onToken: options.onToken,
        signal: options.signal,
        expand: link ? (id) => link.queriesFor(id) : undefined,
        onSpliced: (_, hidden) => blockHidden.push(hidden),
      });
      const answerIds = result.finishReason === 'stop' ? result.tokenIds.slice(0, -1) : result.tokenIds;
      return {
        text: this.tokenizer.decode(answerIds, { skipSpecialTokens: true }).trim(),
        tokenIds: result.tokenIds,
        finishReason: result.finishReason,
        ranIds: result.tokenIds,
        answerStart: 0,
        blockHidden,
        timings: result.timings,
      };
    } catch (err) {
      blockHidden.forEach((t) => t.dispose());
      throw err;
    } finally {
      promptEmbeds.dispose();
    }
  }

  /** Teacher forcing: "<prompt> <answer></s>" in one forward pass, the routing blocks' queries spliced in. */
  private forceAnswer(prompt: string, answer: string, features: Tensor | null): Answer {
    const patches = features ? features.shape[0]! : 0;
    const promptOnly = promptIds(this.tokenizer, prompt, patches);
    const ids = promptIds(this.tokenizer, `${prompt} ${answer}</s>`, patches);
    const plan = this.superlink ? this.superlink.plan(ids, promptOnly.length) : { ids, blocks: [] };
    const cache = this.conversationCache();
    if (plan.ids.length > cache.maxLength) {
      throw new RangeError(`chat: the prompt and answer need ${plan.ids.length} positions, and the context holds ${cache.maxLength}`);
    }
    const start = performance.now();
    const blockHidden = this.engine.scope(() => {
      const embeds = this.llm.embed(plan.ids);
      if (features) this.spliceImage(embeds, plan.ids, features);
      this.superlink?.fill(embeds, plan.blocks);
      const hidden = this.llm.forward(embeds, cache);
      return plan.blocks.map((b) => hidden.rows(b.firstQuery, b.firstQuery + b.route.queryIds.length));
    });
    return {
      text: answer,
      tokenIds: plan.ids.slice(promptOnly.length),
      finishReason: 'stop',
      ranIds: plan.ids,
      answerStart: promptOnly.length,
      blockHidden,
      timings: {
        promptTokens: plan.ids.length, prefillMs: performance.now() - start, decodeTokens: 0, decodeMs: 0, recordMsPerToken: 0,
        dispatchesPerToken: 0, submitsPerToken: 0, bindGroupsPerToken: 0, replayedSteps: 0,
      },
    };
  }

  /** Each group to its decoder, in order; on an error the outputs made so far are freed. */
  private async runDecoders(groups: LinkGroup[], image: RgbImage | undefined, options: ReadonlyMap<string, unknown>): Promise<DecoderOutput[]> {
    const outputs: DecoderOutput[] = [];
    try {
      for (const group of groups) {
        const decoder = this.decoders.get(group.decoder);
        if (!decoder) throw new Error(`chat: decoder '${group.decoder}' is not loaded`);
        outputs.push(await decoder.run(group, { engine: this.engine, image, options: options.get(group.decoder) }));
      }
      await this.engine.sync();
      return outputs;
    } catch (err) {
      outputs.forEach((o) => o.dispose());
      throw err;
    } finally {
      groups.forEach((g) => g.hidden.dispose());
    }
  }

  /** Each registered decoder's options, checked by the decoder; an unknown decoder name is an error. */
  private decoderOptions(raw: ChatOptions['decoders']): Map<string, unknown> {
    if (raw !== undefined && (typeof raw !== 'object' || raw === null || Array.isArray(raw))) {
      throw new TypeError(`chat: decoders must be an object of options by decoder name, got ${JSON.stringify(raw)}`);
    }
    const unknown = Object.keys(raw ?? {}).filter((k) => !this.registered.some((d) => d.name === k));
    if (unknown.length) throw new TypeError(`chat: decoders.${unknown[0]}: no such decoder (registered: ${this.registered.map((d) => d.name).join(', ')})`);
    return new Map(this.registered.map((d) => [d.name, d.parseOptions(raw?.[d.name])]));
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

async function readImage(image: ImageInput, limits?: DecodeOptions): Promise<RgbImage> {
  return typeof image === 'string' ? decodeImageFile(image, limits) : image instanceof Uint8Array ? decodeImage(image, limits) : image;
}

/**
 * The vocabulary is the embedding table's rows. The release's llm_config.vocab_size may say 32000
 * for a table of 32026 rows (the added tokens; decoders.md D4): the tensor wins, with a warning.
 */
function vocabularyFromCheckpoint(checkpoint: Checkpoint, llm: LlamaConfig, prefix: string, warn: (m: string) => void): LlamaConfig {
  const name = `${prefix}model.embed_tokens.weight`;
  if (!checkpoint.has(name)) return llm;
  const rows = checkpoint.info(name).shape[0]!;
  if (rows === llm.vocabSize) return llm;
  warn(`${checkpoint.path}: llm_config.vocab_size is ${llm.vocabSize} but ${name} has ${rows} rows; using ${rows}`);
  return { ...llm, vocabSize: rows };
}

function chatResult(answer: Answer, outputs: DecoderOutput[], timings: Omit<ChatTimings, keyof GenerationTimings>): ChatResult {
  return {
    text: answer.text,
    tokenIds: answer.tokenIds,
    finishReason: answer.finishReason,
    outputs,
    outputsOf: <O extends DecoderOutput>(decoder: { name: string }) => outputs.filter((o) => o.decoder === decoder.name) as O[],
    timings: { ...answer.timings, ...timings },
    dispose: () => outputs.forEach((o) => o.dispose()),
  };
}
