/**
 * OpenAI's chat completions protocol, as far as this server speaks it: the request's JSON schema
 * (fastify validates every request against it), the request made into a CompletionRequest, the
 * response and stream chunk objects, and every error a request can end with as an HTTP status and
 * OpenAI's error object (errors are told apart by name: a backend's may have crossed Redis).
 * Nothing here runs the model.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyError } from 'fastify';
import type { ChatTurn } from '../model/chat-template.js';
import type { CompletionRequest, CompletionResult, DecoderResultJson } from './backend.js';
import { InvalidRequestError } from './run-completion.js';

/** max_tokens when the request gives none (generate()'s default). */
export const DEFAULT_MAX_TOKENS = 256;

const TEXT = { type: 'string' } as const;

const CONTENT_PART = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { enum: ['text', 'image_url'] },
    text: TEXT,
    image_url: {
      type: 'object',
      required: ['url'],
      additionalProperties: false,
      properties: { url: TEXT, detail: { enum: ['auto', 'low', 'high'] } },
    },
  },
  allOf: [
    { if: { properties: { type: { const: 'text' } } }, then: { required: ['text'] } },
    { if: { properties: { type: { const: 'image_url' } } }, then: { required: ['image_url'] } },
  ],
} as const;

const MESSAGE = {
  type: 'object',
  required: ['role', 'content'],
  additionalProperties: false,
  properties: {
    role: { enum: ['system', 'user', 'assistant'] },
    // A string, or parts; `items` applies to the array form only.
    content: { type: ['string', 'array'], items: CONTENT_PART },
    name: TEXT,
  },
} as const;

/**
 * The body of POST /v1/chat/completions. Fields OpenAI's clients send that change nothing here
 * (user, n: 1, zero penalties, logprobs: false, a text response_format) are accepted; any other
 * field is refused, so that a setting the server would ignore never looks honoured.
 */
export const CHAT_COMPLETION_SCHEMA = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    model: TEXT,
    messages: { type: 'array', minItems: 1, items: MESSAGE },
    max_tokens: { type: 'integer', minimum: 1 },
    max_completion_tokens: { type: 'integer', minimum: 1 },
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    seed: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
    stop: { type: ['string', 'array'], minLength: 1, maxItems: 4, items: { type: 'string', minLength: 1 } },
    stream: { type: 'boolean' },
    stream_options: { type: 'object', additionalProperties: false, properties: { include_usage: { type: 'boolean' } } },
    n: { type: 'integer', minimum: 1 },
    user: TEXT,
    frequency_penalty: { type: 'number' },
    presence_penalty: { type: 'number' },
    logprobs: { type: 'boolean' },
    response_format: { type: 'object', required: ['type'], additionalProperties: false, properties: { type: { enum: ['text'] } } },
  },
} as const;

type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string; detail?: string } };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
  name?: string;
}

