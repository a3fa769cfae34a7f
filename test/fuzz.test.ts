/**
 * Fuzzing the file readers with corrupt input: a safetensors file, torch.save archives (zip +
 * pickle), a PNG, a JPEG and a tokenizer.model, each mutated by random byte changes, truncation
 * and edits of their structural fields (length fields, offsets, sizes, the JSON header, the pickle
 * behind a fixed-up CRC). Every case must either load completely (every tensor read) or throw an
 * Error whose message names the file; never a crash, a non-Error throw, or a hang.
 *
 * Seeded (mulberry32), so a failure replays: it is reported with the target, case number and
 * mutation. A case that does not settle within CASE_MS fails as a hang; one that blocks the thread
 * cannot be interrupted, so the time of every case is also checked after it returns.
 * By hand: FUZZ_SEED=n and FUZZ_SCALE=k (k times the cases) search further, FUZZ_VERBOSE=1 prints
 * how each target's cases ended.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../src/image/decode.js';
import { Checkpoint } from '../src/io/checkpoint.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { TEST_DIR, TINY_WEIGHTS } from './helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240516);
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const CASE_MS = 2000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Random = () => number;

function mulberry32(seed: number): Random {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rnd: Random, items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
const below = (rnd: Random, n: number): number => Math.floor(rnd() * n);

/** A structural field: `size` bytes at `at`, little- or big-endian. */
interface Field {
  at: number;
  size: 1 | 2 | 4 | 8;
  bigEndian?: boolean;
}

/** A change to a file's bytes (in place, or a new buffer), described for the failure report. */
type Mutation = (rnd: Random, bytes: Buffer) => { bytes: Buffer; what: string };

interface Target {
  name: string;
  bytes: Buffer;
  cases: number;
  /** The format's own mutations (field edits, JSON header edits, pickle edits behind a valid CRC), besides byte changes and truncation. */
  mutations: Mutation[];
  /** Loads the mutated bytes as `file` (written there first for file readers). */
  load: (bytes: Buffer, file: string) => Promise<unknown>;
}

const changeBytes: Mutation = (rnd, bytes) => {
  const edits: string[] = [];
  for (let n = 1 + below(rnd, 4); n > 0; n--) {
    const at = below(rnd, bytes.byteLength);
    bytes[at] = below(rnd, 256);
    edits.push(`${at}=${bytes[at]}`);
  }
  return { bytes, what: `bytes ${edits.join(' ')}` };
};

const truncate: Mutation = (rnd, bytes) => {
  const length = below(rnd, bytes.byteLength);
  return { bytes: bytes.subarray(0, length), what: `truncated to ${length} bytes` };
};

/** Values that tend to break length and offset checks, for a field of `size` bytes in a file of `length`. */
function interesting(rnd: Random, size: number, old: bigint, length: number): bigint {
  const max = (1n << BigInt(8 * size)) - 1n;
  const candidates = [0n, 1n, max, max >> 1n, max - 1n, old + 1n, old - 1n, old * 2n, BigInt(length), BigInt(length) + 1n, BigInt(below(rnd, length + 64))];
  return BigInt.asUintN(8 * size, pick(rnd, candidates));
}

/** Sets one of `fields` to an interesting value. */
function editField(fields: readonly Field[]): Mutation {
  return (rnd, bytes) => {
    const f = pick(rnd, fields);
    let old = 0n;
    for (let i = 0; i < f.size; i++) old |= BigInt(bytes[f.at + (f.bigEndian ? f.size - 1 - i : i)]!) << BigInt(8 * i);
    const v = interesting(rnd, f.size, old, bytes.byteLength);
    for (let i = 0; i < f.size; i++) bytes[f.at + (f.bigEndian ? f.size - 1 - i : i)] = Number((v >> BigInt(8 * i)) & 0xffn);
    return { bytes, what: `field at ${f.at} (${f.size} bytes) = ${v}` };
  };
}

function mutate(rnd: Random, target: Target): { bytes: Buffer; what: string } {
  return pick(rnd, [changeBytes, truncate, ...target.mutations])(rnd, Buffer.from(target.bytes));
}

// Fields of the formats, found by walking each file's structure.

function zipFields(b: Buffer): Field[] {
  const fields: Field[] = [];
  const u16 = (at: number) => fields.push({ at, size: 2 });
  const u32 = (at: number) => fields.push({ at, size: 4 });
  const u64 = (at: number) => fields.push({ at, size: 8 });
  for (let at = 0; at + 4 <= b.byteLength; at++) {
    const sig = b.readUInt32LE(at);
    if (sig === 0x04034b50) [8, 26, 28].forEach((o) => u16(at + o));
    else if (sig === 0x02014b50) {
      [10, 28, 30, 32].forEach((o) => u16(at + o));
      [20, 24, 42].forEach((o) => u32(at + o));
      const extra = at + 46 + b.readUInt16LE(at + 28);
      if (b.readUInt16LE(extra) === 0x0001) [4, 12, 20].forEach((o) => u64(extra + o)); // zip64 sizes and offset
    } else if (sig === 0x06054b50) {
      [8, 10].forEach((o) => u16(at + o));
      [12, 16].forEach((o) => u32(at + o));
    } else if (sig === 0x06064b50) [24, 32, 40, 48].forEach((o) => u64(at + o));
    else if (sig === 0x07064b50) u64(at + 8);
  }
  return fields.filter((f) => f.at + f.size <= b.byteLength);
}

