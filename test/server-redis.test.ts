/**
 * `visionllm serve --redis`: the API role (redis-backend.ts) and workers (worker.ts) sharing a
 * real redis-server. Every answer is checked against the same request run alone with model.chat
 * (greedy), so a request answered with another's text, a lost piece of text or a repeated one
 * shows. In-process first (the backend and workers on this file's model), then as a user runs it:
 * one API process and two worker processes of the built CLI, a worker SIGKILLed mid-job and
 * Redis restarted under queued jobs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatTurn } from '../src/model/chat-template.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { QueueFullError, type Backend, type CompletionRequest } from '../src/server/backend.js';
import { createRedisBackend } from '../src/server/redis-backend.js';
import { QUEUE_NAME, redisOptions, textChannel, type TextDelta } from '../src/server/redis-queue.js';
import { AnswerStream, DivergentRetryError } from '../src/server/redis-stream.js';
import { InvalidRequestError } from '../src/server/run-completion.js';
import { startWorker } from '../src/server/worker.js';
import { TEST_DIR, TINY_WEIGHTS, ensureBuilt, testEngine } from './helpers.js';
import { RedisServer, findRedisServer, freePort } from './redis-server.js';
import { ServeProcess, until } from './serve-process.js';

const REDIS_SERVER = findRedisServer();
if (!REDIS_SERVER) {
  console.warn('test/server-redis.test.ts: redis-server not found (apt-get install redis-server, as scripts/setup.sh does): the Redis tests are skipped');
}
const ROOT = path.resolve(TEST_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

const IMAGE = fs.readFileSync(path.join(TEST_DIR, 'fixtures', 'images', 'small.jpg'));

/** A request as the tests write it; `expected` is model.chat's greedy answer to it. */
interface Case {
  prompt: string;
  history: ChatTurn[];
  image: boolean;
  stream: boolean;
  maxTokens: number;
  expected: string;
}

const SUBJECTS = ['cats', 'dogs', 'the sea', 'mountains', 'bread', 'trains', 'music', 'rain', 'the moon', 'gardens'];
/** 40 requests, half with the image, half streamed; each a different length so that no two answers are the same text. */
const MIXED: Omit<Case, 'expected'>[] = Array.from({ length: 40 }, (_, i) => ({
  prompt: `Tell me about ${SUBJECTS[i % SUBJECTS.length]}.`,
  history: [],
  image: i % 2 === 1,
  stream: i % 4 < 2,
  maxTokens: 4 + i,
}));

/** A long conversation: a prefill of ~2,800 positions keeps a worker busy for a while (a kill or a restart lands mid-job). */
const LONG_HISTORY: ChatTurn[] = Array.from({ length: 20 }, () => ({
  user: 'Tell me about the weather in the mountains today, please.',
  assistant: 'It is sunny with a few clouds over the high peaks and a light wind from the west.',
}));
const LONG: Omit<Case, 'expected'>[] = Array.from({ length: 12 }, (_, i) => ({
  prompt: `And on day ${i + 1}?`,
  history: LONG_HISTORY,
  image: false,
  stream: i % 2 === 0,
  maxTokens: 6 + i,
}));

const request = (c: Omit<Case, 'expected'>, id: string): CompletionRequest => ({
  id,
  prompt: c.prompt,
  history: c.history,
  imageBase64: c.image ? IMAGE.toString('base64') : undefined,
  maxTokens: c.maxTokens,
  temperature: 0,
  topP: 1,
  seed: 0,
  stop: [],
});

describe('AnswerStream: one answer from the deltas of a job and its retries', () => {
  const collect = () => {
    const sent: string[] = [];
    return { sent, stream: new AnswerStream((t) => sent.push(t)) };
  };

  it("forwards a retry's text past what was already sent, and nothing twice", () => {
    const { sent, stream } = collect();
    stream.accept({ attempt: 1, offset: 0, text: 'The cat ' });
    stream.accept({ attempt: 1, offset: 8, text: 'sat' });
    // The worker died; the retry starts over and catches up.
    stream.accept({ attempt: 2, offset: 0, text: 'The ' });
    stream.accept({ attempt: 2, offset: 4, text: 'cat sat on' });
    // A late delta of the dead attempt is ignored.
    stream.accept({ attempt: 1, offset: 11, text: ' the floor' });
    stream.accept({ attempt: 2, offset: 14, text: ' the mat.' });
    stream.finish('The cat sat on the mat.');
    expect(sent.join('')).toBe('The cat sat on the mat.');
    expect(sent).toEqual(['The cat ', 'sat', ' on', ' the mat.']);
    expect(stream.error).toBeNull();
  });

  it("fills a gap (a lost message) from the job's result", () => {
    const { sent, stream } = collect();
    stream.accept({ attempt: 1, offset: 0, text: 'one ' });
    stream.accept({ attempt: 1, offset: 8, text: 'three' });
    stream.finish('one two three');
    expect(sent.join('')).toBe('one two three');
  });

  it('fails, sending nothing more, when a retry disagrees with the text already sent', () => {
    const { sent, stream } = collect();
    stream.accept({ attempt: 1, offset: 0, text: 'a dog' });
    stream.accept({ attempt: 2, offset: 0, text: 'a cat and more' });
    expect(stream.error).toBeInstanceOf(DivergentRetryError);
    stream.finish('a cat and more');
    expect(sent).toEqual(['a dog']);
  });
});

