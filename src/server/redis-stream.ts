/**
 * One answer's text, stitched from the deltas of a job's attempts so that the client sees each
 * character once.
 *
 * A job a dead worker held is run again from the start by another worker, and the HTTP side
 * cannot take back text it already streamed. Each delta carries its attempt and its offset in that
 * attempt's answer; only the newest attempt is followed, and its deltas skip what the client
 * already has. Greedy decoding (and seeded sampling) makes the retry's answer the same text, which
 * is checked rather than assumed: a retry that disagrees with what was sent fails the request
 * instead of splicing two answers together.
 *
 * Pub/sub drops messages while a connection is down: a delta that starts past what was sent is
 * held back rather than leaving a hole, and the job's result (which holds the whole answer) sends
 * whatever the stream missed.
 */
import type { TextDelta } from './redis-queue.js';

export class DivergentRetryError extends Error {
  override name = 'DivergentRetryError';
  constructor(readonly attempt: number) {
    super(`attempt ${attempt} of the job answered differently from the text already streamed to the client`);
  }
}

export class AnswerStream {
  /** The text the client has been sent. */
  private sent = '';
  private attempt = -1;
  /** A failure the request should report (the stream itself keeps quiet from then on). */
  private failure: Error | null = null;

  constructor(private readonly onText: (text: string) => void) {}

  get error(): Error | null {
    return this.failure;
  }

  /** A delta from the worker: forwards the part of it the client has not seen. */
  accept(delta: TextDelta): void {
    if (this.failure || delta.attempt < this.attempt) return;
    this.attempt = delta.attempt;
    const end = delta.offset + delta.text.length;
    if (delta.offset > this.sent.length || end <= this.sent.length) {
      // A gap (lost messages: the result fills it) or text already sent; either way the overlap must agree.
      this.check(delta.offset, delta.text);
      return;
    }
    this.check(delta.offset, delta.text.slice(0, this.sent.length - delta.offset));
    this.send(delta.text.slice(this.sent.length - delta.offset));
  }

  /** The job's final answer: sends what the deltas did not. */
  finish(text: string): void {
    this.check(0, text.slice(0, this.sent.length));
    if (this.sent.length > text.length) this.fail();
    if (!this.failure) this.send(text.slice(this.sent.length));
  }

  private check(offset: number, text: string): void {
    const overlap = this.sent.slice(offset, offset + text.length);
    if (overlap !== text.slice(0, overlap.length)) this.fail();
  }

  private fail(): void {
    this.failure ??= new DivergentRetryError(this.attempt);
  }

  private send(text: string): void {
    if (text === '' || this.failure) return;
    this.sent += text;
    this.onText(text);
  }
}