/** Where a stored zip entry's data lies, and where its CRC is, from the central directory (the reader checks that one). */
function zipEntry(b: Buffer, name: string): { begin: number; end: number; crcAt: number } {
  for (let at = 0; at + 46 <= b.byteLength; at++) {
    if (b.readUInt32LE(at) !== 0x02014b50 || b.toString('utf8', at + 46, at + 46 + b.readUInt16LE(at + 28)) !== name) continue;
    const local = b.readUInt32LE(at + 42);
    const begin = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    return { begin, end: begin + b.readUInt32LE(at + 20), crcAt: at + 16 };
  }
  throw new Error(`no entry ${name}`);
}

/** Edits the pickle and fixes its CRC, so that the unpickler (not the CRC check) meets the corruption. */
function pickleEdit(pkl: string): Mutation {
  return (rnd, bytes) => {
    const e = zipEntry(bytes, pkl);
    const edits: string[] = [];
    for (let n = 1 + below(rnd, 3); n > 0; n--) {
      const at = e.begin + below(rnd, e.end - e.begin);
      bytes[at] = rnd() < 0.5 ? below(rnd, 256) : pick(rnd, [0x28, 0x2e, 0x30, 0x4b, 0x51, 0x52, 0x5d, 0x61, 0x65, 0x68, 0x71, 0x73, 0x74, 0x75, 0x7d, 0x85, 0x86, 0x8a, 0x94]);
      edits.push(`${at}=${bytes[at]}`);
    }
    bytes.writeUInt32LE(zlib.crc32(bytes.subarray(e.begin, e.end)), e.crcAt);
    return { bytes, what: `pickle bytes ${edits.join(' ')} (CRC fixed)` };
  };
}

/** Edits the JSON header as text (a character, or a number swapped for an awkward one), keeping the length field true. */
const jsonEdit: Mutation = (rnd, bytes) => {
  const length = Number(bytes.readBigUInt64LE(0));
  let json = bytes.toString('latin1', 8, 8 + length);
  let what: string;
  const numbers = [...json.matchAll(/\d+/g)];
  if (rnd() < 0.5 && numbers.length) {
    const m = pick(rnd, numbers);
    const v = pick(rnd, ['-1', '0', '1.5', '1e308', '9007199254740993', '4294967296', `${length}`, `${bytes.byteLength}`, '[]', '"8"', 'null']);
    json = json.slice(0, m.index) + v + json.slice(m.index! + m[0].length);
    what = `JSON number at ${m.index} = ${v}`;
  } else {
    const at = below(rnd, json.length);
    const c = pick(rnd, [...'{}[]",:-.0123456789e\\ ']);
    json = json.slice(0, at) + c + json.slice(at + 1);
    what = `JSON char at ${at} = ${c}`;
  }
  const header = Buffer.alloc(8);
  header.writeBigUInt64LE(BigInt(json.length));
  return { bytes: Buffer.concat([header, Buffer.from(json, 'latin1'), bytes.subarray(8 + length)]), what };
};

function pngFields(b: Buffer): Field[] {
  const fields: Field[] = [{ at: 16, size: 4, bigEndian: true }, { at: 20, size: 4, bigEndian: true }, { at: 24, size: 1 }, { at: 25, size: 1 }];
  for (let at = 8; at + 8 <= b.byteLength; at += 12 + b.readUInt32BE(at)) fields.push({ at, size: 4, bigEndian: true });
  return fields;
}

function jpegFields(b: Buffer): Field[] {
  const fields: Field[] = [];
  for (let at = 2; at + 4 <= b.byteLength && b[at] === 0xff; at += 2 + b.readUInt16BE(at + 2)) {
    fields.push({ at: at + 2, size: 2, bigEndian: true });
    if (b[at + 1]! >= 0xc0 && b[at + 1]! <= 0xc3) fields.push({ at: at + 5, size: 2, bigEndian: true }, { at: at + 7, size: 2, bigEndian: true });
    if (b[at + 1] === 0xda) break; // start of scan: entropy-coded data follows
  }
  return fields;
}

async function loadCheckpoint(bytes: Buffer, file: string): Promise<void> {
  fs.writeFileSync(file, bytes);
  const ckpt = await Checkpoint.open(file);
  try {
    for (const name of ckpt.names()) await ckpt.read(name);
  } finally {
    await ckpt.close();
  }
}

