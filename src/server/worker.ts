/**
 * The worker role of `visionllm serve --redis`: takes the API's jobs one at a time, runs each on
 * this process's model and publishes the answer's text as it comes (redis-queue.ts: textChannel).
 *
 * A job's lock lasts LOCK_MS and is renewed while it runs; a worker that dies (SIGKILL, a lost
 * machine) stops renewing it, and the other workers' stalled check moves the job back to the
 * queue within about LOCK_MS + 2 * STALLED_CHECK_MS. The retry starts the answer again; the API
 * side sends the client only what it has not seen (redis-stream.ts).
 */
import os from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { VisionLLM } from '../model/vision-llm.js';
import type { CompletionRequest, CompletionResult } from './backend.js';
import { CANCEL_CHANNEL, cancelKey, jobFailure, QUEUE_NAME, redisOptions, textChannel, type TextDelta } from './redis-queue.js';
import { runCompletion } from './run-completion.js';

export interface WorkerOptions {
  redisUrl: string;
  model: VisionLLM;
}

/** Short, so that a dead worker's job moves on within seconds; a run renews its lock every LOCK_MS / 2. */
const LOCK_MS = 5000;
const STALLED_CHECK_MS = 5000;
/** A job whose worker died three times (a request that crashes the process) fails rather than taking down a fourth. */
const MAX_STALLED = 2;
/** How often a running job looks for its client's cancel flag, in case the cancel message was missed. */
const CANCEL_POLL_MS = 1000;

export async function startWorker(options: WorkerOptions): Promise<{ close(graceMs: number): Promise<void> }> {
  const connection = redisOptions(options.redisUrl);
  const publisher = new Redis(connection);
  const cancels = new Redis(connection);
  // ioredis reconnects by itself; the worker's own connection reports the outage.
  publisher.on('error', () => {});
  cancels.on('error', () => {});
  /** The running jobs' aborts by job id: a cancel message or close() aborts the model's generation. */
  const running = new Map<string, { abort(reason: Error): void }>();
  const cancel = (id: string) => running.get(id)?.abort(new UnrecoverableError('cancelled: the client went away'));
  await cancels.subscribe(CANCEL_CHANNEL);
  cancels.on('message', (_channel: string, id: string) => cancel(id));
  const isCancelled = (id: string) => publisher.exists(cancelKey(id)).then((n) => n > 0);

  const run = async (job: Job<CompletionRequest, CompletionResult>): Promise<CompletionResult> => {
    const id = job.id!;
    if (await isCancelled(id)) throw new UnrecoverableError('cancelled: the client went away');
    const controller = new AbortController();
    running.set(id, controller);
    const poll = setInterval(() => {
      isCancelled(id).then(
        (yes) => yes && cancel(id),
        () => {}, // Redis is down: the next poll tries again.
      );
    }, CANCEL_POLL_MS);
    // Deltas are published in order on one connection; the last one is awaited before the job
    // completes, so the client usually has all the text before the 'completed' event.
    let offset = 0;
    let published: Promise<unknown> = Promise.resolve();
    const onText = (text: string) => {
      const delta: TextDelta = { attempt: job.attemptsStarted, offset, text };
      offset += text.length;
      published = publisher.publish(textChannel(id), JSON.stringify(delta)).catch(() => {});
    };
    try {
      const result = await runCompletion(options.model, job.data, { onText, signal: controller.signal });
      await published;
      return result;
    } catch (err) {
      // A cancelled job (the abort's reason is unrecoverable) or a faulty request ends here for
      // good; any other failure, this worker shutting down included, is retried.
      throw controller.signal.aborted ? controller.signal.reason : jobFailure(err);
    } finally {
      clearInterval(poll);
      running.delete(id);
    }
  };

  const worker = new Worker<CompletionRequest, CompletionResult>(QUEUE_NAME, run, {
    connection,
    // Shown in the queue's worker list and as each job's processedBy: which machine and process ran it.
    name: `${os.hostname()}:${process.pid}`,
    concurrency: 1,
    lockDuration: LOCK_MS,
    stalledInterval: STALLED_CHECK_MS,
    maxStalledCount: MAX_STALLED,
  });
  // An EventEmitter without an 'error' listener throws; a restarting Redis is no reason to exit.
  worker.on('error', (err) => console.error(`redis: ${err.message}`));
  await worker.waitUntilReady();

  return {
    /** Takes no new job; the running one gets `graceMs` to finish, then is aborted and goes back to the queue for another worker. */
    async close(graceMs: number) {
      const closing = worker.close();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((res) => (timer = setTimeout(() => res('late'), graceMs)));
      if ((await Promise.race([closing, late])) === 'late') {
        for (const controller of running.values()) controller.abort(new Error('the worker is shutting down'));
      }
      clearTimeout(timer);
      await closing;
      await Promise.all([publisher, cancels].map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