/** A body that passed CHAT_COMPLETION_SCHEMA. */
export interface ChatCompletionBody {
  model?: string;
  messages: ChatMessage[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  n?: number;
  user?: string;
  frequency_penalty?: number;
  presence_penalty?: number;
  logprobs?: boolean;
}

/** Text the prompt may not hold: the template's own markers, which only an image or regions may fill. */
const RESERVED = ['<image>', '<im_patch>', '<region>'];

/**
 * The checked request the backend runs, and the field its image came in (for errors about it).
 * System messages are accepted and left out: the checkpoint was trained with the Vicuna
 * template's fixed system prompt, which every prompt keeps.
 */
export function completionRequest(body: ChatCompletionBody): { request: CompletionRequest; imageField?: string } {
  refuseUnsupported(body);
  const turns = body.messages.map((m, i) => ({ ...m, index: i })).filter((m) => m.role !== 'system');
  const last = turns.at(-1);
  if (!last || last.role !== 'user') throw new InvalidRequestError('messages: the last message (system messages aside) must be a user message', 'messages');
  let imageBase64: string | undefined;
  let imageField: string | undefined;
  const texts = turns.map((m, k) => {
    const expected = k % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== expected) {
      throw new InvalidRequestError(`messages[${m.index}]: expected a ${expected} message (user and assistant messages alternate, starting with user), got ${m.role}`, `messages[${m.index}].role`);
    }
    const parts = typeof m.content === 'string' ? [{ type: 'text', text: m.content } as const] : m.content;
    const text: string[] = [];
    parts.forEach((part, j) => {
      const where = typeof m.content === 'string' ? `messages[${m.index}].content` : `messages[${m.index}].content[${j}]`;
      if (part.type === 'text') {
        const reserved = RESERVED.find((r) => part.text.includes(r));
        if (reserved) throw new InvalidRequestError(`${where}: the text may not contain ${reserved}, which the prompt template reserves`, where);
        text.push(part.text);
        return;
      }
      if (imageBase64 !== undefined) throw new InvalidRequestError(`${where}: a second image; the model takes one image per conversation`, where);
      if (k !== 0) throw new InvalidRequestError(`${where}: an image is accepted only in the first user message, as the model was trained`, where);
      imageField = `${where}.image_url`;
      imageBase64 = dataUrlBase64(part.image_url.url, `${imageField}.url`);
    });
    return text.join('\n');
  });
  const history: ChatTurn[] = [];
  for (let k = 0; k + 1 < texts.length; k += 2) history.push({ user: texts[k]!, assistant: texts[k + 1]! });
  const request: CompletionRequest = {
    id: `chatcmpl-${randomBytes(15).toString('base64url')}`,
    prompt: texts.at(-1)!,
    history,
    imageBase64,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS,
    temperature: body.temperature ?? 0,
    topP: body.top_p ?? 1,
    seed: body.seed ?? 0,
    stop: body.stop === undefined ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
  };
  return { request, imageField };
}

/** Accepted fields whose other values would ask for something this server does not do. */
function refuseUnsupported(body: ChatCompletionBody): void {
  if (body.n !== undefined && body.n !== 1) throw new InvalidRequestError(`n: one choice per request is supported, got ${body.n}; send ${body.n} requests instead`, 'n');
  for (const field of ['frequency_penalty', 'presence_penalty'] as const) {
    if (body[field]) throw new InvalidRequestError(`${field}: penalties are not supported, only 0; got ${body[field]}`, field);
  }
  if (body.logprobs) throw new InvalidRequestError('logprobs: log probabilities are not returned; send false or leave it out', 'logprobs');
  if (body.max_tokens !== undefined && body.max_completion_tokens !== undefined && body.max_tokens !== body.max_completion_tokens) {
    throw new InvalidRequestError(`max_tokens (${body.max_tokens}) and max_completion_tokens (${body.max_completion_tokens}) disagree; send one`, 'max_tokens');
  }
}

/** The base64 payload of a `data:<type>;base64,<payload>` URL; the server fetches nothing else. */
function dataUrlBase64(url: string, param: string): string {
  if (!url.startsWith('data:')) {
    throw new InvalidRequestError(`${param}: the server fetches nothing; send the image as a data: URL (data:image/png;base64,...)`, param, 'invalid_image_url');
  }
  const match = /^data:[^,;]*(?:;[^,;]*)*;base64,(.*)$/s.exec(url);
  if (!match) throw new InvalidRequestError(`${param}: a data: URL with base64 content is expected (data:image/png;base64,...)`, param, 'invalid_image_url');
  const payload = match[1]!.replace(/\s+/g, '');
  // Buffer.from(.., 'base64') skips what is not base64 where it should refuse it.
  if (!payload || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload)) throw new InvalidRequestError(`${param}: the data: URL's content is not base64`, param, 'invalid_image_url');
  return payload;
}

/** OpenAI's usage object. */
export function usage(result: CompletionResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
}

/** The super link's results, in the extension field `visionllm` of the message (or the last chunk's delta). */
function extension(results: DecoderResultJson[]): { visionllm: { results: DecoderResultJson[] } } {
  return { visionllm: { results } };
}

export interface ResponseHead {
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
}

