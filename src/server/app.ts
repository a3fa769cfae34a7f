/**
 * The HTTP side of `visionllm serve`: OpenAI's chat completions (plain and streamed) in front of a
 * Backend, the model list, health, Prometheus metrics and the page. Every request body is checked
 * against a JSON schema; every error is an OpenAI error object. A completion is cancelled when its
 * client goes away or it outlives the timeout, whether it still waits in the queue or runs.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { loadSharp } from '../image/decode.js';
import type { Backend, CompletionResult } from './backend.js';
import { ServerMetrics } from './metrics.js';
import {
  CHAT_COMPLETION_SCHEMA, CLIENT_GONE, closingChunks, completionChunk, completionRequest, completionResponse, errorBody, httpError,
  type ChatCompletionBody, type HttpError, type ResponseHead,
} from './openai.js';
import { registerPage } from './page-route.js';
import { InvalidRequestError } from './run-completion.js';

export interface AppOptions {
  backend: Backend;
  /** When set, /v1/* requires `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body (default 32 MiB: a few photos as base64). */
  maxBodyBytes?: number;
  /** A completion not answered by then ends with 504 (default 120 s). */
  timeoutMs?: number;
  logger?: boolean;
}

export const DEFAULT_MAX_BODY_BYTES = 32 * 2 ** 20;
export const DEFAULT_TIMEOUT_MS = 120_000;

/** The completion outlived the server's timeout (answered 504). */
export class CompletionTimeoutError extends Error {
  override name = 'CompletionTimeoutError';
  constructor(timeoutMs: number) {
    super(`the request took longer than the server's limit of ${timeoutMs / 1000} s (--timeout) and was cancelled`);
  }
}

/** The client closed its connection before the answer: nobody reads what comes next. */
class ClientGoneError extends Error {
  override name = 'ClientGoneError';
}

const COMPLETIONS = '/v1/chat/completions';

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { backend } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: maxBodyBytes,
    // Fastify's defaults would drop unknown fields and turn "5" into 5: a request is checked, not repaired.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allowUnionTypes: true } },
  });
  // Only JSON is read: a text/plain body would otherwise reach the schema as a string.
  app.removeContentTypeParser('text/plain');
  const metrics = new ServerMetrics(backend);
  const started = Math.floor(Date.now() / 1000);
  /** A streamed completion's real outcome: its headers said 200 before the error came. */
  const outcomes = new WeakMap<FastifyRequest, number>();

  app.setErrorHandler((err, _request, reply) => sendError(reply, httpError(err, maxBodyBytes)));
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody(`no route for ${request.method} ${request.url}`, 'invalid_request_error', null, 'not_found'));
  });

  // Counted when the connection is done with the request, whatever ended it (before auth: a 401 counts too).
  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.url !== COMPLETIONS) return;
    const start = performance.now();
    reply.raw.once('close', () => {
      const status = reply.raw.writableFinished ? (outcomes.get(request) ?? reply.raw.statusCode) : CLIENT_GONE;
      metrics.request(status, (request.body as ChatCompletionBody | undefined)?.stream === true, (performance.now() - start) / 1000);
    });
  });
  if (options.apiKey !== undefined) app.addHook('onRequest', apiKeyCheck(options.apiKey));

  app.get('/health', async (_request, reply) => {
    try {
      return { status: 'ok', model: backend.modelName, queueDepth: await backend.depth(), ...(await backend.health()) };
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', model: backend.modelName, error: (err as Error).message });
    }
  });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  const model = { id: backend.modelName, object: 'model', created: started, owned_by: 'visionllm-webgpu' };
  app.get('/v1/models', async () => ({ object: 'list', data: [model] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request, reply) => {
    if (request.params.id === model.id) return model;
    return reply.code(404).send(errorBody(`no model '${request.params.id}'; this server serves '${model.id}'`, 'invalid_request_error', 'model', 'model_not_found'));
  });

  app.post(COMPLETIONS, { schema: { body: CHAT_COMPLETION_SCHEMA } }, async (request, reply) => {
    const body = request.body as ChatCompletionBody;
    const { request: completion, imageField } = completionRequest(body);
    if (completion.imageBase64 !== undefined) await checkImage(completion.imageBase64, imageField!);
    const head: ResponseHead = { id: completion.id, created: Math.floor(Date.now() / 1000), model: backend.modelName };
    const cancel = cancellation(request, reply, timeoutMs);
    const start = performance.now();
    try {
      if (!body.stream) {
        const result = await untilAborted(backend.submit(completion, { signal: cancel.signal }), cancel.signal);
        metrics.tokens(result.promptTokens, result.completionTokens);
        return completionResponse(head, result);
      }
      const events = new EventStream(reply, head);
      try {
        const onText = (text: string) => {
          if (!events.started) metrics.firstText((performance.now() - start) / 1000);
          events.send(completionChunk(head, { content: text }));
        };
        const result: CompletionResult = await untilAborted(backend.submit(completion, { signal: cancel.signal, onText }), cancel.signal);
        metrics.tokens(result.promptTokens, result.completionTokens);
        for (const chunk of closingChunks(head, result, body.stream_options?.include_usage === true)) events.send(chunk);
      } catch (err) {
        // Before the first chunk the client still gets a plain error response with its status.
        if (!events.started) throw err;
        const error = httpError(err, maxBodyBytes);
        outcomes.set(request, error.status);
        events.send(error.body);
      }
      events.end();
      return reply;
    } finally {
      cancel.dispose();
    }
  });

  registerPage(app);
  return app;
}

