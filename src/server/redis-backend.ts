/**
 * The API role of `visionllm serve --redis`: every request becomes a BullMQ job that whichever
 * worker (worker.ts, on any machine) is free takes; this process holds no model.
 *
 * - Text travels on a Redis pub/sub channel per job (redis-queue.ts: textChannel), not as job
 *   progress: progress events go through the queue's one event stream to every API process and
 *   are written into the job's hash on each token, while a job's channel reaches only the process
 *   whose client asked. AnswerStream (redis-stream.ts) stitches a retried job's text without
 *   repeating any.
 * - The end of a job comes from QueueEvents ('completed', 'failed'), and from a slow poll of the
 *   job's state, which catches an event missed while the connection was down (Redis restarted).
 * - A client that goes away removes its waiting job, and tells the worker of a running one to
 *   stop (redis-queue.ts: cancelKey, CANCEL_CHANNEL).
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { QueueFullError, type Backend, type CompletionRequest, type CompletionResult, type SubmitOptions } from './backend.js';
import { CANCEL_CHANNEL, CANCEL_TTL_SECONDS, JOB_ATTEMPTS, QUEUE_NAME, cancelKey, failedJobError, redactedUrl, redisOptions, textChannel, type TextDelta } from './redis-queue.js';
import { PendingAnswer } from './redis-pending.js';

export interface RedisBackendOptions {
  redisUrl: string;
  modelName: string;
  /** Jobs waiting or running, over all API processes, beyond which a request is refused (429). */
  queueSize: number;
  /** A request not answered by then is cancelled (0: never). */
  timeoutMs: number;
}

/** What a refused client is told to wait: about one short answer's time on a busy worker. */
const RETRY_AFTER_SECONDS = 5;
/** How often a request checks its job's state itself, in case Redis lost an event. */
const POLL_MS = 2000;
/** Jobs kept after they end, for looking into: results an hour, failures a day. */
const KEEP_COMPLETED = { age: 3600, count: 10_000 };
const KEEP_FAILED = { age: 24 * 3600, count: 10_000 };

type JobCounts = 'waiting' | 'active' | 'prioritized' | 'delayed';
const QUEUED: JobCounts[] = ['waiting', 'active', 'prioritized', 'delayed'];

