/**
 * Typed reads of a JSON config (config.json and its sub-objects), each error naming the file and
 * the dotted key: "weights/x/config.json: gdino_config.d_model must be a non-negative integer, got "256"".
 */
export type Json = Record<string, unknown>;

export class ConfigReader {
  constructor(
    readonly file: string,
    private readonly json: Json,
    /** The dotted path of this object in the file ('' at the top). */
    readonly at = '',
  ) {}

  /** "file: path.key", for messages. */
  where(key: string): string {
    return `${this.file}: ${this.at ? `${this.at}.` : ''}${key}`;
  }

  int(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${this.where(key)} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  }

  /** An integer >= 1. */
  positive(key: string, fallback?: number): number {
    const v = this.int(key, fallback);
    if (v < 1) throw new Error(`${this.where(key)} must be at least 1, got ${v}`);
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${this.where(key)} must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'boolean') throw new Error(`${this.where(key)} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.json[key] ?? fallback;
    if (!allowed.includes(v as T)) throw new Error(`${this.where(key)} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
  }

  /** The raw value, unchecked (for a value that is recognised only to be refused with its own message). */
  value(key: string): unknown {
    return this.json[key];
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  sub(key: string): ConfigReader {
    const v = this.json[key];
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${this.where(key)} must be an object`);
    return new ConfigReader(this.file, v as Json, this.at ? `${this.at}.${key}` : key);
  }
}

