/**
 * `visionllm serve` in process on the tiny checkpoint (weights/tiny), over real loopback HTTP: a
 * LocalBackend behind buildApp, spoken to with plain fetch and with the official `openai` client.
 * Greedy answers are exactly model.chat()'s, concurrent requests each get their own, streams add
 * up to the plain answer; the queue refuses with 429 when full, a client that leaves cancels its
 * request (waiting or running), a request past the timeout ends with 504 (or an error chunk).
 *
 * The tiny model ends its answers within ~60 tokens, about a millisecond each: a "slow" request is
 * one whose </s> is suppressed (minNewTokens = max_tokens), so that it runs ~1 ms per token asked for.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatOptions } from '../src/model/vision-llm.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { buildApp, type AppOptions } from '../src/server/app.js';
import { LocalBackend } from '../src/server/local-backend.js';
import { AnswerText } from '../src/server/run-completion.js';
import { TEST_DIR, TINY_WEIGHTS } from './helpers.js';

const IMAGE_FILE = path.join(TEST_DIR, 'fixtures', 'images', 'wide.png');
const IMAGE_URL = `data:image/png;base64,${fs.readFileSync(IMAGE_FILE).toString('base64')}`;

let model: VisionLLM;
/** The model as a slow one: never stops before max_tokens. */
let slowModel: VisionLLM;
let backend: LocalBackend;
let base: string;
const apps: FastifyInstance[] = [];

/** An app on a free loopback port; closed after the file's tests. */
async function serve(options: AppOptions): Promise<string> {
  const app = await buildApp(options);
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}

function slowBackend(queueSize: number): LocalBackend {
  return new LocalBackend(slowModel, { queueSize, modelName: 'tiny', ownsModel: false });
}

beforeAll(async () => {
  model = await VisionLLM.load(TINY_WEIGHTS);
  slowModel = Object.create(model, {
    chat: { value: (options: ChatOptions) => model.chat({ ...options, minNewTokens: options.maxNewTokens }) },
  }) as VisionLLM;
  backend = new LocalBackend(model, { queueSize: 8, modelName: 'tiny', ownsModel: false });
  base = await serve({ backend });
});
afterAll(async () => {
  await Promise.all(apps.map((app) => app.close()));
  await model.dispose();
});

function post(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
}

/** A response's JSON body, loosely typed: the tests check its shape. */
async function json(response: Response | Promise<Response>): Promise<any> {
  return (await response).json();
}

const withImage = (text: string) => [{ type: 'text', text }, { type: 'image_url', image_url: { url: IMAGE_URL } }];

/** model.chat() alone, as the reference: text, finish reason, token counts. */
async function reference(options: ChatOptions) {
  const r = await model.chat(options);
  r.dispose();
  return { text: r.text, finish: r.finishReason, prompt: r.timings.promptTokens, completion: r.tokenIds.length };
}

/** The events of a server-sent event stream, read to its end. */
function events(text: string): string[] {
  return text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
}