export async function createRedisBackend(options: RedisBackendOptions): Promise<Backend> {
  const connection = redisOptions(options.redisUrl);
  const queue = new Queue<CompletionRequest, CompletionResult>(QUEUE_NAME, { connection });
  const events = new QueueEvents(QUEUE_NAME, { connection });
  const subscriber = new Redis(connection);
  const commands = new Redis(connection);
  // An EventEmitter without an 'error' listener throws; a restarting Redis is no reason to exit.
  const logError = (err: Error) => console.error(`redis: ${err.message}`);
  queue.on('error', logError);
  events.on('error', logError);
  // ioredis retries on its own; the queue's connection already reports the outage.
  subscriber.on('error', () => {});
  commands.on('error', () => {});
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);

  const pending = new Map<string, PendingAnswer>();
  /** Cancels under way, which close() lets finish before it closes the connections. */
  const cancels = new Set<Promise<void>>();
  let closed = false;

  subscriber.on('message', (channel: string, message: string) => {
    pending.get(channel.slice(textChannel('').length))?.accept(JSON.parse(message) as TextDelta);
  });
  events.on('completed', ({ jobId, returnvalue }) => {
    // QueueEvents parses the return value although its type says string.
    pending.get(jobId)?.complete(typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue);
  });
  events.on('failed', ({ jobId, failedReason }) => pending.get(jobId)?.fail(failedJobError(failedReason)));

  const depth = async () => {
    const counts = await queue.getJobCounts(...QUEUED);
    return QUEUED.reduce((n, state) => n + (counts[state] ?? 0), 0);
  };

  /** Takes a job out of line, or tells its worker to stop; best effort, the client is gone already. */
  const cancel = async (id: string) => {
    try {
      // The flag first: a job a worker takes between the two steps still sees it.
      await commands.set(cancelKey(id), '1', 'EX', CANCEL_TTL_SECONDS);
      await commands.publish(CANCEL_CHANNEL, id);
      // Only a waiting job: a running one is locked (the flag stops it), and an ended one keeps its record.
      const state = await queue.getJobState(id);
      if (state === 'waiting' || state === 'delayed' || state === 'prioritized') await queue.remove(id);
    } catch {
      // Redis is down: a job that runs anyway finds the flag, or its answer goes unread.
    }
  };

  /**
   * Reads the job's state every POLL_MS until the request ends: a job whose 'completed' or
   * 'failed' event was lost (the connection was down) still ends its request. Returns the stop.
   */
  const watch = (id: string, entry: PendingAnswer): (() => void) => {
    let reading = false;
    const read = async () => {
      // The state first: BullMQ writes a job's return value in the same step that completes it, so a
      // job read after its state says completed has the value; one read before could still lack it.
      const state = await queue.getJobState(id);
      if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return;
      const job: Job<CompletionRequest, CompletionResult> | undefined = await queue.getJob(id);
      if (!job || state === 'unknown') return entry.fail(new Error(`job ${id} is no longer in the queue`));
      if (state === 'completed') entry.complete(job.returnvalue);
      else entry.fail(failedJobError(job.failedReason));
    };
    const poll = setInterval(() => {
      if (reading || entry.done) return;
      reading = true;
      read()
        .catch(() => {}) // Redis is down: the next poll tries again.
        .finally(() => (reading = false));
    }, POLL_MS);
    return () => clearInterval(poll);
  };

  const submit = async (request: CompletionRequest, submitOptions: SubmitOptions): Promise<CompletionResult> => {
    const { signal } = submitOptions;
    if (closed) throw new Error('the server is shutting down');
    signal.throwIfAborted();
    // Counted, then added: API processes that race here may overshoot queueSize by a few.
    if ((await depth()) >= options.queueSize) throw new QueueFullError(options.queueSize, RETRY_AFTER_SECONDS);
    if (pending.has(request.id)) throw new Error(`a request with id ${request.id} is already running`);

    const entry = new PendingAnswer(submitOptions.onText, () => {
      const cancelling = cancel(request.id).finally(() => cancels.delete(cancelling));
      cancels.add(cancelling);
    });
    const onAbort = () => entry.abandon(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = options.timeoutMs > 0 ? setTimeout(() => entry.abandon(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs) : undefined;
    let stopWatching = () => {};
    pending.set(request.id, entry);
    try {
      await subscriber.subscribe(textChannel(request.id));
      // Subscribed before the job exists, so that no text is published before anyone listens.
      if (!entry.done) await queue.add('completion', request, {
        jobId: request.id,
        attempts: JOB_ATTEMPTS,
        backoff: { type: 'fixed', delay: 500 },
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      });
      stopWatching = watch(request.id, entry);
      return await entry.answer;
    } finally {
      signal.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      stopWatching();
      pending.delete(request.id);
      subscriber.unsubscribe(textChannel(request.id)).catch(() => {});
    }
  };

  return {
    modelName: options.modelName,
    submit,
    depth,
    async health() {
      const [counts, workers] = await Promise.all([queue.getJobCounts(...QUEUED), queue.getWorkersCount()]);
      return { backend: 'redis', redis: redactedUrl(options.redisUrl), queue: QUEUE_NAME, workers, ...counts };
    },
    async close(graceMs: number) {
      closed = true;
      const all = () => Promise.all([...pending.values()].map((p) => p.settled));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((res) => (timer = setTimeout(res, graceMs)));
      await Promise.race([all(), late]);
      clearTimeout(timer);
      for (const entry of pending.values()) entry.abandon(new Error('the server shut down before the answer was ready'));
      await all();
      await Promise.all(cancels);
      await Promise.all([events.close(), queue.close(), ...[subscriber, commands].map((c) => c.quit().catch(() => c.disconnect()))]);
    },
  };
}
