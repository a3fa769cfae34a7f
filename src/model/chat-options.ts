/**
 * chat()'s options, checked before any work: a value JavaScript would coerce (a seed of 1.5, a
 * string number, a misspelt option) is an error naming the option and the value, never a guess.
 */
import { isRgbImage } from '../image/gpu-image.js';
import { IMAGE_PATCH_TOKEN, type ChatTurn } from './chat-template.js';
import { checkRegions } from './regions.js';

const SEED_LIMIT = 2 ** 32;

/** Every option chat() reads, with its check (an absent option is never checked). */
const CHECKS: Record<string, (v: unknown, name: string) => void> = {
  prompt: (v, name) => text(v, name),
  answer: (v, name) => text(v, name),
  image: (v, name) => {
    if (typeof v === 'string' || v instanceof Uint8Array) return;
    if (isRgbImage(v)) {
      const { width, height, data } = v;
      if (width >= 1 && height >= 1 && data.length === width * height * 3) return;
      throw new RangeError(`chat: ${name} is ${width}x${height} RGB pixels, which need ${width * height * 3} bytes and a size of at least 1x1; data has ${data.length}`);
    }
    throw new TypeError(`chat: ${name} must be a file path, encoded bytes (Uint8Array) or RGB pixels {width, height, data}, got ${show(v)}`);
  },
  history: (v, name) => {
    if (!Array.isArray(v)) throw new TypeError(`chat: ${name} must be an array of {user, assistant} turns, got ${show(v)}`);
    v.forEach((turn: Partial<ChatTurn>, i) => {
      if (!turn || typeof turn !== 'object') throw new TypeError(`chat: ${name}[${i}] must be a {user, assistant} turn, got ${show(turn)}`);
      text(turn.user, `${name}[${i}].user`);
      text(turn.assistant, `${name}[${i}].assistant`);
    });
  },
  regions: (v, name) => checkRegions(v, name),
  onToken: (v, name) => kind(v, name, 'function', 'a function'),
  signal: (v, name) => {
    if (!(v instanceof AbortSignal)) throw new TypeError(`chat: ${name} must be an AbortSignal, got ${show(v)}`);
  },
  imageLimits: (v, name) => kind(v, name, 'object', 'an object such as { maxPixels }'),
  decoders: (v, name) => kind(v, name, 'object', 'an object of options by decoder name'),
  maxNewTokens: (v, name) => integer(v, name, 0, Infinity),
  minNewTokens: (v, name) => integer(v, name, 0, Infinity),
  topK: (v, name) => integer(v, name, 0, Infinity),
  seed: (v, name) => integer(v, name, 0, SEED_LIMIT - 1),
  temperature: (v, name) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`chat: ${name} must be a finite number >= 0 (0: greedy), got ${show(v)}`);
  },
  topP: (v, name) => {
    if (typeof v !== 'number' || !(v > 0 && v <= 1)) throw new RangeError(`chat: ${name} must be a number in (0, 1], got ${show(v)}`);
  },
};

/** Throws on the first option that is unknown, of the wrong type or out of range. */
export function checkChatOptions(options: unknown): void {
  if (!options || typeof options !== 'object' || Array.isArray(options)) throw new TypeError(`chat: options must be an object such as { prompt, image }, got ${show(options)}`);
  const given = options as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    const check = CHECKS[key];
    if (!check) throw new TypeError(`chat: unknown option '${key}'${suggestion(key)}`);
    if (given[key] !== undefined) check(given[key], key);
  }
  if (given.prompt === undefined) throw new TypeError('chat: prompt is required (a string; may be empty)');
  const typed = [['prompt', given.prompt], ['answer', given.answer], ...((given.history as ChatTurn[] | undefined) ?? []).flatMap((t, i) => [[`history[${i}].user`, t.user], [`history[${i}].assistant`, t.assistant]])];
  for (const [name, value] of typed) {
    // The image's features are spliced over a run of these ids: one typed in text would shift it.
    if (typeof value === 'string' && value.includes(IMAGE_PATCH_TOKEN)) {
      throw new Error(`chat: ${name} contains ${IMAGE_PATCH_TOKEN}, which marks the image's positions and cannot be typed (give the image with the image option)`);
    }
  }
}

function text(v: unknown, name: string): void {
  if (typeof v !== 'string') throw new TypeError(`chat: ${name} must be a string, got ${show(v)}`);
}

function kind(v: unknown, name: string, type: 'function' | 'object', expected: string): void {
  if (typeof v !== type || v === null || Array.isArray(v)) throw new TypeError(`chat: ${name} must be ${expected}, got ${show(v)}`);
}

function integer(v: unknown, name: string, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`chat: ${name} must be an integer ${range}, got ${show(v)}`);
  }
}

/** " (did you mean maxNewTokens?)" for max_new_tokens, maxnewtokens, MaxNewTokens. */
function suggestion(key: string): string {
  const plain = (k: string) => k.replace(/[_-]/g, '').toLowerCase();
  const match = Object.keys(CHECKS).find((k) => plain(k) === plain(key));
  return match ? ` (did you mean ${match}?)` : ` (chat options: ${Object.keys(CHECKS).join(', ')})`;
}

function show(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'function') return 'a function';
  if (v instanceof Uint8Array) return `${v.constructor.name}(${v.length})`;
  try {
    const json = JSON.stringify(v);
    return json === undefined ? String(v) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
  } catch {
    return Object.prototype.toString.call(v);
  }
}
