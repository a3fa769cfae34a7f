/**
 * The HTTP layer of `visionllm serve` (src/server/app.ts, openai.ts) over real loopback HTTP, in
 * front of a fake Backend: how OpenAI requests become CompletionRequests, the decoder results'
 * pass-through in message.visionllm (plain and streamed, through the official `openai` client),
 * and the 4xx answer of every bad request, its message checked.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/server/app.js';
import type { Backend, CompletionRequest, CompletionResult, DecoderResultJson, SubmitOptions } from '../src/server/backend.js';
import { TEST_DIR } from './helpers.js';

const PNG = fs.readFileSync(path.join(TEST_DIR, 'fixtures', 'images', 'square.png'));
const DATA_URL = `data:image/png;base64,${PNG.toString('base64')}`;
const API_KEY = 'test-key';

const RESULTS: DecoderResultJson[] = [
  { decoder: 'gdino', task: 'detection', classes: ['person'], detections: [{ label: 'person', score: 0.9, box: [1, 2, 3, 4] }] },
  { decoder: 'sd', task: 'generation', images: [{ width: 1, height: 1, png: 'iVBORw0KGgo=' }] },
];

/** Answers "Hello world" in two pieces with RESULTS, and keeps the requests it got. */
class FakeBackend implements Backend {
  readonly modelName = 'fake-model';
  readonly requests: CompletionRequest[] = [];

  async submit(request: CompletionRequest, options: SubmitOptions): Promise<CompletionResult> {
    this.requests.push(request);
    options.onText?.('Hello');
    options.onText?.(' world');
    return { text: 'Hello world', finishReason: 'stop', promptTokens: 7, completionTokens: 3, results: RESULTS };
  }

  depth(): number {
    return 0;
  }

  async health(): Promise<Record<string, unknown>> {
    return { adapter: 'none' };
  }

  async close(): Promise<void> {}
}

const backend = new FakeBackend();
let app: FastifyInstance;
let guarded: FastifyInstance;
let base: string;
let guardedBase: string;

async function listen(instance: FastifyInstance): Promise<string> {
  await instance.listen({ port: 0, host: '127.0.0.1' });
  const address = instance.server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}

beforeAll(async () => {
  app = await buildApp({ backend });
  base = await listen(app);
  guarded = await buildApp({ backend, apiKey: API_KEY, maxBodyBytes: 64 * 1024 });
  guardedBase = await listen(guarded);
});
afterAll(async () => {
  await app.close();
  await guarded.close();
});

