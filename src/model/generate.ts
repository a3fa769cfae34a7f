/**
 * Autoregressive generation with the KV cache: one prefill over the prompt's embeddings, then one
 * position per step. Each step's work (embedding, every layer, the head, sampling) is recorded in
 * one go, and only the chosen token id crosses to the CPU.
 *
 * Steps are pipelined: the sampled id stays on the GPU and feeds the next step's embedding, so
 * step t+1 is recorded and submitted before token t has been read back. The GPU never waits for
 * the CPU's read-back, recording overlaps the GPU's work, and when token t turns out to end the
 * answer, the speculative step is dropped (its cache row truncated).
 */
import type { StepCapture } from '../engine/capture.js';
import type { HostArray } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { concat, slice } from '../ops/copy.js';
import { binary } from '../ops/elementwise.js';
import { sampleTokens } from '../ops/sample.js';
import type { StreamDecoder } from '../tokenizer/tokenizer.js';
import type { Llama, LlamaCache } from './llama.js';
import { SeededRandom } from '../engine/random.js';

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
  /** The stop ids cannot be chosen for this many first tokens (HF generate's min_new_tokens; default 0). */
  minNewTokens?: number;
  /** Called with each token's newly final text (may be '') as it is generated. */
  onToken?: (text: string, id: number) => void;
  /** Turns ids into text for onToken. */
  decoder?: StreamDecoder;
  signal?: AbortSignal;
  /**
   * Asked about every generated token: embeddings [N, d] to splice in after it (a super-link
   * routing token's queries), or null. The step that feeds the token then runs 1 + N positions.
   */
  expand?: (id: number) => Tensor | null;
  /** Receives the final hidden states [N, d] of the spliced positions; the tensor is the callee's. */
  onSpliced?: (id: number, hidden: Tensor) => void;
  /** Emit these tokens instead of sampling (teacher forcing through the decoding path). */
  forcedIds?: readonly number[];
  /**
   * Replay a captured decoding step instead of recording each one (default true): the same
   * dispatches, without the ops' host work (see src/engine/capture.ts). Off, for comparisons.
   */
  replay?: boolean;
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
  /** Bind groups made per decode step: 0 once warm, when every step binds the same buffers. */
  bindGroupsPerToken: number;
  /** Decode steps issued by replaying a captured step rather than recorded by the ops. */
  replayedSteps: number;
}

export interface GenerationResult {
  tokenIds: number[];
  finishReason: FinishReason;
  timings: GenerationTimings;
}

/** A recorded step: the chosen id on the GPU, and its read-back in flight. */
interface PendingStep {
  id: Tensor;
  value: Promise<HostArray>;
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
  const minNew = options.minNewTokens ?? 0;
  if (!Number.isInteger(minNew) || minNew < 0) throw new RangeError(`generate: minNewTokens must be a non-negative integer, got ${minNew}`);
  const rng = new SeededRandom(options.seed ?? 0);
  const sampling = { temperature: options.temperature ?? 0, topK: options.topK, topP: options.topP };
  const ids: number[] = [];
  const counters = engine.recorder.counters;

