/**
 * What every command's arguments go through, read and checked in full before anything loads: a
 * typo costs no model load, and nothing reaches stdout but the answer. Each command lists its
 * options (chat-options.ts, task-options.ts); the checks of their values live here, once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../paths.js';
import { pictureFormat, PICTURE_EXTENSIONS } from './write-output.js';

/** A mistake in the command line (exit status 2). `usage`, printed after the message, when the options themselves are wrong, not a value. */
export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
  }
}

export type OptionTypes = Record<string, { type: 'string' | 'boolean'; short?: string }>;
export type OptionValues = Record<string, string | boolean | undefined>;

/** Every command's options: where the model comes from, and where its results go. */
export const COMMON_OPTIONS = {
  weights: { type: 'string' },
  f32: { type: 'boolean' },
  quiet: { type: 'boolean' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionTypes;

export interface CommonArgs {
  /** Absolute, checked to exist. */
  weights: string;
  f32: boolean;
  /** No progress, no notes: stderr holds errors only. */
  quiet: boolean;
  /** Absolute; its extension names a format sharp writes, its folder exists. */
  out?: string;
  json: boolean;
}

/** The option values, or 'help'. Throws UsageError (with `usage`) for unknown options, stray arguments and missing values. */
export function parseCommandLine(argv: string[], options: OptionTypes, usage: string): OptionValues | 'help' {
  // Not strict: node's own checks read "argument is ambiguous" for `--top-k -1`; ours below name the value.
  const { values, tokens } = parseArgs({ args: argv, options, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind === 'positional') throw new UsageError(`unexpected argument '${t.value}'`, usage);
    if (t.kind !== 'option') continue;
    const type = options[t.name]?.type;
    if (!type) throw new UsageError(`unknown option ${t.rawName}`, usage);
    if (type === 'boolean' && t.value !== undefined) throw new UsageError(`${t.rawName} takes no value, got '${t.rawName}=${t.value}'`);
    // `--seed --stats` is a forgotten value, not the seed '--stats'; `--prompt=--x` still passes.
    if (type === 'string' && (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))) throw new UsageError(`${t.rawName} needs a value`);
  }
  return values.help ? 'help' : (values as OptionValues);
}

/** What a numeric option accepts, said in the CLI's terms (the model would check it later, after loading). */
export interface NumberSpec {
  integer: boolean;
  ok: (n: number) => boolean;
  want: string;
}

const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export const SEED: NumberSpec = { integer: true, ok: (n) => n >= 0 && n < 2 ** 32, want: 'an integer in [0, 4294967295]' };
export const POSITIVE_INTEGER: NumberSpec = { integer: true, ok: (n) => n >= 1, want: 'an integer >= 1' };
export const FINITE: NumberSpec = { integer: false, ok: () => true, want: 'a finite number' };
/** A score threshold. */
export const FRACTION: NumberSpec = { integer: false, ok: (n) => n >= 0 && n <= 1, want: 'a number in [0, 1]' };

/** The option's number, or undefined when it was not given. */
export function numberOption(values: OptionValues, name: string, spec: NumberSpec): number | undefined {
  const text = values[name] as string | undefined;
  if (text === undefined) return undefined;
  // Number() alone would take '', ' 1', '0x10' and 'Infinity'.
  const n = Number(text);
  const wellFormed = spec.integer ? INTEGER.test(text) && Number.isSafeInteger(n) : DECIMAL.test(text) && Number.isFinite(n);
  if (!wellFormed || !spec.ok(n)) throw new UsageError(`--${name} must be ${spec.want}, got '${text}'`);
  return n;
}

/** One of a few words (--mode, --scheduler), or undefined. */
export function choiceOption<T extends string>(values: OptionValues, name: string, choices: readonly T[]): T | undefined {
  const text = values[name] as string | undefined;
  if (text === undefined || choices.includes(text as T)) return text as T | undefined;
  throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got '${text}'`);
}

/** Free text (--prompt), trimmed: the question may hold anything, but not nothing. */
export function textOption(values: OptionValues, name: string): string | undefined {
  const text = values[name] as string | undefined;
  if (text === undefined || text.trim()) return text?.trim();
  throw new UsageError(`--${name} must be non-empty text, got '${text}'`);
}

/**
 * A name or comma-separated names (--classes, --keypoints, --phrase), trimmed. Brackets and angle
 * brackets would add routing blocks to the model's answer; commas split it, so a --phrase has none.
 */
export function namesOption(values: OptionValues, name: string, list = true): string[] | undefined {
  const text = values[name] as string | undefined;
  if (text === undefined) return undefined;
  const names = (list ? text.split(',') : [text]).map((s) => s.trim());
  if (names.some((s) => s === '')) throw new UsageError(`--${name} must be ${list ? 'comma-separated names, none empty' : 'non-empty text'}, got '${text}'`);
  const bad = names.find((s) => /[[\]<>]/.test(s) || (!list && s.includes(',')));
  if (bad !== undefined) throw new UsageError(`--${name} '${bad}' may not hold ${list ? '' : "',', "}'[', ']', '<' or '>' (they delimit the answer's blocks)`);
  return names;
}

/** The common options checked; `--out`'s format is known before the model loads. */
export function commonArgs(values: OptionValues): CommonArgs {
  const weights = values.weights === undefined ? defaultWeights() : readable('weights', values.weights as string, 'directory');
  const out = values.out === undefined ? undefined : writable('out', values.out as string);
  return { weights, f32: values.f32 === true, quiet: values.quiet === true, out, json: values.json === true };
}

/** --image checked, else the picture the checkpoint ships as its example (example.png), else undefined. */
export function imageOption(values: OptionValues, weights: string): string | undefined {
  if (values.image !== undefined) return readable('image', values.image as string, 'file');
  const example = path.join(weights, EXAMPLE_PICTURE);
  return fs.existsSync(example) ? example : undefined;
}

/** A checkpoint directory's own example picture, what the CLI looks at when given no --image. */
const EXAMPLE_PICTURE = 'example.png';

/** The embedded default checkpoint: the miniature trained on ShapesWorld (docs/miniature.md). */
function defaultWeights(): string {
  return path.join(projectRoot(), 'weights', 'miniature');
}

/** The absolute path of an existing, readable file (anything but a folder: a pipe from `<(...)` reads too) or directory. */
export function readable(option: string, value: string, kind: 'file' | 'directory'): string {
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

/** An output path whose extension sharp writes and whose folder exists: minutes of diffusion are not lost to a typo. */
function writable(option: string, value: string): string {
  const full = path.resolve(value);
  if (!pictureFormat(full)) throw new UsageError(`--${option} '${value}': the extension must name a picture format (${PICTURE_EXTENSIONS.join(', ')})`);
  const fail = (why: string) => new UsageError(`--${option} '${value}' cannot be written: ${why}`);
  if (fs.existsSync(full) && fs.statSync(full).isDirectory()) throw fail('a directory, not a file');
  try {
    fs.accessSync(path.dirname(full), fs.constants.W_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw fail(e.code === 'ENOENT' ? `no folder ${path.dirname(value) || '.'}` : e.message);
  }
  return full;
}
