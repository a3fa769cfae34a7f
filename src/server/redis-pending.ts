/**
 * A request of the API role whose job has not ended: its text stream and its one outcome. Several
 * things may end it (the job's events, a poll of its state, the client, a timeout, close()), in any
 * order; the first one wins and the others are no-ops.
 */
import type { CompletionResult } from './backend.js';
import { AnswerStream } from './redis-stream.js';

export class PendingAnswer {
  readonly stream: AnswerStream;
  readonly answer: Promise<CompletionResult>;
  private resolve!: (result: CompletionResult) => void;
  private reject!: (err: unknown) => void;
  private ended = false;

  constructor(
    onText: ((text: string) => void) | undefined,
    /** Called when the request ends without its job: the job is to be taken out of line or stopped. */
    private readonly cancelJob: () => void,
  ) {
    this.stream = new AnswerStream((text) => onText?.(text));
    this.answer = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Whoever awaits `answer` sees the failure; this only keeps an unawaited one from crashing the process.
    this.answer.catch(() => {});
  }

  get done(): boolean {
    return this.ended;
  }

  /** Resolves when the request has ended, either way. */
  get settled(): Promise<unknown> {
    return this.answer.catch(() => {});
  }

  /** The job completed: the stream gets what it missed, unless a retry contradicted it. */
  complete(result: CompletionResult): void {
    if (this.end()) return;
    try {
      this.stream.finish(result.text);
    } catch (err) {
      // A throwing onText (the HTTP side's stream) must still end the request.
      this.reject(err);
      return;
    }
    if (this.stream.error) this.reject(this.stream.error);
    else this.resolve(result);
  }

  /** The job failed for good. */
  fail(err: Error): void {
    if (!this.end()) this.reject(err);
  }

  /** The request ends before its job (the client went away, a timeout, a divergent retry): the job is cancelled. */
  abandon(reason: unknown): void {
    if (this.end()) return;
    this.reject(reason instanceof Error ? reason : new Error(String(reason)));
    this.cancelJob();
  }

  /** A delta from the worker; a retry that contradicts the text sent abandons the request. */
  accept(...args: Parameters<AnswerStream['accept']>): void {
    if (this.ended) return;
    this.stream.accept(...args);
    if (this.stream.error) this.abandon(this.stream.error);
  }

  /** True if the request had already ended. */
  private end(): boolean {
    const was = this.ended;
    this.ended = true;
    return was;
  }
}
