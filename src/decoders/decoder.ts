/**
 * The seam between the MLLM and its task decoders. A decoder is one folder under src/decoders/
 * that exports one object implementing `Decoder`; the model derives everything else from the list
 * of registered decoders: the routing tokens and their query tables, the weight prefixes it loads,
 * the decoder configs it parses, and what `chat()` returns. See docs/adding-a-decoder.md.
 */
import type { Engine } from '../engine/engine.js';
import type { RgbImage } from '../image/gpu-image.js';
import type { ConfigReader } from '../io/config-reader.js';
import type { Params } from '../nn/params.js';
import type { LinkGroup } from '../superlink/superlink.js';

/** A routing token the decoder takes. */
export interface DecoderRoute {
  token: string;
  /** The query table spliced in after the token: its tensor name without '.weight'. */
  table: string;
  /** Its rows: `num_embs` (4 in the release) or `num_embs_gen` (64) of config.json. */
  queries: 'num_embs' | 'num_embs_gen';
  /**
   * Whether a block with this token selects the decoder for its answer (default true). false: the
   * decoder takes such blocks only when another token selected it (UniPose's [DET] objects).
   */
  selects?: boolean;
}

/** What a decoder's load() knows of the MLLM. */
export interface LlmSide {
  /** Width of the LLM's hidden states, which the super link hands over. */
  hiddenSize: number;
}

/** What run() gets besides the blocks. */
export interface DecoderContext<Options> {
  engine: Engine;
  /** The original image of the chat, decoded (each decoder makes its own input from it), if one was given. */
  image?: RgbImage;
  /** This decoder's options from `chat({ decoders: { <name>: ... } })`, checked by parseOptions. */
  options: Options;
  /** The chat's cancellation (its signal, or the model's disposal): long decoders stop between steps. */
  signal?: AbortSignal;
}

/** Every decoder's result carries these; its own fields (boxes, masks, conditions, ...) come on top. */
export interface DecoderOutput {
  decoder: string;
  /** What the decoder did with the blocks, e.g. 'detection', 'grounding', 'pose', 'generation'. */
  task: string;
  /** The routing token and phrase of each block it took, in answer order. */
  tokens: string[];
  phrases: string[];
  /** Frees the GPU tensors the output holds (safe to call twice). */
  dispose(): void;
}

export interface LoadedDecoder<Options, Output extends DecoderOutput> {
  run(group: LinkGroup, context: DecoderContext<Options>): Output | Promise<Output>;
  dispose(): void;
}

export interface Decoder<Config = unknown, Options = unknown, Output extends DecoderOutput = DecoderOutput> {
  /** The official module name, also the key of its options and of its outputs: 'gdino', 'unipose', 'sd', 'ip2p'. */
  readonly name: string;
  readonly routes: readonly DecoderRoute[];
  /** Most blocks one answer may hand it. */
  readonly maxBlocks: number;
  /** Checkpoint tensor names it owns (loaded only when it is present), e.g. 'gdino.'. */
  readonly prefixes: readonly string[];
  /** Its config from config.json (e.g. use_gdino / gdino_config), or undefined when the checkpoint has none. */
  parseConfig(root: ConfigReader): Config | undefined;
  /** Why it is absent when parseConfig gave undefined, e.g. 'the checkpoint has no Grounding DINO (use_gdino is false)'. */
  readonly absent: string;
  /**
   * Builds it from the checkpoint (`p` is the root scope); throws (or rejects) naming a missing or
   * misshapen tensor. Async where loading reads weights back (UniPose's keypoint-size tables).
   */
  load(p: Params, config: Config, llm: LlmSide): LoadedDecoder<Options, Output> | Promise<LoadedDecoder<Options, Output>>;
  /** Checks the user's options (undefined when none were given); errors name the option and value. */
  parseOptions(raw: unknown): Options;
}

/** Decoders of any config, options and output, for lists of them. */
export type AnyDecoder = Decoder<any, any, DecoderOutput>;

/** Options of a decoder that has none: anything but undefined or an empty object is an error. */
export function noOptions(name: string): (raw: unknown) => undefined {
  return (raw) => {
    if (raw === undefined || (isPlainObject(raw) && Object.keys(raw).length === 0)) return undefined;
    throw new TypeError(`chat: decoders.${name} takes no options, got ${JSON.stringify(raw)}`);
  };
}

/** Checks that `raw` is an object of known keys; returns it typed. */
export function optionsObject<T extends object>(name: string, raw: unknown, keys: readonly (keyof T & string)[]): Partial<T> {
  if (raw === undefined) return {};
  if (!isPlainObject(raw)) throw new TypeError(`chat: decoders.${name} must be an object, got ${JSON.stringify(raw)}`);
  const unknown = Object.keys(raw).filter((k) => !keys.includes(k as keyof T & string));
  if (unknown.length) throw new TypeError(`chat: decoders.${name} has unknown option(s) ${unknown.join(', ')} (known: ${keys.join(', ')})`);
  return raw as Partial<T>;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** A DecoderOutput's dispose(): frees the given tensors once. */
export function disposer(tensors: readonly { dispose(): void }[]): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    tensors.forEach((t) => t.dispose());
  };
}
