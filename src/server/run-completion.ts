/**
 * One CompletionRequest run on a loaded model, for whichever backend holds it (local-backend.ts in
 * this process, worker.ts behind Redis): the image decoded, the chat run with the request's
 * sampling, stop strings applied to the streamed text, the decoders' outputs made JSON.
 */
import { ImageDecodeError, decodeImage } from '../image/decode.js';
import type { RgbImage } from '../image/gpu-image.js';
import type { ChatResult, VisionLLM } from '../model/vision-llm.js';
import type { CompletionRequest, CompletionResult, FinishReason, SubmitOptions } from './backend.js';
import { decoderResultJson } from './decoder-json.js';

/**
 * The request itself is at fault (an unreadable image, a prompt longer than the context): the
 * server answers 400. Told apart by its name, which survives a trip through a job queue.
 */
export class InvalidRequestError extends Error {
  override name = 'InvalidRequestError';
  constructor(
    message: string,
    /** The request field at fault, OpenAI's `param`. */
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export async function runCompletion(model: VisionLLM, request: CompletionRequest, options: SubmitOptions): Promise<CompletionResult> {
  options.signal.throwIfAborted();
  const image = request.imageBase64 === undefined ? undefined : await readImage(request.imageBase64);
  const text = new AnswerText(request.stop, options.onText);
  // A stop string ends the generation the way a client's abort does: at the token that completed it.
  const stopped = new AbortController();
  let result: ChatResult;
  try {
    result = await model.chat({
      prompt: request.prompt,
      history: request.history,
      image,
      maxNewTokens: request.maxTokens,
      temperature: request.temperature,
      topP: request.topP,
      seed: request.seed,
      signal: AbortSignal.any([options.signal, stopped.signal]),
      onToken: (piece) => {
        if (text.push(piece)) stopped.abort();
      },
    });
  } catch (err) {
    throw options.signal.aborted ? options.signal.reason : requestFault(err) ?? err;
  }
  try {
    // An abort lets the generation end early with what it has; the client asked for nothing of it.
    options.signal.throwIfAborted();
    const finishReason: FinishReason = text.stopped || result.finishReason === 'stop' ? 'stop' : 'length';
    return {
      text: text.finish(),
      finishReason,
      promptTokens: result.timings.promptTokens,
      completionTokens: result.tokenIds.length,
      results: await Promise.all(result.outputs.map(decoderResultJson)),
    };
  } finally {
    result.dispose();
  }
}

/** Decoded here rather than by chat(), so that a bad image is the request's fault and says so. */
async function readImage(base64: string): Promise<RgbImage> {
  try {
    return await decodeImage(Buffer.from(base64, 'base64'), { name: 'image_url' });
  } catch (err) {
    throw requestFault(err) ?? err;
  }
}

/** chat()'s refusals that the request caused, as InvalidRequestError; undefined for anything else. */
function requestFault(err: unknown): InvalidRequestError | undefined {
  if (err instanceof ImageDecodeError) return new InvalidRequestError(err.message, 'messages', 'invalid_image');
  if (err instanceof RangeError && /^chat: the prompt( and answer)? needs? /.test(err.message)) {
    return new InvalidRequestError(err.message.replace(/^chat: /, ''), 'messages', 'context_length_exceeded');
  }
  // An image sent to a text-only checkpoint.
  if (err instanceof Error && /^chat: this checkpoint .* has no vision encoder/.test(err.message)) return new InvalidRequestError(err.message.replace(/^chat: /, ''), 'messages');
  return undefined;
}

/**
 * The answer's text as it streams: leading whitespace dropped and trailing whitespace held back
 * (chat() trims its text, and the stream must add up to it), and the end of the text held back
 * while it could be the start of a stop string. The final text is what was streamed plus the rest.
 */
export class AnswerText {
  private text = '';
  private sent = 0;
  stopped = false;

  constructor(
    private readonly stops: readonly string[],
    private readonly onText?: (text: string) => void,
  ) {}

  /** Adds a token's text; true once a stop string has appeared (the text ends before it). */
  push(piece: string): boolean {
    if (this.stopped) return true;
    this.text = (this.text + piece).trimStart();
    const at = this.firstStop();
    if (at >= 0) {
      this.text = this.text.slice(0, at);
      this.stopped = true;
    }
    this.send(this.text.length - this.heldBack());
    return this.stopped;
  }

  /** The whole answer, its last piece sent. */
  finish(): string {
    this.text = this.text.trimEnd();
    this.send(this.text.length);
    return this.text;
  }

  private send(upTo: number): void {
    if (upTo <= this.sent) return;
    const piece = this.text.slice(this.sent, upTo);
    this.sent = upTo;
    this.onText?.(piece);
  }

  private firstStop(): number {
    const found = this.stops.map((s) => this.text.indexOf(s)).filter((at) => at >= 0);
    return found.length ? Math.min(...found) : -1;
  }

  /** Characters at the end that may not be sent yet: a stop string's beginning, and the whitespace before it or at the end. */
  private heldBack(): number {
    let held = 0;
    if (!this.stopped) {
      for (const stop of this.stops) {
        for (let n = Math.min(stop.length - 1, this.text.length); n > held; n--) {
          if (this.text.endsWith(stop.slice(0, n))) {
            held = n;
            break;
          }
        }
      }
    }
    const kept = this.text.slice(0, this.text.length - held);
    return held + kept.length - kept.trimEnd().length;
  }
}
