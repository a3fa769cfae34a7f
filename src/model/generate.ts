/**
 * Autoregressive generation with the KV cache: one prefill over the prompt's embeddings, then one
 * position per step. Each step's work (embedding, every layer, the head, sampling) is recorded in
 * one go and read back once: only the chosen token id crosses to the CPU.
 */
import type { Tensor } from '../engine/tensor.js';
import { sampleTokens } from '../ops/sample.js';
import type { StreamDecoder } from '../tokenizer/tokenizer.js';
import type { Llama, LlamaCache } from './llama.js';
import { SeededRandom } from './random.js';

export interface SamplingSettings {
  /** Maximum tokens to generate (default 256). */
  maxNewTokens?: number;
  /** 0 (the default) is greedy decoding, as the official evaluation uses. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Seed of the sampling draws (default 0): the same seed gives the same text. */
  seed?: number;
}

export interface GenerateOptions extends SamplingSettings {
  /** Ids that end generation (default: the model's </s>). The stop id is kept in tokenIds. */
  stopIds?: readonly number[];
  /** Called with each token's newly final text (may be '') as it is generated. */
  onToken?: (text: string, id: number) => void;
  /** Turns ids into text for onToken. */
  decoder?: StreamDecoder;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'context' | 'aborted';

export interface GenerationTimings {
  /** Prompt positions run through the model, and the time to the first token (prefill + sampling). */
  promptTokens: number;
  prefillMs: number;
  /** Tokens after the first, and the time they took. */
  decodeTokens: number;
  decodeMs: number;
  /** Host time spent recording GPU work per decode step (the rest is the GPU). */
  recordMsPerToken: number;
  dispatchesPerToken: number;
  submitsPerToken: number;
}

export interface GenerationResult {
  tokenIds: number[];
  finishReason: FinishReason;
  timings: GenerationTimings;
}

export async function generate(llm: Llama, cache: LlamaCache, promptEmbeds: Tensor, options: GenerateOptions = {}): Promise<GenerationResult> {
  const engine = llm.engine;
  const maxNew = options.maxNewTokens ?? 256;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new RangeError(`generate: maxNewTokens must be a non-negative integer, got ${maxNew}`);
  const promptTokens = promptEmbeds.shape[0]!;
  if (cache.length + promptTokens >= cache.maxLength) {
    throw new RangeError(
      `generate: the prompt needs ${cache.length + promptTokens} positions, and the context holds ${cache.maxLength} (at least one must remain for the answer)`,
    );
  }
  const stop = new Set(options.stopIds ?? [llm.config.eosTokenId]);
  const rng = new SeededRandom(options.seed ?? 0);
  const sampling = { temperature: options.temperature ?? 0, topK: options.topK, topP: options.topP };
  const ids: number[] = [];
  const counters = engine.recorder.counters;

  const choose = (hidden: Tensor): Tensor =>
    engine.scope(() => sampleTokens(llm.logits(hidden.rows(hidden.shape[0]! - 1, hidden.shape[0]!)), rng.next(), sampling));
  const readId = async (t: Tensor) => {
    const id = (await t.read())[0]!;
    t.dispose();
    return id;
  };

  const t0 = performance.now();
  let next = maxNew > 0 ? await readId(engine.scope(() => choose(llm.forward(promptEmbeds, cache)))) : -1;
  const prefillMs = performance.now() - t0;

  let finishReason: FinishReason = 'length';
  let recordMs = 0;
  const start = { time: performance.now(), dispatches: counters.dispatches, submits: counters.submits };
  while (ids.length < maxNew) {
    ids.push(next);
    if (options.onToken) options.onToken(options.decoder?.push(next) ?? '', next);
    if (stop.has(next)) {
      finishReason = 'stop';
      break;
    }
    if (ids.length === maxNew) break;
    if (options.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    if (cache.length >= cache.maxLength) {
      finishReason = 'context';
      break;
    }
    const recordStart = performance.now();
    const chosen = engine.scope(() => choose(llm.forward(llm.embed([next]), cache)));
    recordMs += performance.now() - recordStart;
    next = await readId(chosen);
  }
  if (options.onToken && options.decoder) {
    const rest = options.decoder.flush();
    if (rest) options.onToken(rest, -1);
  }
  const steps = Math.max(ids.length - 1, 0);
  return {
    tokenIds: ids,
    finishReason,
    timings: {
      promptTokens,
      prefillMs,
      decodeTokens: steps,
      decodeMs: performance.now() - start.time,
      recordMsPerToken: steps ? recordMs / steps : 0,
      dispatchesPerToken: steps ? (counters.dispatches - start.dispatches) / steps : 0,
      submitsPerToken: steps ? (counters.submits - start.submits) / steps : 0,
    },
  };
}
