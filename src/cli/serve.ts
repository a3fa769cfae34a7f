/**
 * `visionllm serve`: the OpenAI-compatible HTTP server. Without --redis one process loads the model
 * and serves it from a bounded queue; with --redis the API role queues jobs that worker roles (on
 * this machine or others) run, and role `all` is both in one process. SIGINT or SIGTERM stops it
 * cleanly: no new requests, running work finished or cancelled within the grace period, exit 0.
 */
import type { FastifyInstance } from 'fastify';
import type { VisionLLM } from '../model/vision-llm.js';
import { buildApp } from '../server/app.js';
import type { Backend } from '../server/backend.js';
import { LocalBackend } from '../server/local-backend.js';
import { loadModel } from './load-model.js';
import { Progress } from './progress.js';
import type { ServeArgs } from './serve-options.js';

/** How long running requests may take to finish once shutdown begins, before they are cancelled. */
const GRACE_MS = 10_000;

export async function serve(args: ServeArgs): Promise<void> {
  // Listened for from the start: a signal while the model loads stops the server once it is up.
  const stopped = shutdownSignal();
  const progress = new Progress(args.quiet);
  const role = args.redis?.role;
  const model = role === 'api' ? null : await loadModel({ weights: args.weights!, f32: false, quiet: args.quiet, json: false }, progress);
  const closers: (() => Promise<void>)[] = [];
  let app: FastifyInstance | null = null;
  try {
    let backend: Backend | null = null;
    if (!args.redis) {
      backend = new LocalBackend(model!, { queueSize: args.queueSize, modelName: args.modelName });
    } else {
      // Loaded only here: a server without Redis never needs BullMQ.
      if (role !== 'api') {
        const { startWorker } = await import('../server/worker.js');
        const worker = await startWorker({ redisUrl: args.redis.url, model: model! });
        closers.push(() => worker.close(GRACE_MS));
        const { redactedUrl } = await import('../server/redis-queue.js');
        // Like "listening on", not a --quiet note: a script waits for it.
        console.error(`worker ready: taking jobs from ${redactedUrl(args.redis.url)}`);
      }
      if (role !== 'worker') {
        const { createRedisBackend } = await import('../server/redis-backend.js');
        backend = await createRedisBackend({ redisUrl: args.redis.url, modelName: args.modelName, queueSize: args.queueSize, timeoutMs: args.timeoutMs });
      }
    }
    if (backend) {
      const served = backend;
      closers.push(() => served.close(GRACE_MS));
      app = await buildApp({ backend, apiKey: args.apiKey, maxBodyBytes: args.maxBodyBytes, timeoutMs: args.timeoutMs, logger: !args.quiet });
      await app.listen({ host: args.host, port: args.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : args.port;
      // Not a --quiet note: whoever started the server (a script, a test) waits for this line.
      console.error(`listening on http://${args.host.includes(':') ? `[${args.host}]` : args.host}:${port}`);
    }
  } catch (err) {
    await Promise.allSettled([app?.close(), ...closers.map((close) => close())]);
    await model?.dispose();
    throw err;
  }
  const signal = await stopped;
  progress.note(`${signal}: shutting down (running requests get ${GRACE_MS / 1000} s to finish)`);
  await shutdown(app, closers, model);
}

/** The first SIGINT or SIGTERM; a second one while shutting down exits at once. */
function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
    const first = (signal: NodeJS.Signals) => {
      for (const s of signals) process.off(s, first);
      for (const s of signals) process.once(s, () => process.exit(130));
      resolve(signal);
    };
    for (const s of signals) process.on(s, first);
  });
}

/** The app stops taking requests while the backend and worker finish theirs (or cancel them after the grace period). */
async function shutdown(app: FastifyInstance | null, closers: (() => Promise<void>)[], model: VisionLLM | null): Promise<void> {
  // close() ends the connections idle at the time; those of requests that finish later would stay
  // open in keep-alive, so they are closed as they fall idle, and any left after the grace period are cut.
  const closeIdle = setInterval(() => app?.server.closeIdleConnections(), 100).unref();
  const cut = setTimeout(() => app?.server.closeAllConnections(), GRACE_MS + 1000).unref();
  const results = await Promise.allSettled([app?.close(), ...closers.map((close) => close())]);
  clearInterval(closeIdle);
  clearTimeout(cut);
  // LocalBackend disposed the model it serves; a worker's model is ours to dispose (twice is harmless).
  await model?.dispose();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