/**
 * Server-sent events in OpenAI's format, started on the first chunk (so that a request refused
 * before any text gets its own status): the role chunk first, `data: [DONE]` last.
 */
class EventStream {
  started = false;
  private ended = false;

  constructor(
    private readonly reply: FastifyReply,
    private readonly head: ResponseHead,
  ) {}

  send(chunk: object): void {
    if (!this.started) this.start();
    this.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  end(): void {
    if (!this.started) this.start();
    this.write('data: [DONE]\n\n');
    this.ended = true;
    this.reply.raw.end();
  }

  private start(): void {
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    this.write(`data: ${JSON.stringify(completionChunk(this.head, { role: 'assistant' }))}\n\n`);
  }

  /** Text may still arrive from a cancelled run after the stream ended. */
  private write(text: string): void {
    if (!this.ended && !this.reply.raw.destroyed) this.reply.raw.write(text);
  }
}

/** Aborted when the client goes away (its connection closes before the response is done) or the timeout passes. */
function cancellation(request: FastifyRequest, reply: FastifyReply, timeoutMs: number): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new CompletionTimeoutError(timeoutMs)), timeoutMs);
  const onClose = () => {
    if (!reply.raw.writableFinished) controller.abort(new ClientGoneError('the client closed the connection'));
  };
  reply.raw.once('close', onClose);
  // Gone while the body was read or the image checked: 'close' has been and gone.
  if (request.raw.socket?.destroyed) onClose();
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
    },
  };
}

/** `work`, or the abort's reason as soon as `signal` aborts (a backend may take a while to stop). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * A look at the image's header, so that bytes that are no image are refused at once rather than
 * after their turn in the queue (the backend decodes the whole image, and says if the rest is bad).
 */
async function checkImage(base64: string, field: string): Promise<void> {
  const sharp = await loadSharp();
  try {
    await sharp(Buffer.from(base64, 'base64')).metadata();
  } catch (err) {
    throw new InvalidRequestError(`${field}: not a readable image (${(err as Error).message})`, field, 'invalid_image');
  }
}

function apiKeyCheck(apiKey: string) {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  const expected = digest(apiKey);
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (!request.url.startsWith('/v1/')) return;
    const given = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '')?.[1] ?? '';
    // Digests of equal length, compared in constant time: the key leaks nothing through timing.
    if (timingSafeEqual(digest(given), expected)) return;
    const message = given ? 'incorrect API key' : 'missing API key: send the header Authorization: Bearer <key>';
    sendError(reply.header('www-authenticate', 'Bearer'), { status: 401, body: errorBody(message, 'invalid_request_error', null, 'invalid_api_key') });
    return reply;
  };
}

function sendError(reply: FastifyReply, error: HttpError): void {
  reply.code(error.status);
  if (error.headers) reply.headers(error.headers);
  reply.send(error.body);
}
