/** The serve command's arguments (the shared checks are options.ts's). */
import path from 'node:path';
import { choiceOption, numberOption, parseCommandLine, POSITIVE_INTEGER, readable, UsageError, type NumberSpec } from './options.js';
import { SERVE_USAGE } from './usage.js';

export type ServeRole = 'all' | 'api' | 'worker';

export interface ServeArgs {
  /** Absolute, checked to exist; absent only for --role api, which loads no model. */
  weights?: string;
  /** What /v1/models lists: the checkpoint folder's name. */
  modelName: string;
  host: string;
  port: number;
  queueSize: number;
  timeoutMs: number;
  maxBodyBytes: number;
  apiKey?: string;
  /** With --redis, the API and the workers meet on its queue; without, one process does both. */
  redis?: { url: string; role: ServeRole };
  quiet: boolean;
}

const OPTIONS = {
  weights: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'queue-size': { type: 'string' },
  timeout: { type: 'string' },
  'max-body': { type: 'string' },
  'api-key': { type: 'string' },
  redis: { type: 'string' },
  role: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const PORT: NumberSpec = { integer: true, ok: (n) => n >= 0 && n <= 65535, want: 'an integer in [0, 65535] (0: any free port)' };
const SECONDS: NumberSpec = { integer: false, ok: (n) => n > 0, want: 'a number of seconds > 0' };
const ROLES: readonly ServeRole[] = ['all', 'api', 'worker'];
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30 };

/** The serve command's arguments, or 'help'. Throws UsageError naming the option and value at fault. */
export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeArgs | 'help' {
  const values = parseCommandLine(argv, OPTIONS, SERVE_USAGE);
  if (values === 'help') return 'help';
  const redisUrl = values.redis as string | undefined;
  if (redisUrl !== undefined && !/^rediss?:\/\/[^/]/.test(redisUrl)) throw new UsageError(`--redis must be a redis:// or rediss:// URL, got '${redisUrl}'`);
  const role = choiceOption(values, 'role', ROLES);
  if (role !== undefined && redisUrl === undefined) throw new UsageError('--role needs --redis: without Redis one process serves and runs the model');
  const redis = redisUrl === undefined ? undefined : { url: redisUrl, role: role ?? 'all' };
  if (values.weights === undefined && redis?.role !== 'api') throw new UsageError('--weights is required: the checkpoint directory to serve', SERVE_USAGE);
  const weights = values.weights === undefined ? undefined : readable('weights', values.weights as string, 'directory');
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  if (!host.trim()) throw new UsageError(`--host must be an address or a host name, got '${host}'`);
  const apiKey = (values['api-key'] as string | undefined) ?? env.VISIONLLM_API_KEY;
  if (apiKey !== undefined && !apiKey.trim()) throw new UsageError(`--api-key (or VISIONLLM_API_KEY) must not be empty`);
  return {
    weights,
    modelName: weights ? path.basename(weights) : 'visionllm',
    host,
    port: numberOption(values, 'port', PORT) ?? 8080,
    queueSize: numberOption(values, 'queue-size', POSITIVE_INTEGER) ?? 64,
    timeoutMs: (numberOption(values, 'timeout', SECONDS) ?? 120) * 1000,
    maxBodyBytes: sizeOption(values['max-body'] as string | undefined) ?? 32 * 2 ** 20,
    apiKey,
    redis,
    quiet: values.quiet === true,
  };
}

/** A size such as 32mb, 512kb or 1048576 (bytes); the units are binary (1mb = 1 MiB). */
function sizeOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?b?)$/i.exec(text.trim());
  const unit = match && SIZE_UNITS[match[2]!.toLowerCase().replace(/^([kmg])$/, '$1b')];
  const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : NaN;
  if (!(bytes >= 1 && Number.isSafeInteger(bytes))) throw new UsageError(`--max-body must be a size such as 32mb, 512kb or 1048576 (bytes), got '${text}'`);
  return bytes;
}