function post(body: unknown, options: { url?: string; headers?: Record<string, string>; raw?: string } = {}): Promise<Response> {
  return fetch(`${options.url ?? base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.raw ?? JSON.stringify(body),
  });
}

/** A response's JSON body, loosely typed: the tests check its shape. */
async function json(response: Response | Promise<Response>): Promise<any> {
  return (await response).json();
}

const user = (content: unknown) => ({ role: 'user', content });
const image = { type: 'image_url', image_url: { url: DATA_URL } };

describe('OpenAI requests into CompletionRequests', () => {
  it('system messages left out, turns as history, the first message image, the defaults', async () => {
    const res = await post({
      messages: [
        { role: 'system', content: 'You are terse.' },
        user([{ type: 'text', text: 'What is this?' }, image]),
        { role: 'assistant', content: 'A square.' },
        user([{ type: 'text', text: 'Which colour?' }, { type: 'text', text: 'Be brief.' }]),
      ],
    });
    expect(res.status).toBe(200);
    const got = backend.requests.at(-1)!;
    expect(got.id).toMatch(/^chatcmpl-/);
    expect(got.history).toEqual([{ user: 'What is this?', assistant: 'A square.' }]);
    expect(got.prompt).toBe('Which colour?\nBe brief.');
    expect(Buffer.from(got.imageBase64!, 'base64').equals(PNG)).toBe(true);
    expect({ maxTokens: got.maxTokens, temperature: got.temperature, topP: got.topP, seed: got.seed, stop: got.stop }).toEqual({ maxTokens: 256, temperature: 0, topP: 1, seed: 0, stop: [] });
  });

  it('sampling fields, max_completion_tokens, a stop string', async () => {
    await post({ messages: [user('hi')], max_completion_tokens: 9, temperature: 0.7, top_p: 0.9, seed: 42, stop: 'END', n: 1, user: 'u', frequency_penalty: 0 });
    expect(backend.requests.at(-1)).toMatchObject({ prompt: 'hi', history: [], maxTokens: 9, temperature: 0.7, topP: 0.9, seed: 42, stop: ['END'] });
    await post({ messages: [user('hi')], max_tokens: 5, stop: ['a', 'b'] });
    expect(backend.requests.at(-1)).toMatchObject({ maxTokens: 5, stop: ['a', 'b'] });
  });
});

describe('responses in OpenAI format, results in message.visionllm', () => {
  const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });

  it('non-streamed, through the openai client', async () => {
    const completion = await client().chat.completions.create({ model: 'anything', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('fake-model');
    expect(completion.choices[0]!.message.content).toBe('Hello world');
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    expect((completion.choices[0]!.message as unknown as { visionllm: unknown }).visionllm).toEqual({ results: RESULTS });
  });

  it('streamed, through the openai client: role, pieces, then the finish reason with the results, then usage', async () => {
    const stream = await client().chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello world');
    const last = chunks.at(-2)!.choices[0]!;
    expect(last.finish_reason).toBe('stop');
    expect((last.delta as unknown as { visionllm: unknown }).visionllm).toEqual({ results: RESULTS });
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it('streamed, on the wire: server-sent events ending with data: [DONE]', async () => {
    const res = await post({ messages: [user('hi')], stream: true });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = text.split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events).toHaveLength(5); // role, two pieces, the end, [DONE]
  });

  it('GET /v1/models, /v1/models/:id and /health', async () => {
    expect(await json(fetch(`${base}/v1/models`))).toMatchObject({ object: 'list', data: [{ id: 'fake-model', object: 'model' }] });
    expect((await client().models.retrieve('fake-model')).id).toBe('fake-model');
    const missing = await fetch(`${base}/v1/models/other`);
    expect(missing.status).toBe(404);
    expect((await json(missing)).error.message).toBe("no model 'other'; this server serves 'fake-model'");
    expect(await json(fetch(`${base}/health`))).toEqual({ status: 'ok', model: 'fake-model', queueDepth: 0, adapter: 'none' });
  });
});

describe('bad requests: 4xx with an OpenAI error naming the fault', () => {
  const cases: [string, () => Promise<Response>, number, RegExp, string | null][] = [
    ['bad JSON', () => post(null, { raw: '{"messages": [' }), 400, /^the request body is not valid JSON$/, null],
    ['an unknown field', () => post({ messages: [user('hi')], tools: [] }), 400, /^unrecognized request field 'tools'$/, 'tools'],
    ['an unknown field in a message', () => post({ messages: [{ role: 'user', content: 'hi', extra: 1 }] }), 400, /^unrecognized request field 'messages\[0\]\.extra'$/, 'messages[0].extra'],
    ['a missing field', () => post({ model: 'x' }), 400, /^'messages' is required$/, 'messages'],
    ['a bad role', () => post({ messages: [{ role: 'tool', content: 'x' }] }), 400, /^messages\[0\]\.role must be one of "system", "user", "assistant"$/, 'messages[0].role'],
    ['a number as a string', () => post({ messages: [user('hi')], temperature: '0.5' }), 400, /^temperature must be number$/, 'temperature'],
    ['five stop strings', () => post({ messages: [user('hi')], stop: ['a', 'b', 'c', 'd', 'e'] }), 400, /^stop must NOT have more than 4 items$/, 'stop'],
    ['a text part without text', () => post({ messages: [user([{ type: 'text' }])] }), 400, /^'messages\[0\]\.content\[0\]\.text' is required$/, 'messages[0].content[0].text'],
    ['n = 2', () => post({ messages: [user('hi')], n: 2 }), 400, /^n: one choice per request is supported, got 2; send 2 requests instead$/, 'n'],
    ['a penalty', () => post({ messages: [user('hi')], presence_penalty: 0.5 }), 400, /^presence_penalty: penalties are not supported, only 0; got 0\.5$/, 'presence_penalty'],
    ['a remote image URL', () => post({ messages: [user([{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }])] }), 400,
      /^messages\[0\]\.content\[0\]\.image_url\.url: the server fetches nothing; send the image as a data: URL/, 'messages[0].content[0].image_url.url'],
    ['two images', () => post({ messages: [user([image, image])] }), 400, /^messages\[0\]\.content\[1\]: a second image; the model takes one image per conversation$/, 'messages[0].content[1]'],
    ['an image after the first message', () => post({ messages: [user('hi'), { role: 'assistant', content: 'yes' }, user([image])] }), 400,
      /^messages\[2\]\.content\[0\]: an image is accepted only in the first user message/, 'messages[2].content[0]'],
    ['image bytes that are no image', () => post({ messages: [user([{ type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from('not a picture').toString('base64')}` } }])] }), 400,
      /^messages\[0\]\.content\[0\]\.image_url: not a readable image \(/, 'messages[0].content[0].image_url'],
    ['a data: URL that is not base64', () => post({ messages: [user([{ type: 'image_url', image_url: { url: 'data:image/png,rawbytes' } }])] }), 400,
      /: a data: URL with base64 content is expected/, 'messages[0].content[0].image_url.url'],
    ['two user messages in a row', () => post({ messages: [user('a'), user('b')] }), 400, /^messages\[1\]: expected a assistant message/, 'messages[1].role'],
    ['the last message from the assistant', () => post({ messages: [user('a'), { role: 'assistant', content: 'b' }] }), 400, /^messages: the last message \(system messages aside\) must be a user message$/, 'messages'],
    ['a template marker typed in', () => post({ messages: [user('look: <image>')] }), 400, /^messages\[0\]\.content: the text may not contain <image>/, 'messages[0].content'],
    ['not JSON at all', () => fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' }), 415, /^send the request as JSON/, null],
    ['an unknown route', () => fetch(`${base}/v1/completions`, { method: 'POST' }), 404, /^no route for POST \/v1\/completions$/, null],
    ['an oversized body', () => post({ messages: [user('x'.repeat(70 * 1024))] }, { url: guardedBase, headers: { authorization: `Bearer ${API_KEY}` } }), 413,
      /^the request body is larger than the server's limit of 64 KiB \(--max-body\)$/, null],
    ['no API key', () => post({ messages: [user('hi')] }, { url: guardedBase }), 401, /^missing API key: send the header Authorization: Bearer <key>$/, null],
    ['a wrong API key', () => post({ messages: [user('hi')] }, { url: guardedBase, headers: { authorization: 'Bearer nope' } }), 401, /^incorrect API key$/, null],
  ];

  it.each(cases)('%s', async (_name, send, status, message, param) => {
    const before = backend.requests.length;
    const res = await send();
    expect(res.status).toBe(status);
    const { error } = await json(res);
    expect(error.message).toMatch(message);
    expect(error.param).toBe(param);
    expect(typeof error.type).toBe('string');
    expect(backend.requests.length).toBe(before); // refused before the backend saw it
  });

  it('the right API key passes; /health and /metrics need none', async () => {
    expect((await post({ messages: [user('hi')] }, { url: guardedBase, headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(200);
    const client = new OpenAI({ baseURL: `${guardedBase}/v1`, apiKey: API_KEY, maxRetries: 0 });
    expect((await client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] })).choices[0]!.message.content).toBe('Hello world');
    await expect(new OpenAI({ baseURL: `${guardedBase}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list()).rejects.toMatchObject({ status: 401 });
    expect((await fetch(`${guardedBase}/health`)).status).toBe(200);
    expect((await fetch(`${guardedBase}/metrics`)).status).toBe(200);
  });
});
