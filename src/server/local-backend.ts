/**
 * The model in this process behind a bounded queue: requests run one at a time in arrival order
 * (a model has one KV cache), at most `queueSize` wait, and one that is cancelled while it waits
 * leaves the line without ever running.
 */
import path from 'node:path';
import { VisionLLM } from '../model/vision-llm.js';
import { Turns } from '../model/turns.js';
import { QueueFullError, type Backend, type CompletionRequest, type CompletionResult, type SubmitOptions } from './backend.js';
import { runCompletion } from './run-completion.js';

/** The backend stopped taking requests (answered 503). */
export class ShuttingDownError extends Error {
  override name = 'ShuttingDownError';
}

export interface LocalBackendOptions {
  /** Requests that may wait while one runs; the next one is refused with QueueFullError. */
  queueSize: number;
  modelName: string;
  /** Whether close() disposes the model (default true; tests share one model between backends). */
  ownsModel?: boolean;
}

export class LocalBackend implements Backend {
  readonly modelName: string;
  private readonly turns = new Turns();
  /** Aborted when close()'s grace period is over: the running request stops at its next token. */
  private readonly closing = new AbortController();
  private closed = false;
  /** Seconds a request has taken, averaged (exponentially), for Retry-After. */
  private averageSeconds = 0;

  constructor(
    readonly model: VisionLLM,
    private readonly options: LocalBackendOptions,
  ) {
    if (!(Number.isInteger(options.queueSize) && options.queueSize >= 1)) throw new RangeError(`LocalBackend: queueSize must be an integer >= 1, got ${options.queueSize}`);
    this.modelName = options.modelName;
  }

  /** Loads the checkpoint in `weights` (named after its folder unless `modelName` is given). */
  static async create(options: { weights: string; queueSize: number; modelName?: string }): Promise<LocalBackend> {
    const model = await VisionLLM.load(options.weights);
    return new LocalBackend(model, { queueSize: options.queueSize, modelName: options.modelName ?? path.basename(path.resolve(options.weights)) });
  }

  submit(request: CompletionRequest, options: SubmitOptions): Promise<CompletionResult> {
    if (this.closed) return Promise.reject(new ShuttingDownError('the server is shutting down'));
    if (this.turns.running && this.turns.queued >= this.options.queueSize) {
      return Promise.reject(new QueueFullError(this.options.queueSize, this.retryAfterSeconds()));
    }
    const signal = AbortSignal.any([options.signal, this.closing.signal]);
    return this.turns.run(async () => {
      const start = performance.now();
      const result = await runCompletion(this.model, request, { onText: options.onText, signal });
      const seconds = (performance.now() - start) / 1000;
      this.averageSeconds = this.averageSeconds ? 0.8 * this.averageSeconds + 0.2 * seconds : seconds;
      return result;
    }, signal);
  }

  depth(): number {
    return this.turns.queued + (this.turns.running ? 1 : 0);
  }

  async health(): Promise<Record<string, unknown>> {
    const { summary } = this.model.engine.gpu;
    return {
      adapter: summary.description || summary.device,
      kernelProfile: this.model.engine.profile,
      model: this.modelName,
      kind: this.model.config.kind,
      decoders: this.model.decoderNames,
      queueSize: this.options.queueSize,
    };
  }

  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const idle = this.turns.close(new ShuttingDownError('the server shut down before the request started'));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([idle, graceOver]);
    clearTimeout(timer);
    this.closing.abort(new ShuttingDownError('the server shut down before the request finished'));
    await idle;
    if (this.options.ownsModel ?? true) await this.model.dispose();
  }

  /** The wait for a free turn, guessed from the requests ahead and their average time. */
  private retryAfterSeconds(): number {
    return Math.min(600, Math.max(1, Math.ceil(this.averageSeconds * (this.turns.queued + 1))));
  }
}