describe.skipIf(!REDIS_SERVER)('visionllm serve --redis', () => {
  let redis: RedisServer;
  let model: VisionLLM;
  let mixed: Case[];
  let long: Case[];
  /** Each group of tests on its own database, so that no worker of one takes another's jobs. */
  const db = (n: number) => `${redis.url}/${n}`;

  beforeAll(async () => {
    redis = await RedisServer.start(REDIS_SERVER!);
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine() });
    const alone = async (c: Omit<Case, 'expected'>): Promise<Case> => {
      const r = await model.chat({ prompt: c.prompt, history: c.history, image: c.image ? IMAGE : undefined, maxNewTokens: c.maxTokens, temperature: 0 });
      r.dispose();
      return { ...c, expected: r.text };
    };
    mixed = [];
    for (const c of MIXED) mixed.push(await alone(c));
    long = [];
    for (const c of LONG) long.push(await alone(c));
    // Otherwise a swapped answer could pass for the right one.
    expect(new Set(mixed.map((c) => c.expected)).size).toBe(mixed.length);
    expect(new Set(long.map((c) => c.expected)).size).toBe(long.length);
  });
  afterAll(async () => {
    await model?.dispose();
    await redis?.dispose();
  });

  /** Submits a case to a backend; the streamed text is collected for the streaming ones. */
  const submit = async (backend: Backend, c: Case, id: string, signal = new AbortController().signal) => {
    let streamed = '';
    const result = await backend.submit(request(c, id), { signal, onText: c.stream ? (t) => (streamed += t) : undefined });
    return { text: result.text, streamed: c.stream ? streamed : result.text };
  };

  describe('the API role', () => {
    it('refuses a request past queueSize (429), takes an aborted request out of the queue, and ends the rest on close', async () => {
      // No worker on this database: the jobs wait.
      const backend = await createRedisBackend({ redisUrl: db(1), modelName: 'tiny', queueSize: 2, timeoutMs: 0 });
      const a = new AbortController();
      const first = submit(backend, mixed[0], 'chatcmpl-wait-a', a.signal);
      const second = submit(backend, mixed[1], 'chatcmpl-wait-b');
      first.catch(() => {});
      second.catch(() => {});
      await until('two queued jobs', async () => (await backend.depth()) === 2);
      await expect(submit(backend, mixed[2], 'chatcmpl-wait-c')).rejects.toBeInstanceOf(QueueFullError);
      a.abort(new Error('the client went away'));
      await expect(first).rejects.toThrow('the client went away');
      await until('the aborted job to leave the queue', async () => (await backend.depth()) === 1);
      expect(await backend.health()).toMatchObject({ backend: 'redis', waiting: 1, workers: 0 });
      await backend.close(100);
      await expect(second).rejects.toThrow('shut down');
    });
  });

  describe('in-process: a backend and two workers on this file’s model', () => {
    let backend: Backend;
    let workers: { close(graceMs: number): Promise<void> }[];
    beforeAll(async () => {
      backend = await createRedisBackend({ redisUrl: db(2), modelName: 'tiny', queueSize: 100, timeoutMs: 60_000 });
      workers = await Promise.all([startWorker({ redisUrl: db(2), model }), startWorker({ redisUrl: db(2), model })]);
    });
    afterAll(async () => {
      await Promise.all(workers?.map((w) => w.close(1000)) ?? []);
      await backend?.close(1000);
    });

    it('answers 40 concurrent requests, each with its own greedy answer, streamed text and all', async () => {
      const t0 = performance.now();
      const answers = await Promise.all(mixed.map((c, i) => submit(backend, c, `chatcmpl-mixed-${i}`)));
      console.log(`in-process: 40 requests in ${(performance.now() - t0).toFixed(0)} ms`);
      expect(answers.map((a) => a.text)).toEqual(mixed.map((c) => c.expected));
      expect(answers.map((a) => a.streamed)).toEqual(mixed.map((c) => c.expected));
    });

    it('rejects a faulty request as the request’s fault, without retrying it', async () => {
      const bad = { ...request(mixed[0], 'chatcmpl-bad-image'), imageBase64: Buffer.from('not an image').toString('base64') };
      const err = await backend.submit(bad, { signal: new AbortController().signal }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect(err).toMatchObject({ param: 'messages', code: 'invalid_image' });
      const queue = new Queue(QUEUE_NAME, { connection: redisOptions(db(2)) });
      expect((await queue.getJob('chatcmpl-bad-image'))?.attemptsStarted).toBe(1);
      await queue.close();
    });
  });

  it('stops a running job when its client goes away', async () => {
    // A model whose chat runs until it is stopped: the job is surely running when the client leaves.
    const endless = Object.create(model) as VisionLLM;
    endless.chat = (options) => new Promise((_, reject) => options.signal!.addEventListener('abort', () => reject(options.signal!.reason)));
    const backend = await createRedisBackend({ redisUrl: db(4), modelName: 'tiny', queueSize: 10, timeoutMs: 0 });
    const worker = await startWorker({ redisUrl: db(4), model: endless });
    const queue = new Queue(QUEUE_NAME, { connection: redisOptions(db(4)) });
    try {
      const client = new AbortController();
      const answer = submit(backend, mixed[0], 'chatcmpl-cancelled', client.signal);
      answer.catch(() => {});
      await until('the job to run', async () => (await queue.getJobState('chatcmpl-cancelled')) === 'active');
      client.abort(new Error('the client went away'));
      await expect(answer).rejects.toThrow('the client went away');
      await until('the job to fail', async () => (await queue.getJobState('chatcmpl-cancelled')) === 'failed', 5000);
      expect((await queue.getJob('chatcmpl-cancelled'))!.failedReason).toMatch(/cancelled/);
    } finally {
      await queue.close();
      await worker.close(1000);
      await backend.close(1000);
    }
  });

  it('a worker that dies mid-answer: another runs the job again and the client gets the answer once', async () => {
    const connection = redisOptions(db(3));
    const backend = await createRedisBackend({ redisUrl: db(3), modelName: 'tiny', queueSize: 10, timeoutMs: 60_000 });
    const c = mixed.find((m) => m.stream && m.expected.length > 20)!;
    // A worker that streams the answer's first half, then hangs: its lock expires once it is force-closed.
    const publisher = new Redis(connection);
    let dying!: () => void;
    const halfSent = new Promise<void>((r) => (dying = r));
    const doomed = new Worker<CompletionRequest>(
      QUEUE_NAME,
      async (job: Job<CompletionRequest>) => {
        const delta: TextDelta = { attempt: job.attemptsStarted, offset: 0, text: c.expected.slice(0, 12) };
        await publisher.publish(textChannel(job.id!), JSON.stringify(delta));
        dying();
        return new Promise(() => {});
      },
      // Its own stalled check would hold off the rescuer's (one check per interval per queue).
      { connection, lockDuration: 1000, skipStalledCheck: true },
    );
    let streamed = '';
    const answer = backend.submit(request(c, 'chatcmpl-orphan'), { signal: new AbortController().signal, onText: (t) => (streamed += t) });
    await halfSent;
    await until('the first half to reach the client', () => streamed.length === 12, 5000);
    await doomed.close(true);
    publisher.disconnect();
    const t0 = performance.now();
    const rescuer = await startWorker({ redisUrl: db(3), model });
    try {
      const result = await answer;
      console.log(`stalled job answered ${(performance.now() - t0).toFixed(0)} ms after its worker died`);
      expect(result.text).toBe(c.expected);
      expect(streamed).toBe(c.expected);
    } finally {
      await rescuer.close(1000);
      await backend.close(1000);
    }
  });

  describe('processes: `visionllm serve --role api` and two `--role worker`', () => {
    let api: ServeProcess;
    let workers: ServeProcess[];
    let port: number;
    let queue: Queue;

    beforeAll(async () => {
      ensureBuilt([CLI]);
      port = await freePort();
      const redisUrl = db(0);
      api = ServeProcess.start(['--weights', TINY_WEIGHTS, '--redis', redisUrl, '--role', 'api', '--port', String(port)]);
      const worker = () => ServeProcess.start(['--weights', TINY_WEIGHTS, '--redis', redisUrl, '--role', 'worker']);
      workers = [worker(), worker()];
      queue = new Queue(QUEUE_NAME, { connection: redisOptions(redisUrl) });
      queue.on('error', () => {}); // Redis restarts in a test.
      await api.waitFor(/listening on/, 30_000);
      // A worker is ready once its BullMQ connection shows in Redis: it registers after the model is loaded.
      await until('two workers in Redis', async () => (await queue.getWorkersCount()) === 2, 30_000, 100);
    });
    /** A failure's message gets the processes' last words. */
    const withLogs = <T>(work: Promise<T>): Promise<T> =>
      work.catch((err: Error) => {
        const logs = [api, ...workers].map((s, i) => `--- ${i === 0 ? 'api' : `worker ${i}`} (pid ${s.pid}):\n${s.tail()}`);
        throw new Error(`${err.message}\n${logs.join('\n')}`);
      });
    afterAll(async () => {
      await Promise.all([api, ...(workers ?? [])].filter(Boolean).map((s) => s.stop()));
      await queue?.close();
    });

    it('answer 40 concurrent requests over HTTP, each with its own greedy answer', async () => {
      const t0 = performance.now();
      const answers = await withLogs(Promise.all(mixed.map((c) => postChat(port, c))));
      console.log(`processes: 40 requests over HTTP in ${(performance.now() - t0).toFixed(0)} ms`);
      expect(answers.map((a) => a.text)).toEqual(mixed.map((c) => c.expected));
    });

    it('a worker SIGKILLed mid-job: the other worker answers its job, once and completely', async () => {
      const cases = long.slice(0, 4);
      const answers = withLogs(Promise.all(cases.map((c) => postChat(port, c))));
      answers.catch(() => {}); // Awaited below; a failure meanwhile is reported there.
      // Kill whichever worker runs a job first; with four long jobs queued it is mid-job.
      let victim: ServeProcess | undefined;
      await until('a running job', async () => {
        const [job] = await queue.getActive();
        victim = workers.find((w) => job?.processedBy?.endsWith(`:${w.pid}`));
        return victim !== undefined;
      }, 30_000, 10);
      victim!.kill();
      const t0 = performance.now();
      expect((await answers).map((a) => a.text)).toEqual(cases.map((c) => c.expected));
      console.log(`processes: 4 requests answered ${(performance.now() - t0).toFixed(0)} ms after a worker was killed`);
      const jobs = await Promise.all((await answers).map((a) => queue.getJob(a.id)));
      // At least one job was run again: the test killed a worker mid-job, not between jobs.
      expect(jobs.some((j) => j!.attemptsStarted > 1 || j!.stalledCounter > 0)).toBe(true);
    });

    it('Redis restarted under queued jobs: they survive and are answered', async () => {
      const cases = long.slice(4);
      const answers = withLogs(Promise.all(cases.map((c) => postChat(port, c))));
      answers.catch(() => {}); // Awaited below; a failure meanwhile is reported there.
      await until('jobs waiting', async () => (await queue.getWaitingCount()) >= 3, 10_000, 5);
      await redis.stop();
      await new Promise((r) => setTimeout(r, 500));
      await redis.start();
      expect((await answers).map((a) => a.text)).toEqual(cases.map((c) => c.expected));
    });
  });
});

