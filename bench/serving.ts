/**
 * Serving the tiny checkpoint over HTTP (`visionllm serve`, spawned as a user runs it): requests/s,
 * completion tokens/s and p50/p99 latency at 1, 4 and 16 concurrent clients, for one process and
 * for an API process with two workers over Redis, in the same run. The baseline is the same
 * requests as direct `model.chat()` calls in this process: the ratio is what HTTP, the queue and
 * (with Redis) the job round trips cost.
 */
import path from 'node:path';
import { VisionLLM } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';
import { round, type Harness } from './harness.js';
// The test suite's redis-server and `visionllm serve` processes, shared rather than copied.
import { findRedisServer, freePort, RedisServer } from '../test/redis-server.js';
import { ServeProcess } from '../test/serve-process.js';

const CONCURRENCY = [1, 4, 16];
const MAX_TOKENS = 24;
/** Loading the tiny checkpoint and listening takes seconds; a minute means something is wrong. */
const STARTUP_MS = 60_000;
/** Every client sends each prompt once (starting at its own), so every load has the direct baseline's mix of answer lengths. */
const PROMPTS = ['What is in the picture?', 'Describe the colours.', 'Is there a red ball?', 'What is on the table?'];

interface Load {
  requestsPerSecond: number;
  tokensPerSecond: number;
  p50: number;
  p99: number;
}

export async function benchServing(h: Harness): Promise<void> {
  if (!h.wanted('serving')) return;
  const root = projectRoot();
  const weights = path.join(root, 'weights', 'tiny');
  const direct = await directRate(weights);
  console.log(`direct model.chat(): ${direct.toFixed(2)} requests/s`);

  await withServer(['--weights', weights], async (url) => {
    for (const clients of CONCURRENCY) {
      const load = await drive(url, clients);
      record(h, 'serving_single', clients, load, { ratio_to_direct: round(load.requestsPerSecond / direct, 3) });
    }
  });

  const binary = findRedisServer();
  if (!binary) {
    console.log('serving over Redis: skipped (no redis-server; scripts/setup.sh --test-tools installs it)');
    return;
  }
  const redis = await RedisServer.start(binary);
  const workers: ServeProcess[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      workers.push(ServeProcess.start(['--weights', weights, '--redis', redis.url, '--role', 'worker']));
      await workers[i]!.waitFor(/worker ready/, STARTUP_MS);
    }
    await withServer(['--weights', weights, '--redis', redis.url, '--role', 'api'], async (url) => {
      for (const clients of CONCURRENCY) {
        const load = await drive(url, clients);
        record(h, 'serving_redis_2_workers', clients, load, { ratio_to_direct: round(load.requestsPerSecond / direct, 3) });
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await redis.dispose();
  }
}

function record(h: Harness, name: string, clients: number, load: Load, extra: Record<string, number>): void {
  h.record({
    name,
    shape: `${clients} client${clients > 1 ? 's' : ''}, ${MAX_TOKENS} tokens`,
    median_ms: round(load.p50, 2),
    p99_ms: round(load.p99, 2),
    requests_per_s: round(load.requestsPerSecond, 3),
    tokens_per_s: round(load.tokensPerSecond, 2),
    clients,
    ...extra,
  });
}

/** The same requests as chat() calls, one after another: requests/s without HTTP. */
async function directRate(weights: string): Promise<number> {
  const model = await VisionLLM.load(weights);
  try {
    await model.chat({ prompt: PROMPTS[0]!, maxNewTokens: MAX_TOKENS });
    const n = 2 * PROMPTS.length;
    const start = performance.now();
    for (let i = 0; i < n; i++) await model.chat({ prompt: PROMPTS[i % PROMPTS.length]!, maxNewTokens: MAX_TOKENS });
    return n / ((performance.now() - start) / 1000);
  } finally {
    await model.dispose();
  }
}

/** `clients` loops, each sending every prompt in turn (every other request streaming). */
async function drive(url: string, clients: number): Promise<Load> {
  // Warm every model's pipelines: two at once reach both workers (each takes one job at a time).
  await Promise.all([0, 1].map((i) => complete(url, i, false)));
  const latencies: number[] = [];
  let tokens = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < PROMPTS.length; r++) {
        const t0 = performance.now();
        const answered = await complete(url, c + r, (c + r) % 2 === 1); // read before adding: `tokens += await` would lose updates
        tokens += answered;
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { requestsPerSecond: latencies.length / seconds, tokensPerSecond: tokens / seconds, p50: at(0.5), p99: at(0.99) };
}

/** One chat completion; returns its completion tokens. */
async function complete(url: string, i: number, stream: boolean): Promise<number> {
  const body = { messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length] }], max_tokens: MAX_TOKENS, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) };
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`serving bench: HTTP ${res.status}: ${await res.text()}`);
  if (!stream) return ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
  const text = await res.text();
  const usage = text
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)) as { usage?: { completion_tokens: number } })
    .find((c) => c.usage)?.usage;
  if (!usage) throw new Error('serving bench: a stream without a usage chunk');
  return usage.completion_tokens;
}

/** Runs `serve` with `args` on a free port until `body` is done. */
async function withServer<T>(args: string[], body: (url: string) => Promise<T>): Promise<T> {
  const port = await freePort();
  const server = ServeProcess.start([...args, '--port', String(port), '--queue-size', '64']);
  try {
    await server.waitFor(/listening on/, STARTUP_MS);
    return await body(`http://127.0.0.1:${port}`);
  } finally {
    await server.stop();
  }
}