/** The `chat.completion` object of a non-streamed answer. */
export function completionResponse(head: ResponseHead, result: CompletionResult) {
  return {
    id: head.id,
    object: 'chat.completion' as const,
    created: head.created,
    model: head.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant' as const, content: result.text, refusal: null, ...extension(result.results) },
        logprobs: null,
        finish_reason: result.finishReason,
      },
    ],
    usage: usage(result),
  };
}

/** A `chat.completion.chunk`: the role, a piece of content, or (with finish_reason) the end and the results. */
export function completionChunk(head: ResponseHead, delta: Record<string, unknown>, finishReason: string | null = null) {
  return {
    id: head.id,
    object: 'chat.completion.chunk' as const,
    created: head.created,
    model: head.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

/** The chunks that end a stream: the finish reason with the results, then usage when asked for. */
export function closingChunks(head: ResponseHead, result: CompletionResult, includeUsage: boolean): object[] {
  const last = completionChunk(head, extension(result.results), result.finishReason);
  return includeUsage ? [last, { ...completionChunk(head, {}), choices: [], usage: usage(result) }] : [last];
}

export interface OpenAIError {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): OpenAIError {
  return { error: { message, type, param, code } };
}

/** An error as the client gets it: the HTTP status, OpenAI's error object, extra headers. */
export interface HttpError {
  status: number;
  body: OpenAIError;
  headers?: Record<string, string>;
}

/** nginx's "client closed request": counted in the metrics, never sent. */
export const CLIENT_GONE = 499;

/** Any error a request can end with, as its HTTP status and OpenAI error object. */
export function httpError(err: unknown, maxBodyBytes: number): HttpError {
  const e = err as FastifyError & Partial<InvalidRequestError> & { retryAfterSeconds?: number };
  const invalid = (message: string, param: string | null = null, code: string | null = null, status = 400): HttpError => ({
    status,
    body: errorBody(message, 'invalid_request_error', param, code),
  });
  switch (e.name) {
    case 'InvalidRequestError':
      return invalid(e.message, e.param ?? null, e.code ?? null);
    case 'QueueFullError':
      return { status: 429, headers: { 'retry-after': String(e.retryAfterSeconds ?? 1) }, body: errorBody(e.message, 'rate_limit_error', null, 'queue_full') };
    case 'CompletionTimeoutError':
      return { status: 504, body: errorBody(e.message, 'timeout_error', null, 'timeout') };
    case 'ShuttingDownError':
      return { status: 503, body: errorBody(e.message, 'server_error', null, 'shutting_down') };
    case 'ClientGoneError':
      return { status: CLIENT_GONE, body: errorBody(e.message, 'client_gone') };
  }
  if (e.validation) return validationError(e);
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return invalid(`the request body is larger than the server's limit of ${formatBytes(maxBodyBytes)} (--max-body)`, null, 'request_too_large', 413);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalid('the request body is empty; send the request as JSON', null, 'invalid_json');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return invalid(`send the request as JSON (Content-Type: application/json); got ${e.message.replace(/^Unsupported Media Type:?\s*/i, '') || 'another type'}`, null, 'unsupported_media_type', 415);
  }
  if (err instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY') return invalid('the request body is not valid JSON', null, 'invalid_json');
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return invalid(e.message, null, null, e.statusCode);
  return { status: 500, body: errorBody(e.message ?? String(err), 'server_error') };
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** The first schema violation, named by its field as OpenAI's `param` writes it: messages[0].content. */
function validationError(err: FastifyError): HttpError {
  const first = err.validation![0] as SchemaError;
  const path = first.instancePath
    .split('/')
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`))
    .join('')
    .replace(/^\./, '');
  const field = (name: unknown) => (path ? `${path}.${String(name)}` : String(name));
  let param = path || null;
  let message: string;
  switch (first.keyword) {
    case 'additionalProperties':
      param = field(first.params.additionalProperty);
      message = `unrecognized request field '${param}'`;
      break;
    case 'required':
      param = field(first.params.missingProperty);
      message = `'${param}' is required`;
      break;
    case 'enum':
      message = `${path} must be one of ${(first.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    default:
      message = `${path || 'the body'} ${first.message}`;
  }
  return { status: 400, body: errorBody(message, 'invalid_request_error', param, 'invalid_value') };
}

function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}
