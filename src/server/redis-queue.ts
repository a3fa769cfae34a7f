/**
 * What the API role (redis-backend.ts) and the worker role (worker.ts) agree on: the queue's name,
 * the Redis keys and channels of one job, the text messages' shape, and how a redis:// URL becomes
 * connection options.
 */
import { UnrecoverableError } from 'bullmq';
import type { RedisOptions } from 'ioredis';
import { InvalidRequestError } from './run-completion.js';

/** One queue for every API process and every worker on a Redis: a worker takes whatever job comes next. */
export const QUEUE_NAME = 'visionllm-completions';

/** Pub/sub channel on which the worker running a job publishes its answer's text. */
export const textChannel = (jobId: string) => `visionllm:text:${jobId}`;

/**
 * A client went away: the API sets this flag and publishes the job's id on CANCEL_CHANNEL. The
 * message stops a running job at once; the flag catches a job taken just after the message, or
 * by a worker whose connection was down, at its start or at its worker's next poll.
 */
export const cancelKey = (jobId: string) => `visionllm:cancel:${jobId}`;
export const CANCEL_CHANNEL = 'visionllm:cancel';

/** Long enough to outlive any run of the job, short enough that stale flags clean themselves up. */
export const CANCEL_TTL_SECONDS = 3600;

/** A job's attempts: a thrown error (a lost GPU, a crash inside the model) gets this many tries. */
export const JOB_ATTEMPTS = 3;

/**
 * A piece of the answer as one attempt of the job generated it: `offset` is where `text` starts in
 * that attempt's answer (UTF-16 units, both sides being JavaScript). A retried job starts again at
 * offset 0 with a higher attempt number.
 */
export interface TextDelta {
  attempt: number;
  offset: number;
  text: string;
}

/** Marks a failed job's reason as the request's fault, followed by the error's fields as JSON. */
const INVALID_REQUEST = 'InvalidRequestError ';

/**
 * What a worker throws for a failed run: the request's own fault is not retried, and keeps its
 * kind (the API answers 400) through the job's failedReason, the one string a failure leaves in Redis.
 */
export function jobFailure(err: unknown): unknown {
  if (!(err instanceof InvalidRequestError)) return err;
  return new UnrecoverableError(INVALID_REQUEST + JSON.stringify({ message: err.message, param: err.param, code: err.code }));
}

/** The API side of jobFailure: a failed job's reason as the error the HTTP side expects. */
export function failedJobError(failedReason: string): Error {
  if (failedReason.startsWith(INVALID_REQUEST)) {
    const { message, param, code } = JSON.parse(failedReason.slice(INVALID_REQUEST.length));
    return new InvalidRequestError(message, param, code);
  }
  return new Error(`the job failed: ${failedReason}`);
}

/**
 * ioredis options for `redis://[user:password@]host:port[/db]` (rediss:// for TLS). Blocking
 * connections need maxRetriesPerRequest null, and a command sent while Redis restarts should wait
 * for it rather than fail, so every connection gets it.
 */
export function redisOptions(redisUrl: string): RedisOptions {
  const url = new URL(redisUrl);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`--redis: expected redis://host:port or rediss://host:port, got ${redisUrl}`);
  }
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new Error(`--redis: the database in ${redisUrl} is not a number`);
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: db === '' ? 0 : Number(db),
    tls: url.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: null,
    // Reconnect quickly after a restart: jobs wait, so the queue's latency is the reconnect delay.
    retryStrategy: (times) => Math.min(100 * times, 2000),
  };
}

/** The URL without its password, for /health and logs. */
export function redactedUrl(redisUrl: string): string {
  const url = new URL(redisUrl);
  if (url.password) url.password = '***';
  return url.toString();
}
