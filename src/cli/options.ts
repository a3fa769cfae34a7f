/**
 * The chat command's arguments, read and checked in full before anything loads: a typo costs no
 * model load, and nothing reaches stdout but the answer.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { SamplingSettings } from '../model/generate.js';
import { projectRoot } from '../paths.js';

export const USAGE = `usage: visionllm [chat] [--weights DIR] [--image FILE] [--prompt TEXT] [options]
       visionllm info

chat options:
  --weights DIR        a VisionLLM v2 or Hugging Face LLaMA checkpoint directory (default: weights/tiny)
  --image FILE         a PNG or JPEG (default with the tiny weights: its test picture)
  --prompt TEXT        the question (default: "What is in the picture? Describe the colours.")
  --max-new-tokens N   at least 1 (default 64)
  --temperature T      0 (default) decodes greedily
  --top-p P            in (0, 1] (default 1: off)
  --top-k K            0 (default) is off
  --seed S             0 to 4294967295 (default 0)
  --f32                keep weights in f32 (default: f16 matrices where the adapter can)
  --stats              print timings and memory after the answer`;

/** A mistake in the command line (exit status 2). `showUsage` when the options themselves are wrong, not a value. */
export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly showUsage = false,
  ) {
    super(message);
  }
}

export interface ChatArgs {
  /** Absolute paths, checked to exist. */
  weights: string;
  image?: string;
  prompt: string;
  sampling: SamplingSettings;
  f32: boolean;
  stats: boolean;
}

const OPTIONS = {
  weights: { type: 'string' },
  image: { type: 'string' },
  prompt: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  f32: { type: 'boolean' },
  stats: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * The numeric options: what each accepts, as generate() and sampleTokens() would check it later,
 * said here in the CLI's terms. --max-new-tokens 0 would load the model to print nothing.
 */
const NUMBERS: Record<string, { key: keyof SamplingSettings; integer: boolean; ok: (n: number) => boolean; want: string }> = {
  'max-new-tokens': { key: 'maxNewTokens', integer: true, ok: (n) => n >= 1, want: 'an integer >= 1' },
  temperature: { key: 'temperature', integer: false, ok: (n) => n >= 0, want: 'a finite number >= 0' },
  'top-p': { key: 'topP', integer: false, ok: (n) => n > 0 && n <= 1, want: 'a number in (0, 1]' },
  'top-k': { key: 'topK', integer: true, ok: (n) => n >= 0, want: 'a non-negative integer (0: off)' },
  seed: { key: 'seed', integer: true, ok: (n) => n >= 0 && n < 2 ** 32, want: 'an integer in [0, 4294967295]' },
};

/** The chat command's arguments, or 'help'. Throws UsageError naming the option and value at fault. */
export function parseChatArgs(argv: string[]): ChatArgs | 'help' {
  // Not strict: node's own checks read "argument is ambiguous" for `--top-k -1`; ours below name the value.
  const { values, tokens } = parseArgs({ args: argv, options: OPTIONS, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind === 'positional') throw new UsageError(`unexpected argument '${t.value}'`, true);
    if (t.kind !== 'option') continue;
    const type = (OPTIONS as Record<string, { type: string }>)[t.name]?.type;
    if (!type) throw new UsageError(`unknown option ${t.rawName}`, true);
    if (type === 'boolean' && t.value !== undefined) throw new UsageError(`${t.rawName} takes no value, got '${t.rawName}=${t.value}'`);
    // `--seed --stats` is a forgotten value, not the seed '--stats'; `--prompt=--x` still passes.
    if (type === 'string' && (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))) throw new UsageError(`${t.rawName} needs a value`);
  }
  if (values.help) return 'help';

  const sampling: SamplingSettings = { maxNewTokens: 64 };
  for (const [name, spec] of Object.entries(NUMBERS)) {
    const text = values[name] as string | undefined;
    if (text === undefined) continue;
    // Number() alone would take '', ' 1', '0x10' and 'Infinity'.
    const n = Number(text);
    const wellFormed = spec.integer ? INTEGER.test(text) && Number.isSafeInteger(n) : DECIMAL.test(text) && Number.isFinite(n);
    if (!wellFormed || !spec.ok(n)) throw new UsageError(`--${name} must be ${spec.want}, got '${text}'`);
    sampling[spec.key] = n;
  }

  const tiny = path.join(projectRoot(), 'weights', 'tiny');
  const weights = values.weights === undefined ? tiny : readable('weights', values.weights as string, 'directory');
  const image =
    values.image !== undefined
      ? readable('image', values.image as string, 'file')
      : sameFile(weights, tiny)
        ? path.join(projectRoot(), 'test', 'fixtures', 'images', 'wide.png')
        : undefined;
  return {
    weights,
    image,
    prompt: (values.prompt as string | undefined) ?? 'What is in the picture? Describe the colours.',
    sampling,
    f32: values.f32 === true,
    stats: values.stats === true,
  };
}

/** The absolute path of an existing, readable file (anything but a folder: a pipe from `<(...)` reads too) or directory. */
function readable(option: string, value: string, kind: 'file' | 'directory'): string {
  const fail = (why: string) => new UsageError(`--${option} '${value}' cannot be read: ${why}`);
  if (value === '') throw fail('empty path'); // path.resolve('') would be the current folder
  const full = path.resolve(value);
  let isDirectory: boolean;
  try {
    isDirectory = fs.statSync(full).isDirectory();
    fs.accessSync(full, fs.constants.R_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw fail(e.code === 'ENOENT' ? `no such ${kind}` : e.message);
  }
  if (isDirectory !== (kind === 'directory')) throw fail(isDirectory ? 'a directory, not a file' : 'not a directory');
  return full;
}

/** Whether two existing paths name the same thing, however spelled: relative, with a trailing slash, through a symlink. */
function sameFile(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}
