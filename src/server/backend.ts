/**
 * The seam between the HTTP side (app.ts: OpenAI's protocol) and whatever runs the model: one
 * process with a bounded queue in front of a VisionLLM (local-backend.ts), or BullMQ jobs that
 * workers on other machines take (redis-backend.ts, worker.ts). Requests and results are plain
 * JSON, so they travel through Redis unchanged.
 */
import type { ChatTurn } from '../model/chat-template.js';

/** One chat completion, as the server understood the OpenAI request: checked, plain JSON. */
export interface CompletionRequest {
  /** 'chatcmpl-...': the response's id and the job's. */
  id: string;
  /** The last user message's text, and the earlier turns (the image belongs to the first). */
  prompt: string;
  history: ChatTurn[];
  /** The image of the conversation's first user message, encoded (PNG, JPEG, ...) as base64. */
  imageBase64?: string;
  maxTokens: number;
  /** 0: greedy (OpenAI's default is 1; ours, like the official evaluation's, is 0). */
  temperature: number;
  topP: number;
  seed: number;
  /** The answer ends before the first of these (none of it is returned). */
  stop: string[];
}

export type FinishReason = 'stop' | 'length';

/** The super link's results in JSON: boxes, masks (RLE), keypoints, generated images as base64 PNG. */
export interface DecoderResultJson {
  decoder: string;
  task: string;
  [field: string]: unknown;
}

export interface CompletionResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** One per decoder the answer's routing blocks went to, in answer order. */
  results: DecoderResultJson[];
}

export interface SubmitOptions {
  /** Each newly final piece of the answer's text, in order (streaming). */
  onText?: (text: string) => void;
  /** The client went away or the request timed out: a queued request leaves the queue, a running one stops. */
  signal: AbortSignal;
}

/** The queue is full: answered 429 with Retry-After. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(
    readonly capacity: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`the server's queue is full (${capacity} requests); retry after ${retryAfterSeconds} s`);
  }
}

export interface Backend {
  /** The model's name for /v1/models, e.g. the checkpoint folder's name. */
  readonly modelName: string;
  /** Runs the request (after those queued before it); rejects with QueueFullError, or the abort reason. */
  submit(request: CompletionRequest, options: SubmitOptions): Promise<CompletionResult>;
  /** Requests waiting or running. */
  depth(): number | Promise<number>;
  /** For /health: the adapter, the model, anything else worth a look. */
  health(): Promise<Record<string, unknown>>;
  /** Stops taking requests, lets running ones finish within `graceMs` (then cancels them), frees the GPU. */
  close(graceMs: number): Promise<void>;
}
