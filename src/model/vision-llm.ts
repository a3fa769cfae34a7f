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
import { anyresPreprocess, anyresTileCount } from '../image/preprocess.js';
import { slice } from '../ops/copy.js';
import { Checkpoint, type Progress, type StoragePolicy } from '../io/checkpoint.js';
import { Params } from '../nn/params.js';
import { Weights } from '../nn/weights.js';
import { SuperLink, type LinkGroup, type RoutedBlock } from '../superlink/superlink.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { checkChatOptions } from './chat-options.js';
import { IMAGE_TOKEN, promptIds, REGION_TOKEN, vicunaPrompt, type ChatTurn } from './chat-template.js';
import { ClipVisionTower } from './clip-vision.js';
import { checkRegistry, decoderPrefixes, linkTarget, toolTokens } from './decoder-registry.js';
import { readConfigFile, type LlamaConfig, type ModelConfig, type VisionLLMConfig } from './config.js';
import { generate, type FinishReason, type GenerationTimings, type SamplingSettings } from './generate.js';
import { Llama, type LlamaCache } from './llama.js';
import { VisionProjector } from './projector.js';
import { RegionEncoder } from './region-encoder.js';
import { regionMask, type Region } from './regions.js';
import { Turns } from './turns.js';
import type { DetectResult, GroundResult, ImageResult, PoseResult, SegmentResult } from './tasks/results.js';
import * as tasks from './tasks/tasks.js';
import type { DetectOptions, EditOptions, GenerateOptions, PoseOptions, SegmentOptions, TaskOptions } from './tasks/tasks.js';

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
  /**
   * What the prompt's `<region>` tokens point at, in order, in original-image pixels: { box }, { mask }
   * or { points } (docs/regions.md). Needs an image and a checkpoint with a region encoder.
   */
  regions?: Region[];
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
  /** Waiting for the model's earlier calls to finish (chats take turns). */
  queuedMs: number;
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
  /** Routing tokens of the answer that no decoder takes (the checkpoint has none for them), with why: their blocks have no output. */
  unrouted: { token: string; reason: string }[];
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

/** A chat checked and tokenized: everything known before the GPU is asked for anything. */
interface Request {
  options: ChatOptions;
  image: RgbImage | undefined;
  /** Image tiles, and the <im_patch> positions they fill. */
  tiles: number;
  patches: number;
  /** Generation: the prompt's ids. Teacher forcing: the prompt's and the answer's, queries included. */
  ids: number[];
  forced: { answerStart: number; blocks: RoutedBlock[] } | null;
}

const MLLM_PREFIXES = ['vis_encoder.', 'llm.', 'vl_bridge.'];
const REGION_PREFIX = 'region_encoder.';
/** The region encoder's image features: CLIP's last three hidden states (modeling_visionllmv2.py: hidden_states[-3:]). */
const REGION_LEVELS = [-3, -2, -1];

interface VisionSide {
  tower: ClipVisionTower;
  projector: VisionProjector;
  /** With use_region_encoder: `<region>` tokens take its embeddings. */
  regions?: RegionEncoder;
}

/** An image's contribution to the prompt: the <im_patch> rows, and one row per `<region>` when regions were given. */
interface ImageRows {
  features: Tensor;
  regions?: Tensor;
}

export class VisionLLM {
  private cache: LlamaCache | null = null;
  /** chat() and encodeImage() run one at a time (one KV cache); dispose() waits for the running one. */
  private readonly turns = new Turns();
  /** Aborted by dispose(): stops a running generation at its next token. */
  private readonly closing = new AbortController();
  private disposal: Promise<void> | null = null;