/** POST /v1/chat/completions as an OpenAI client sends it; a streamed answer is put together from its chunks. */
async function postChat(port: number, c: Case): Promise<{ id: string; text: string }> {
  try {
    return await postChatOnce(port, c);
  } catch (err) {
    throw new Error(`${c.stream ? 'streamed' : 'plain'} request '${c.prompt}' (max_tokens ${c.maxTokens}${c.image ? ', image' : ''}): ${(err as Error).message}`);
  }
}

async function postChatOnce(port: number, c: Case): Promise<{ id: string; text: string }> {
  const question = c.image
    ? [{ type: 'text', text: c.prompt }, { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${IMAGE.toString('base64')}` } }]
    : c.prompt;
  const messages = [...c.history.flatMap((t) => [{ role: 'user', content: t.user }, { role: 'assistant', content: t.assistant }]), { role: 'user', content: question }];
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    // Well under the test's timeout: a lost request fails with its own name, not the whole test's.
    signal: AbortSignal.timeout(60_000),
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', messages, max_tokens: c.maxTokens, temperature: 0, stream: c.stream }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  if (!c.stream) {
    const body = (await res.json()) as { id: string; choices: { message: { content: string } }[] };
    return { id: body.id, text: body.choices[0].message.content };
  }
  let id = '';
  let text = '';
  for (const event of (await res.text()).split('\n\n')) {
    const data = event.trim().replace(/^data: /, '');
    if (data === '' || data === '[DONE]') continue;
    const chunk = JSON.parse(data) as { id: string; choices: { delta: { content?: string } }[] };
    id = chunk.id;
    text += chunk.choices[0]?.delta.content ?? '';
  }
  return { id, text };
}