/** A tokenizer directory whose tokenizer.model is `bytes`, then a sentence through it both ways. */
async function loadTokenizer(bytes: Buffer, file: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  const tok = Tokenizer.fromDirectory(path.dirname(file));
  tok.decode(tok.encode('Hello wörld, <image> 12\n'));
}

async function loadImage(bytes: Buffer, name: string): Promise<void> {
  await decodeImage(bytes, { name });
}

function safetensorsFile(): Buffer {
  const f32 = Float32Array.from({ length: 12 }, (_, i) => i - 5.5);
  return Buffer.from(encodeSafetensors({
    'w.weight': { dtype: 'F32', shape: [3, 4], data: f32 },
    'w.bias': { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0xbc00, 0x7bff) },
    'norm.bf16': { dtype: 'BF16', shape: [2], data: Uint16Array.of(0x3f80, 0xc000) },
    ids: { dtype: 'I64', shape: [2], data: BigInt64Array.of(1n, -2n) },
    mask: { dtype: 'BOOL', shape: [3], data: Uint8Array.of(1, 0, 1) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.of(3) },
    empty: { dtype: 'U8', shape: [0, 3], data: new Uint8Array(0) },
  }, { format: 'pt' }));
}

const CHECKPOINTS = path.join(TEST_DIR, 'golden', 'checkpoints');
const IMAGES = path.join(TEST_DIR, 'fixtures', 'images');

/** A torch.save archive: its zip fields, and for those with a stored pickle, pickle edits. */
function torchTarget(name: string, cases: number, pickle?: string): Target {
  const bytes = fs.readFileSync(path.join(CHECKPOINTS, name));
  return { name, bytes, cases, mutations: [editField(zipFields(bytes)), ...(pickle ? [pickleEdit(pickle)] : [])], load: loadCheckpoint };
}

function imageTarget(name: string, cases: number, fields: (b: Buffer) => Field[]): Target {
  const bytes = fs.readFileSync(path.join(IMAGES, name));
  return { name, bytes, cases, mutations: [editField(fields(bytes))], load: loadImage };
}

const TARGETS: Target[] = [
  { name: 'model.safetensors', bytes: safetensorsFile(), cases: 4000, mutations: [editField([{ at: 0, size: 8 }]), jsonEdit], load: loadCheckpoint },
  torchTarget('state_dict.bin', 4000, 'state_dict/data.pkl'),
  torchTarget('deflated-pickle.bin', 1500),
  torchTarget('zip64.bin', 2000),
  imageTarget('square.png', 1500, pngFields),
  imageTarget('small.jpg', 3000, jpegFields),
  { name: 'tiny/tokenizer.model', bytes: fs.readFileSync(path.join(TINY_WEIGHTS, 'tokenizer.model')), cases: 2000, mutations: [], load: loadTokenizer },
];

/** Runs `load` on one case; returns a failure line, or null when it loaded or was refused properly. */
async function runCase(target: Target, n: number, bytes: Buffer, what: string, outcomes: Map<string, number>): Promise<string | null> {
  const file = path.join(tmp, target.name);
  const label = `${target.name} case ${n} (${what})`;
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), CASE_MS)));
  try {
    const result = await Promise.race([target.load(bytes, file).then(() => 'loaded' as const), hang]);
    if (result === 'hang') return `${label}: no result after ${CASE_MS} ms`;
    outcomes.set('loaded', (outcomes.get('loaded') ?? 0) + 1);
  } catch (err) {
    if (!(err instanceof Error)) return `${label}: threw a non-Error ${String(err)}`;
    if (!err.message.includes(file)) return `${label}: the error does not name the file: ${err.message}`;
    const reason = err.message.replace(file, '<file>').replace(/\d+/g, 'N').slice(0, 90);
    outcomes.set(reason, (outcomes.get(reason) ?? 0) + 1);
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - start;
  return ms > CASE_MS ? `${label}: took ${ms.toFixed(0)} ms` : null;
}

describe('fuzzed checkpoints and images', () => {
  it.each(TARGETS.map((t, i) => [t.name, t, i] as const))('%s: every corrupt variant loads or is refused by name', async (_, target, index) => {
    // The unmutated file loads: the fuzz starts from valid input.
    await target.load(target.bytes, path.join(tmp, target.name));
    const rnd = mulberry32(SEED + index);
    const outcomes = new Map<string, number>();
    const failures: string[] = [];
    for (let n = 0; n < target.cases * SCALE; n++) {
      const { bytes, what } = mutate(rnd, target);
      const failure = await runCase(target, n, bytes, what, outcomes);
      if (failure) failures.push(failure);
    }
    if (process.env.FUZZ_VERBOSE) console.log(target.name, { failures: failures.length, outcomes: [...outcomes].sort((a, b) => b[1] - a[1]) });
    expect(failures.slice(0, 10)).toEqual([]);
    // Both outcomes happen: the mutations neither all miss nor all break the format.
    expect(outcomes.get('loaded') ?? 0).toBeGreaterThan(0);
    expect(outcomes.size).toBeGreaterThan(3);
  });
});