  /** Records T positions and the choice of the next token; returns the id, still on the GPU. */
  const draw = () => rng.next();
  /** [1, vocab]: -1e30 at the stop ids, for the steps before minNewTokens (made when first needed). */
  let stopMask: Tensor | null = null;
  const suppressStops = (logits: Tensor): Tensor => {
    if (!stopMask) {
      const mask = new Float32Array(logits.shape[1]!);
      for (const id of stop) if (id < mask.length) mask[id] = -1e30;
      stopMask = engine.tensor(mask, [1, mask.length], 'f32', { persistent: true });
    }
    return binary('add', logits, stopMask, { dtype: 'f32' });
  };
  /** Whether the step that chooses token number `index` (0-based) may not stop. */
  const masked = (index: number) => index < minNew;
  /** `inspect` sees the logits before sampling (the first step's are checked for NaN/Inf). */
  const choose = (embeds: Tensor, noStop = false, inspect?: (logits: Tensor) => void): Tensor =>
    engine.scope(() => {
      const logits = llm.nextTokenLogits(embeds, cache);
      inspect?.(logits);
      return sampleTokens(noStop ? suppressStops(logits) : logits, draw, sampling);
    });
  /** Decode steps fed by a token id that is still on the GPU: recorded once, then replayed. */
  const decodeSteps = new DecodeSteps(engine, (id) => engine.scope(() => choose(llm.embed(id))), options.replay ?? true);
  /** Records a step fed by a known id, with spliced queries after it when given. */
  const explicitStep = (id: number, queries: Tensor | null, noStop: boolean): Tensor =>
    engine.scope(() => {
      const token = llm.embed([id]);
      if (!queries) return choose(token, noStop);
      const { hidden, logits } = llm.forwardWithLogits(concat([token, queries], 0), cache);
      options.onSpliced?.(id, engine.keep(slice(hidden, 0, 1, hidden.shape[0]!)));
      return sampleTokens(noStop ? suppressStops(logits) : logits, draw, sampling);
    });
  const explicitFedStep = (fedBy: Tensor): Tensor => engine.scope(() => choose(llm.embed(fedBy), true));
  const forced = options.forcedIds;

  const t0 = performance.now();
  let current: PendingStep | null = null;
  let next: PendingStep | null = null;
  let firstFinite: Promise<boolean> | null = null;
  if (maxNew > 0) {
    // The first step also reads its logits back: weights that make NaN/Inf are caught there, by name.
    const id = choose(promptEmbeds, masked(0), (logits) => {
      firstFinite = handled(logits.toArray().then((v) => v.every(Number.isFinite)));
    });
    current = { id, value: handled(id.read()) };
  }
  let prefillMs = 0;
  let finishReason: FinishReason = 'length';
  let recordMs = 0;
  let stepsRecorded = 0;
  let stepDispatches = 0;
  let stepBindGroups = 0;
  let start = { time: 0, submits: 0 };
  /** Records a step and the read-back of its id as one submission, queued behind the current step. */
  const record = (fn: () => Tensor): PendingStep => {
    const recordStart = performance.now();
    const before = { dispatches: counters.dispatches, bindGroups: counters.bindGroupsCreated };
    const id = engine.batch(fn);
    const value = handled(id.read()); // submits: the GPU need not wait for us
    recordMs += performance.now() - recordStart;
    stepDispatches += counters.dispatches - before.dispatches;
    stepBindGroups += counters.bindGroupsCreated - before.bindGroups;
    stepsRecorded += 1;
    return { id, value };
  };
  try {
    while (current) {
      // Speculate: record the next step, fed by the id still on the GPU, before this token is known.
      // It is dropped if the token ends the answer or needs queries spliced after it.
      next = null;
      if (!forced && ids.length + 1 < maxNew && cache.length < cache.maxLength && !options.signal?.aborted) {
        const fedBy = current.id;
        // A step that may not stop is recorded with its mask, outside the captured (unmasked) step.
        next = masked(ids.length + 1) ? record(() => explicitFedStep(fedBy)) : record(() => decodeSteps.next(fedBy));
      }
      const sampled = (await current.value)[0]!;
      current.id.dispose();
      current = null;
      // argmax over NaN logits finds no maximum and answers 0xFFFFFFFF: any id off the vocabulary.
      const position = cache.length - (next ? 1 : 0) - 1;
      if (ids.length === 0 && !(await firstFinite!)) throw nonFinite(position);
      if (!(sampled < llm.config.vocabSize)) throw nonFinite(position);
      if (ids.length === 0) {
        prefillMs = performance.now() - t0;
        start = { time: performance.now(), submits: counters.submits };
      }
      const id = forced ? forced[ids.length]! : sampled;
      ids.push(id);
      if (options.onToken) options.onToken(options.decoder?.push(id) ?? '', id);
      const queries = options.expand?.(id) ?? null;
      // Positions the step feeding this token needs: itself and its spliced queries.
      const settled = cache.length - (next ? 1 : 0);
      const needed = 1 + (queries ? queries.shape[0]! : 0);
      const reason: FinishReason | null = stop.has(id)
        ? 'stop'
        : ids.length >= maxNew || (forced && ids.length >= forced.length)
          ? 'length'
          : options.signal?.aborted
            ? 'aborted'
            : settled + needed > cache.maxLength
              ? 'context'
              : null;
      if (next && (reason || queries)) {
        cache.truncate(cache.length - 1); // the speculative step's position
        next.id.dispose(); // its read-back is never awaited; a GPU error surfaces at the next read
        next = null;
      }
      if (reason) {
        finishReason = reason;
        queries?.dispose();
        break;
      }
      try {
        next ??= record(() => explicitStep(id, queries, masked(ids.length)));
      } finally {
        queries?.dispose();
      }
      current = next;
      next = null;
    }
  } finally {
    // Steps still in flight when a callback, a read or the engine failed.
    for (const step of [current, next]) if (step && !step.id.isDisposed) step.id.dispose();
    decodeSteps.dispose();
    (stopMask as Tensor | null)?.dispose();
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
      recordMsPerToken: stepsRecorded ? recordMs / stepsRecorded : 0,
      dispatchesPerToken: stepsRecorded ? stepDispatches / stepsRecorded : 0,
      submitsPerToken: steps ? (counters.submits - start.submits) / steps : 0,
      bindGroupsPerToken: stepsRecorded ? stepBindGroups / stepsRecorded : 0,
      replayedSteps: decodeSteps.replayed,
    },
  };
}