  private constructor(
    readonly engine: Engine,
    private readonly ownsEngine: boolean,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly weights: Weights,
    readonly llm: Llama,
    readonly vision: VisionSide | null,
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
    let llm: Llama | null = null;
    try {
      const isV2 = config.kind === 'visionllmv2';
      const present = isV2 ? registered.filter((d) => config.decoders.has(d.name)) : [];
      const checkpoint = await Checkpoint.open(dir);
      try {
        config.llm = vocabularyFromCheckpoint(checkpoint, config.llm, isV2 ? 'llm.' : '', options.warn ?? console.warn);
        weights = await Weights.load(engine, checkpoint, {
          prefixes: isV2 ? [...MLLM_PREFIXES, ...(config.regionEncoder ? [REGION_PREFIX] : []), ...decoderPrefixes(present)] : undefined,
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
      llm = Llama.load(isV2 ? p.at('llm') : p, config.llm);
      let vision: VisionSide | null = null;
      if (isV2) {
        vision = {
          tower: ClipVisionTower.load(p.at('vis_encoder.vision_model'), config.vision),
          projector: VisionProjector.load(p.at('vl_bridge'), config),
          regions: config.regionEncoder && RegionEncoder.load(p.at('region_encoder'), config.regionEncoder),
        };
        for (const d of present) loaded.set(d.name, await d.load(p, config.decoders.get(d.name), { hiddenSize: config.llm.hiddenSize }));
        link = SuperLink.create(p, registered.map((d) => linkTarget(d, config)), tokenizer, toolTokens(registered), config.llm.hiddenSize);
      }
      const contextLength = Math.min(options.contextLength ?? config.llm.maxPositions, config.llm.maxPositions);
      return new VisionLLM(engine, !options.engine, config, tokenizer, weights, llm, vision, link, registered, loaded, contextLength, options.cacheDType);
    } catch (err) {
      llm?.dispose();
      link?.dispose();
      loaded.forEach((d) => d.dispose());
      weights?.dispose();
      if (!options.engine) engine.dispose();
      throw err;
    }
  }

  /**
   * Answers a prompt about an optional image; streams through onToken; runs the decoders its
   * routing blocks name. Options, image and context length are checked before any GPU work; calls
   * on one model then take turns, in order (an aborted signal takes a waiting call out of line).
   */
  async chat(options: ChatOptions): Promise<ChatResult> {
    const t0 = performance.now();
    checkChatOptions(options);
    const decoderOptions = this.decoderOptions(options.decoders);
    const request = await this.openRequest(options, 'chat');
    const queued = performance.now();
    return this.turns.run(() => this.respond(request, decoderOptions, { start: t0, queuedMs: performance.now() - queued }), options.signal);
  }

  /** Detection (COCO's classes by default): boxes in original pixels (src/tasks/tasks.ts). */
  detect(image: ImageInput, options?: DetectOptions): Promise<DetectResult> {
    return tasks.detect(this, image, options);
  }

  /** Instance (default) or semantic segmentation of classes, or interactive segmentation of what `regions` mark. */
  segment(image: ImageInput, options?: SegmentOptions): Promise<SegmentResult> {
    return tasks.segment(this, image, options);
  }

  /** The box and mask of what a referring expression names. */
  ground(image: ImageInput, phrase: string, options?: TaskOptions): Promise<GroundResult> {
    return tasks.ground(this, image, phrase, options);
  }

  /** Keypoints (COCO's 17 by default) of each person (or of `classes`). */
  pose(image: ImageInput, options?: PoseOptions): Promise<PoseResult> {
    return tasks.pose(this, image, options);
  }

  /** An image from a caption (Stable Diffusion behind [GEN]). */
  generate(prompt: string, options?: GenerateOptions): Promise<ImageResult> {
    return tasks.generate(this, prompt, options);
  }

  /** The image edited as the instruction says (InstructPix2Pix behind [EDIT]). */
  edit(image: ImageInput, instruction: string, options?: EditOptions): Promise<ImageResult> {
    return tasks.edit(this, image, instruction, options);
  }

  /** Decodes an image input (a path, encoded bytes, or RGB pixels, passed through) to upright RGB pixels. */
  readImage(image: ImageInput, limits?: DecodeOptions): Promise<RgbImage> {
    return readImage(image, limits);
  }

  /** Throws `<call>: <why>` unless the decoder `name` is loaded (registered, and held by the checkpoint). */
  requireDecoder(name: string, call: string): void {
    this.assertOpen(call);
    if (this.decoders.has(name)) return;
    const registered = this.registered.find((d) => d.name === name);
    throw new Error(`${call}: ${registered ? (this.superlink ? registered.absent : 'a plain LLaMA checkpoint has no decoders') : `no decoder '${name}' is registered`}`);
  }

  /**
   * The prompt's ids and its input embeddings [T, hidden] exactly as chat() feeds them to the LLM
   * (image features and region embeddings spliced; a forced answer's routing queries included), for
   * inspecting or scoring a prompt. The caller disposes the tensor.
   */
  async promptEmbeddings(options: ChatOptions): Promise<{ ids: number[]; embeds: Tensor }> {
    checkChatOptions(options);
    const request = await this.openRequest(options, 'promptEmbeddings');
    return this.turns.run(async () => {
      const rows = request.image ? this.encodeRgb(request.image, request.patches, options.regions, options.seed) : null;
      try {
        return { ids: request.ids, embeds: this.inputEmbeddings(request.ids, rows, request.forced?.blocks) };
      } finally {
        rows?.features.dispose();
        rows?.regions?.dispose();
      }
    }, options.signal);
  }

  /** A call's checked options made into a request: the model open, the image decoded, the prompt tokenized. */
  private async openRequest(options: ChatOptions, call: string): Promise<Request> {
    this.assertOpen(call);
    if (options.image !== undefined) this.requireVision();
    const image = options.image === undefined ? undefined : await readImage(options.image, options.imageLimits);
    return this.request(options, image);
  }

  /** The LLM's input: the ids' embeddings, the image's rows and regions spliced, each routing block's queries filled. */
  private inputEmbeddings(ids: readonly number[], rows: ImageRows | null, blocks: readonly RoutedBlock[] = []): Tensor {
    const embeds = this.llm.embed(ids);
    try {
      if (rows) this.spliceImage(embeds, ids, rows);
      this.superlink?.fill(embeds, blocks);
      return embeds;
    } catch (err) {
      embeds.dispose();
      throw err;
    }
  }

  /** One chat's GPU work, on its turn. */
  private async respond(request: Request, decoderOptions: Map<string, unknown>, t: { start: number; queuedMs: number }): Promise<ChatResult> {
    const turnStart = performance.now();
    let features: ImageRows | null = null;
    let outputs: DecoderOutput[] = [];
    try {
      features = request.image ? this.encodeRgb(request.image, request.patches, request.options.regions, request.options.seed) : null;
      const visionMs = performance.now() - turnStart;
      const answer = request.forced ? this.forceAnswer(request, features) : await this.generateAnswer(request, features);
      let groups: LinkGroup[];
      const unrouted = this.superlink?.unrouted(answer.ranIds, answer.answerStart) ?? [];
      try {
        this.assertNotClosing();
        groups = this.superlink?.collect(answer.ranIds, answer.blockHidden, answer.answerStart) ?? [];
      } finally {
        answer.blockHidden.forEach((b) => b.dispose());
      }
      const decodeStart = performance.now();
      const signal = request.options.signal ? AbortSignal.any([request.options.signal, this.closing.signal]) : this.closing.signal;
      outputs = await this.runDecoders(groups, request.image, decoderOptions, signal);
      this.assertNotClosing();
      const timings = { queuedMs: t.queuedMs, visionMs, imageTiles: request.tiles, decodersMs: performance.now() - decodeStart, totalMs: performance.now() - t.start };
      return chatResult(answer, outputs, unrouted, timings);
    } catch (err) {
      outputs.forEach((o) => o.dispose());
      if (this.engine.isDisposed) throw new Error('chat: the engine was disposed during the chat', { cause: err });
      throw err;
    } finally {
      features?.features.dispose();
      features?.regions?.dispose();
    }
  }

  /** The prompt's ids (and a forced answer's), checked against the context length. */
  private request(options: ChatOptions, image: RgbImage | undefined): Request {
    const config = this.config as VisionLLMConfig;
    const tiles = image ? anyresTileCount(image, config.imageSize, config.maxTiles) : 0;
    const patches = tiles * this.tokensPerTile;
    const prompt = this.prompt(options, image !== undefined);
    const promptOnly = promptIds(this.tokenizer, prompt, patches);
    this.checkRegions(options, image, options.answer === undefined ? promptOnly : promptIds(this.tokenizer, `${prompt} ${options.answer}`, patches));
    if (options.answer === undefined) {
      if (promptOnly.length + 1 > this.contextLength) {
        throw new RangeError(`chat: the prompt needs ${promptOnly.length} positions, and the context holds ${this.contextLength} (at least one must remain for the answer)`);
      }
      return { options, image, tiles, patches, ids: promptOnly, forced: null };
    }
    const ids = promptIds(this.tokenizer, `${prompt} ${options.answer}</s>`, patches);
    const plan = this.superlink ? this.superlink.plan(ids, promptOnly.length) : { ids, blocks: [] };
    if (plan.ids.length > this.contextLength) {
      throw new RangeError(`chat: the prompt and answer need ${plan.ids.length} positions, and the context holds ${this.contextLength}`);
    }
    return { options, image, tiles, patches, ids: plan.ids, forced: { answerStart: promptOnly.length, blocks: plan.blocks } };
  }

  /** As many regions as `<region>` tokens (the prompt's, and a forced answer's), with an image and a region encoder. */
  private checkRegions(options: ChatOptions, image: RgbImage | undefined, ids: readonly number[]): void {
    const given = options.regions?.length ?? 0;
    const region = this.tokenizer.tokenToId(REGION_TOKEN);
    const tokens = ids.filter((id) => id === region).length;
    if (!given && !tokens) return;
    if (given !== tokens) throw new RangeError(`chat: ${given} region${given === 1 ? '' : 's'} for ${tokens} ${REGION_TOKEN} token${tokens === 1 ? '' : 's'} in the prompt; give one region per ${REGION_TOKEN}, in order`);
    if (!image) throw new Error(`chat: regions point into an image, and no image was given`);
    if (!this.vision?.regions) throw new Error(`chat: this checkpoint has no region encoder (use_region_encoder is false), so ${REGION_TOKEN} cannot take regions`);
    options.regions!.forEach((r, i) => {
      if ('mask' in r && (r.mask.width !== image.width || r.mask.height !== image.height)) {
        throw new RangeError(`chat: regions[${i}].mask is ${r.mask.width}x${r.mask.height}; the image is ${image.width}x${image.height}`);
      }
    });
  }

  /** Image -> projected features [tiles * 576, llm hidden] (anyres tiling, CLIP, vl_bridge). */
  async encodeImage(image: ImageInput, limits?: DecodeOptions): Promise<Tensor> {
    this.assertOpen('encodeImage');
    this.requireVision();
    const rgb = await readImage(image, limits);
    return this.turns.run(async () => this.encodeRgb(rgb).features);
  }

  get tokensPerTile(): number {
    return this.vision ? this.vision.tower.grid ** 2 : 0;
  }

  /** Decoders this model can run (registered, and present in the checkpoint). */
  get decoderNames(): string[] {
    return [...this.decoders.keys()];
  }

  /**
   * Frees the model (and its engine, when it made it). Calls still waiting for their turn reject
   * with "model disposed before the chat started"; a running chat stops at its next token and
   * rejects with "model disposed during chat". The GPU memory is freed once nothing runs: at
   * once when idle, else when the returned promise resolves. Calling it again is harmless.
   */
  dispose(): Promise<void> {
    if (this.disposal) return this.disposal;
    this.closing.abort();
    const settled = this.turns.close(new Error('model disposed before the chat started'));
    if (!this.turns.running) {
      this.free();
      this.disposal = Promise.resolve();
    } else {
      this.disposal = settled.then(() => this.free());
    }
    return this.disposal;
  }

  private free(): void {
    this.decoders.forEach((d) => d.dispose());
    this.superlink?.dispose();
    this.cache?.dispose();
    this.cache = null;
    this.llm.dispose();
    this.weights.dispose();
    if (this.ownsEngine) this.engine.dispose();
  }

  private assertOpen(call: string): void {
    if (this.disposal) throw new Error(`${call}: the model has been disposed`);
  }

  /** Between a running chat's stages: dispose() came while it worked. */
  private assertNotClosing(): void {
    if (this.closing.signal.aborted) throw new Error('model disposed during chat');
  }

  private requireVision(): VisionSide {
    if (!this.vision) throw new Error(`chat: this checkpoint (${this.config.kind}) has no vision encoder; it is text-only`);
    return this.vision;
  }

  /**
   * `patches`, when given: the rows the prompt made room for (anyresTileCount's promise). `regions`:
   * their embeddings too, from the global tile (the last: the thumbnail, or the only tile).
   */
  private encodeRgb(rgb: RgbImage, patches?: number, regions?: readonly Region[], seed?: number): ImageRows {
    const { tower, projector, regions: encoder } = this.requireVision();
    const config = this.config as VisionLLMConfig;
    const rows = this.engine.scope((): ImageRows => {
      const { pixelValues } = anyresPreprocess(this.engine, rgb, { tileSize: config.imageSize, maxTiles: config.maxTiles });
      const [states, ...levels] = tower.hiddenStates(pixelValues, [config.visOutputLayer, ...(regions ? REGION_LEVELS : [])]);
      const features = projector.forward(states!).reshape([-1, config.llm.hiddenSize]);
      if (!regions) return { features };
      const tile = pixelValues.shape[0]! - 1;
      const S = config.imageSize;
      return {
        features,
        regions: encoder!.forward({
          image: slice(pixelValues, 0, tile, tile + 1),
          masks: regions.map((r) => regionMask(r, rgb, S)),
          levels: levels.map((l) => slice(l, 0, tile, tile + 1).reshape([tower.grid ** 2, -1])),
          seed,
        }),
      };
    });
    if (patches !== undefined && rows.features.shape[0] !== patches) {
      rows.features.dispose();
      rows.regions?.dispose();
      throw new Error(`chat: the image gave ${rows.features.shape[0]} feature rows where the prompt has ${patches} <im_patch> positions`);
    }
    return rows;
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
  private async generateAnswer(request: Request, features: ImageRows | null): Promise<Answer> {
    const { options, ids } = request;
    const promptEmbeds = this.inputEmbeddings(ids, features);
    const blockHidden: Tensor[] = [];
    const link = this.superlink;
    try {
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
        signal: options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal,
        expand: link ? (id) => link.queriesFor(id) : undefined,
        onSpliced: (_, hidden) => blockHidden.push(hidden),
      });
      this.assertNotClosing();
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
  private forceAnswer(request: Request, features: ImageRows | null): Answer {
    const { ids, forced } = request;
    const { answerStart, blocks } = forced!;
    const cache = this.conversationCache();
    const start = performance.now();
    const blockHidden = this.engine.scope(() => {
      const hidden = this.llm.forward(this.inputEmbeddings(ids, features, blocks), cache);
      return blocks.map((b) => hidden.rows(b.firstQuery, b.firstQuery + b.route.queryIds.length));
    });
    return {
      text: request.options.answer!,
      tokenIds: ids.slice(answerStart),
      finishReason: 'stop',
      ranIds: ids,
      answerStart,
      blockHidden,
      timings: {
        promptTokens: ids.length, prefillMs: performance.now() - start, decodeTokens: 0, decodeMs: 0, recordMsPerToken: 0,
        dispatchesPerToken: 0, submitsPerToken: 0, bindGroupsPerToken: 0, replayedSteps: 0,
      },
    };
  }

  /** Each group to its decoder, in order; on an error the outputs made so far are freed. */
  private async runDecoders(groups: LinkGroup[], image: RgbImage | undefined, options: ReadonlyMap<string, unknown>, signal?: AbortSignal): Promise<DecoderOutput[]> {
    const outputs: DecoderOutput[] = [];
    try {
      for (const group of groups) {
        const decoder = this.decoders.get(group.decoder);
        if (!decoder) throw new Error(`chat: decoder '${group.decoder}' is not loaded`);
        outputs.push(await decoder.run(group, { engine: this.engine, image, options: options.get(group.decoder), signal }));
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

  /**
   * Overwrites the <im_patch> positions (one contiguous run) with the image features, and each
   * `<region>` position with its region's embedding, in order; on the GPU.
   */
  private spliceImage(embeds: Tensor, ids: readonly number[], rows: ImageRows): void {
    const patch = this.tokenizer.tokenToId('<im_patch>');
    const first = ids.indexOf(patch!);
    const { features, regions } = rows;
    const count = features.shape[0]!;
    if (first < 0 || ids[first + count - 1] !== patch) throw new Error(`chat: the prompt has no run of ${count} <im_patch> positions for the image`);
    const rowBytes = embeds.byteLength / embeds.shape[0]!;
    this.engine.copyBytes(features, 0, embeds, first * rowBytes, features.byteLength);
    if (!regions) return;
    const region = this.tokenizer.tokenToId(REGION_TOKEN);
    ids.flatMap((id, i) => (id === region ? [i] : [])).forEach((at, k) => this.engine.copyBytes(regions, k * rowBytes, embeds, at * rowBytes, rowBytes));
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

function chatResult(answer: Answer, outputs: DecoderOutput[], unrouted: ChatResult['unrouted'], timings: Omit<ChatTimings, keyof GenerationTimings>): ChatResult {
  return {
    text: answer.text,
    tokenIds: answer.tokenIds,
    finishReason: answer.finishReason,
    outputs,
    unrouted,
    outputsOf: <O extends DecoderOutput>(decoder: { name: string }) => outputs.filter((o) => o.decoder === decoder.name) as O[],
    timings: { ...answer.timings, ...timings },
    dispose: () => outputs.forEach((o) => o.dispose()),
  };
}
