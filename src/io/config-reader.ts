/**
 * Typed reads of a JSON config (config.json and its sub-objects, tokenizer_config.json, ...), each
 * error naming the file, the dotted key and the value:
 * "weights/x/config.json: gdino_config.d_model must be a non-negative integer, got "256"".
 */
import fs from 'node:fs';

export type Json = Record<string, unknown>;

/** A JSON file's value, or undefined when there is no such file. */
export function readJsonFile(file: string): unknown {
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

/** A JSON file that must hold an object (see the ConfigReader constructor for `expected`), or null when there is no such file. */
export function readJsonObject(file: string, expected?: string): ConfigReader | null {
  const json = readJsonFile(file);
  return json === undefined ? null : new ConfigReader(file, json, '', expected);
}

export class ConfigReader {
  private readonly json: Json;

  /**
   * `json` must be an object; `expected` says what it should hold for the error when it is not
   * (e.g. "map token strings to ids": "file: must map token strings to ids, got an array").
   */
  constructor(
    readonly file: string,
    json: unknown,
    /** The dotted path of this object in the file ('' at the top). */
    readonly at = '',
    expected = at ? 'be an object' : 'hold a JSON object',
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${file}: ${at ? `${at} ` : ''}must ${expected}, got ${describe(json)}`);
    this.json = json as Json;
  }

  /** "file: path.key", for messages. */
  where(key: string): string {
    return `${this.file}: ${this.at ? `${this.at}.` : ''}${key}`;
  }

  /** The keys present, in the file's order. */
  keys(): string[] {
    return Object.keys(this.json);
  }

  /** Any integer, negative ones included (an index counted from the end). */
  integer(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (!Number.isInteger(v)) throw new Error(`${this.where(key)} must be an integer, got ${describe(v)}`);
    return v as number;
  }

  /** An integer >= 0 (a count, an id). */
  int(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${this.where(key)} must be a non-negative integer, got ${describe(v)}`);
    return v as number;
  }

  /** An integer >= 1: a size, a count of heads or layers, where 0 would only fail later as a NaN or empty shape. */
  positive(key: string, fallback?: number): number {
    const v = this.int(key, fallback);
    if (v < 1) throw new Error(`${this.where(key)} must be at least 1, got ${v}`);
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${this.where(key)} must be a number, got ${describe(v)}`);
    return v;
  }

  /** A finite number > 0 (an epsilon, a RoPE base). */
  positiveNumber(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`${this.where(key)} must be a positive number, got ${describe(v)}`);
    return v;
  }

  /** A non-empty string. */
  string(key: string): string {
    const v = this.json[key];
    if (typeof v !== 'string' || !v) throw new Error(`${this.where(key)} must be a non-empty string, got ${describe(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'boolean') throw new Error(`${this.where(key)} must be true or false, got ${describe(v)}`);
    return v;
  }

  str<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.json[key] ?? fallback;
    if (!allowed.includes(v as T)) throw new Error(`${this.where(key)} must be one of ${allowed.join(', ')}, got ${describe(v)}`);
    return v as T;
  }

  /** A non-empty list of integers >= 1 (Swin's depths, its heads per stage). */
  positives(key: string, fallback?: readonly number[]): number[] {
    const v = this.json[key] ?? fallback;
    if (!Array.isArray(v) || !v.length || !v.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new Error(`${this.where(key)} must be a non-empty list of integers >= 1, got ${Array.isArray(v) ? JSON.stringify(v) : describe(v)}`);
    }
    return [...(v as number[])];
  }

  /** A list of strings (out_features). */
  strings(key: string, fallback?: readonly string[]): string[] {
    const v = this.json[key] ?? fallback;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new Error(`${this.where(key)} must be a list of strings, got ${describe(v)}`);
    return [...(v as string[])];
  }

  /** The raw value, unchecked (for a value that is recognised only to be refused with its own message). */
  value(key: string): unknown {
    return this.json[key];
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  sub(key: string): ConfigReader {
    return new ConfigReader(this.file, this.json[key], this.at ? `${this.at}.${key}` : key);
  }
}

/** A JSON value for a message: as written, shortened; arrays and objects by kind; absent as nothing. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object' && v !== null) return 'an object';
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