/**
 * Decoding steps fed by a token id on the GPU. Every step records the same dispatches, so one is
 * captured and the following ones replay it (Engine.capture), skipping the ops' host work; a step
 * the capture no longer fits (its hooks decline) is recorded, and captured, afresh. The captured
 * step reads its id from its own `feed` tensor, so each replay first copies the previous id there;
 * it writes the same `out` tensor every time, and queue order puts each step's read-back before the
 * next replay overwrites it.
 */
class DecodeSteps {
  private captured: { capture: StepCapture; feed: Tensor; out: Tensor } | null = null;
  /** Steps issued by replay. */
  replayed = 0;

  constructor(
    private readonly engine: Engine,
    private readonly record: (id: Tensor) => Tensor,
    private readonly replay: boolean,
  ) {}

  /** The next step's chosen id (a tensor the caller disposes), still on the GPU. */
  next(fedBy: Tensor): Tensor {
    if (!this.replay) return this.record(fedBy);
    const c = this.captured;
    if (c) {
      this.engine.copyBytes(fedBy, 0, c.feed, 0, fedBy.byteLength);
      if (c.capture.replay()) {
        this.replayed += 1;
        return c.out.reshape(c.out.shape);
      }
      this.dispose();
    }
    const feed = this.engine.empty(fedBy.shape, fedBy.dtype);
    this.engine.copyBytes(fedBy, 0, feed, 0, fedBy.byteLength);
    const { result: out, capture } = this.engine.capture(() => this.record(feed));
    this.captured = { capture, feed, out };
    return out.reshape(out.shape);
  }

  dispose(): void {
    if (!this.captured) return;
    const { capture, feed, out } = this.captured;
    capture.dispose();
    feed.dispose();
    out.dispose();
    this.captured = null;
  }
}

/** A promise whose rejection is never reported as unhandled: awaited later, or dropped on purpose. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

function nonFinite(position: number): Error {
  return new Error(`generate: the model produced NaN/Inf at position ${position}; check the weights' dtype (f16 overflows?) and values`);
}