/** Polls until `check` holds (or fails after `ms`). */
async function eventually(check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('answers', () => {
  it('greedy answers are exactly model.chat()\'s (plain fetch), with usage', async () => {
    const cases = [
      { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 24, chat: { prompt: 'Hello there', maxNewTokens: 24 } },
      { messages: [{ role: 'user', content: withImage('Describe the picture.') }], max_tokens: 96, chat: { prompt: 'Describe the picture.', image: IMAGE_FILE, maxNewTokens: 96 } },
    ];
    for (const { chat, ...body } of cases) {
      const want = await reference(chat);
      const res = await post(base, body);
      expect(res.status).toBe(200);
      const got = await json(res);
      expect(got.choices[0].message).toMatchObject({ role: 'assistant', content: want.text, visionllm: { results: [] } });
      expect(got.choices[0].finish_reason).toBe(want.finish);
      expect(got.usage).toEqual({ prompt_tokens: want.prompt, completion_tokens: want.completion, total_tokens: want.prompt + want.completion });
    }
  });

  it('through the openai client, plain and streamed: the chunks add up to the same text', async () => {
    const want = await reference({ prompt: 'What is in the picture?', image: IMAGE_FILE, maxNewTokens: 64 });
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'What is in the picture?' }, { type: 'image_url' as const, image_url: { url: IMAGE_URL } }] }];
    const completion = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 64 });
    expect(completion.choices[0]!.message.content).toBe(want.text);
    const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 64, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(3); // streamed, not sent at the end
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(want.text);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(want.finish);
  });

  it('a conversation: earlier turns are the history, the image belongs to the first', async () => {
    const history = [{ user: 'What is in the picture?', assistant: 'A house.' }];
    const want = await reference({ prompt: 'Which colour is it?', image: IMAGE_FILE, history, maxNewTokens: 48 });
    const res = await post(base, {
      messages: [
        { role: 'system', content: 'Ignored: the template keeps its own.' },
        { role: 'user', content: withImage('What is in the picture?') },
        { role: 'assistant', content: 'A house.' },
        { role: 'user', content: 'Which colour is it?' },
      ],
      max_tokens: 48,
    });
    expect((await json(res)).choices[0].message.content).toBe(want.text);
  });

  it('concurrent requests each get their own answer', async () => {
    const prompts = ['Hello there', 'Tell me a long story.', 'List every object.', 'Count to one hundred.'];
    const wants = [];
    for (const prompt of prompts) wants.push((await reference({ prompt, maxNewTokens: 40 })).text);
    const answers = await Promise.all(prompts.map(async (prompt) => (await json(post(base, { messages: [{ role: 'user', content: prompt }], max_tokens: 40 }))).choices[0].message.content));
    expect(answers).toEqual(wants);
    expect(new Set(wants).size).toBe(prompts.length);
  });

  it('a stop string ends the answer before it, streamed or not', async () => {
    const full = (await reference({ prompt: 'Hello there', maxNewTokens: 64 })).text;
    const stop = full.split(' ')[3]!; // the fourth word
    const want = full.slice(0, full.indexOf(stop)).trimEnd();
    const body = { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 64, stop: ['never', stop] };
    const plain = await json(post(base, body));
    expect(plain.choices[0].message.content).toBe(want);
    expect(plain.choices[0].finish_reason).toBe('stop');
    const streamed = events(await (await post(base, { ...body, stream: true })).text());
    expect(streamed.at(-1)).toBe('[DONE]');
    const chunks = streamed.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(want);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('stop');
  });

  it('an image whose header reads but whose data is cut: 400 naming it, from the full decode', async () => {
    const truncated = fs.readFileSync(path.join(TEST_DIR, 'fixtures', 'images', 'truncated.jpg')).toString('base64');
    const res = await post(base, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/jpeg;base64,${truncated}` } }] }] });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toMatchObject({ message: expect.stringMatching(/^image_url: corrupt or truncated jpeg/), code: 'invalid_image' });
  });

  it('a prompt longer than the context: 400 context_length_exceeded', async () => {
    const res = await post(base, { messages: [{ role: 'user', content: 'word '.repeat(5000) }] });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toMatchObject({ message: expect.stringMatching(/^the prompt needs \d+ positions, and the context holds 4096/), code: 'context_length_exceeded' });
  });
});

describe('the streamed text (AnswerText)', () => {
  /** The pieces sent, the final text and whether it stopped, for `text` arriving in pieces of `size`. */
  function stream(text: string, stops: string[], size: number) {
    const sent: string[] = [];
    const answer = new AnswerText(stops, (piece) => sent.push(piece));
    let stopped = false;
    for (let i = 0; i < text.length && !stopped; i += size) stopped = answer.push(text.slice(i, i + size));
    const final = answer.finish();
    return { sent: sent.join(''), final, stopped };
  }

  it.each([
    ['  Hello, big world.  ', [], 'Hello, big world.'],
    [' one two three four', ['three'], 'one two'],
    ['one two three four', ['x', 'two t', 'four'], 'one'],
    ['ab ab abc', ['abc'], 'ab ab'],
    ['text\n\nmore', ['\n\n'], 'text'],
    ['no stop here', ['here!'], 'no stop here'],
  ])('%j with stops %j: %j, the same streamed in pieces of any size', (text, stops, want) => {
    for (const size of [1, 2, 3, 5, 100]) {
      const { sent, final, stopped } = stream(text, stops, size);
      expect(final).toBe(want);
      expect(sent).toBe(want);
      expect(stopped).toBe(want !== text.trim());
    }
  });
});

describe('the queue, cancellation and the timeout', () => {
  it('a full queue answers 429 with Retry-After', async () => {
    const url = await serve({ backend: slowBackend(1) });
    const controllers = [0, 1, 2].map(() => new AbortController());
    const responses = controllers.map((c) => post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000 }, c.signal));
    const first = await Promise.race(responses);
    expect(first.status).toBe(429);
    expect(Number(first.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await json(first)).error).toMatchObject({ message: "the server's queue is full (1 requests); retry after 1 s", code: 'queue_full' });
    controllers.forEach((c) => c.abort());
    await Promise.allSettled(responses);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^visionllm_requests_total\{status="429"\} 1$/m);
  });

  it('a client that goes away cancels its request, waiting or running; the model is free for the next', async () => {
    const slow = slowBackend(4);
    const url = await serve({ backend: slow });
    const running = new AbortController();
    const waiting = new AbortController();
    const first = await post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000, stream: true }, running.signal);
    const reader = first.body!.getReader();
    await reader.read(); // the role chunk: it runs
    const second = post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000 }, waiting.signal).catch(() => null);
    await eventually(() => slow.depth() === 2);
    waiting.abort();
    await second;
    await eventually(() => slow.depth() === 1);
    const start = performance.now();
    running.abort();
    await eventually(() => slow.depth() === 0, 1000); // ~3 s if it ran on
    expect(performance.now() - start).toBeLessThan(1000);
    const want = await reference({ prompt: 'Hello there', maxNewTokens: 16 });
    expect((await json(post(base, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 16 }))).choices[0].message.content).toBe(want.text);
    await eventually(async () => /^visionllm_requests_total\{status="499"\} 2$/m.test(await (await fetch(`${url}/metrics`)).text()));
  });

  it('past the timeout: 504, or an error chunk then [DONE] once streaming started', async () => {
    const slow = slowBackend(4);
    const url = await serve({ backend: slow, timeoutMs: 400 });
    const start = performance.now();
    const res = await post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000 });
    expect(res.status).toBe(504);
    expect((await json(res)).error).toMatchObject({ message: "the request took longer than the server's limit of 0.4 s (--timeout) and was cancelled", code: 'timeout' });
    expect(performance.now() - start).toBeLessThan(1500);
    await eventually(() => slow.depth() === 0, 1000);

    const streamed = await post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000, stream: true });
    expect(streamed.status).toBe(200);
    const all = events(await streamed.text());
    expect(all.at(-1)).toBe('[DONE]');
    expect(JSON.parse(all.at(-2)!).error).toMatchObject({ code: 'timeout', type: 'timeout_error' });
    expect(all.slice(1, -2).every((e) => typeof JSON.parse(e).choices[0].delta.content === 'string')).toBe(true);
    expect(all.length).toBeGreaterThan(10);
    await eventually(() => slow.depth() === 0, 1000);
  });

  it('close(): waiting requests refused, the running one cancelled after the grace period: 503', async () => {
    const slow = slowBackend(4);
    const url = await serve({ backend: slow });
    const running = post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000 });
    await eventually(() => slow.depth() === 1);
    const waiting = post(url, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3000 });
    await eventually(() => slow.depth() === 2);
    await slow.close(200);
    const [r1, r2] = await Promise.all([running, waiting]);
    expect([r1.status, (await json(r1)).error.message]).toEqual([503, 'the server shut down before the request finished']);
    expect([r2.status, (await json(r2)).error.message]).toEqual([503, 'the server shut down before the request started']);
    expect((await post(url, { messages: [{ role: 'user', content: 'hi' }] })).status).toBe(503);
    expect(model.engine.isDisposed).toBe(false); // not its model to dispose
  });
});

describe('health and metrics', () => {
  it('/health: the adapter, the model, the queue', async () => {
    expect(await json(fetch(`${base}/health`))).toMatchObject({
      status: 'ok', model: 'tiny', queueDepth: 0, adapter: expect.any(String), kind: 'visionllmv2', decoders: ['gdino', 'unipose', 'sd', 'ip2p'], queueSize: 8,
    });
  });

  it('/metrics: Prometheus text with requests by status, tokens, latencies, the queue depth', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^visionllm_requests_total\{status="200"\} [1-9]\d*$/m);
    expect(text).toMatch(/^visionllm_requests_total\{status="400"\} 2$/m);
    expect(text).toMatch(/^visionllm_prompt_tokens_total [1-9]\d*$/m);
    expect(text).toMatch(/^visionllm_completion_tokens_total [1-9]\d*$/m);
    expect(text).toMatch(/^visionllm_request_duration_seconds_count\{stream="true"\} [1-9]\d*$/m);
    expect(text).toMatch(/^visionllm_time_to_first_token_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^visionllm_queue_depth 0$/m);
  });
});
