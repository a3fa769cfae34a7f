/**
 * One interface over checkpoints in either format, single-file or sharded:
 *
 *   const ckpt = await Checkpoint.open('weights/');   // a directory, a file, or a shard index
 *   ckpt.list();                                       // [{ name, dtype, shape, byteLength, file }]
 *   const bytes = await ckpt.read('vl_bridge.0.bias'); // raw stored bytes (BF16, F32, I64, ...)
 *   const w = await ckpt.upload(engine, 'llm.lm_head.weight');  // f16 on the GPU by default
 *   await ckpt.close();
 *
 * Data moves in bounded pieces (8 MiB of the file at a time): read, converted on the CPU, written
 * to the GPU; a multi-gigabyte shard is never in memory. When loading fails part way, every tensor
 * it allocated is disposed before the error is thrown.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { STORED_DTYPE_BYTES, STORED_OF, convertElements, isFloatStored, toHostArray, type StoredDType } from './elements.js';
import { findDuplicateKey } from './json-duplicates.js';
import { SafetensorsFile } from './safetensors.js';
import { numelOf, type TensorInfo, type TensorSource } from './tensor-source.js';
import { TorchCheckpoint } from './torch-checkpoint.js';

export type { TensorInfo } from './tensor-source.js';

/** Bytes of the file read per piece. */
export const PIECE_BYTES = 8 * 1024 * 1024;
/** Uploaded bytes after which loading waits for the GPU, so Dawn's staging copies stay bounded. */
const SYNC_BYTES = 256 * 1024 * 1024;

/** Which engine dtype each class of tensor is stored in on the GPU. */
export interface StoragePolicy {
  /** Float tensors of rank >= 2: Linear, convolution and embedding weights. */
  matrix: DType;
  /** Float tensors of rank <= 1: biases, norm scales, scalars. */
  vector: DType;
  /** Integer and boolean tensors. */
  integer: DType;
  /** A per-tensor choice, consulted first (e.g. keep one sensitive matrix in f32). */
  override?: (info: TensorInfo) => DType | undefined;
}

/** f16 matrices when the adapter has shader-f16, f32 vectors (they are small and feed reductions), i32 integers. */
export function defaultStoragePolicy(engine: Engine): StoragePolicy {
  return { matrix: engine.has('shader-f16') ? 'f16' : 'f32', vector: 'f32', integer: 'i32' };
}

export function storageDType(info: TensorInfo, policy: StoragePolicy): DType {
  const chosen = policy.override?.(info);
  if (chosen) return chosen;
  if (!isFloatStored(info.dtype)) return policy.integer;
  return info.shape.length >= 2 ? policy.matrix : policy.vector;
}

export interface UploadOptions {
  /** The GPU dtype; by default chosen by `policy`. */
  dtype?: DType;
  policy?: StoragePolicy;
  /** Exact-size buffers outside the pool's buckets (default true: weights live long). */
  persistent?: boolean;
  /** Told about values clamped to f16's range; default console.warn. */
  warn?: (message: string) => void;
  /** Bytes of the file read, converted and written per piece (default PIECE_BYTES). */
  pieceBytes?: number;
}

export interface Progress {
  /** Bytes of the checkpoint read so far and in all. */
  bytesDone: number;
  bytesTotal: number;
  tensor: string;
}

export interface UploadAllOptions extends Omit<UploadOptions, 'dtype'> {
  /** Which tensors (default all). */
  names?: readonly string[];
  onProgress?: (p: Progress) => void;
}

const INDEX_FILES = ['model.safetensors.index.json', 'model.safetensors', 'pytorch_model.bin.index.json', 'pytorch_model.bin'];

export class Checkpoint {
  private constructor(
    /** The file or directory opened. */
    readonly path: string,
    readonly format: 'safetensors' | 'pytorch',
    private readonly sources: readonly TensorSource[],
    private readonly owner: ReadonlyMap<string, TensorSource>,
  ) {}

  /** Opens a directory (sharded or not), a single .safetensors / .bin file, or a shard index .json. */
  static async open(location: string): Promise<Checkpoint> {
    const file = resolveCheckpointFile(location);
    if (file.endsWith('.json')) return Checkpoint.openIndex(location, file);
    const source = await openSource(file);
    return new Checkpoint(location, source.format, [source], new Map([...source.tensors.keys()].map((n) => [n, source])));
  }

  private static async openIndex(location: string, indexFile: string): Promise<Checkpoint> {
    const weightMap = readShardIndex(indexFile);
    const dir = path.dirname(indexFile);
    const shardNames = [...new Set(weightMap.values())];
    const sources: TensorSource[] = [];
    try {
      for (const shard of shardNames) {
        const shardPath = path.resolve(dir, shard);
        if (path.relative(dir, shardPath).startsWith('..') || path.isAbsolute(shard)) throw new Error(`${indexFile}: shard '${shard}' is outside the checkpoint directory`);
        if (!fs.existsSync(shardPath)) {
          const held = [...weightMap].filter(([, s]) => s === shard).map(([name]) => name);
          const more = held.length > 1 ? ` and ${held.length - 1} more` : '';
          throw new Error(`${indexFile}: shard '${shard}' is missing (${shardPath} does not exist); it should hold tensor '${held[0]}'${more}`);
        }
        sources.push(await openSource(shardPath));
      }
      const formats = new Set(sources.map((s) => s.format));
      if (formats.size > 1) throw new Error(`${indexFile}: shards mix safetensors and PyTorch files`);
      const owner = new Map<string, TensorSource>();
      for (const s of sources) {
        for (const name of s.tensors.keys()) {
          const other = owner.get(name);
          if (other) throw new Error(`${indexFile}: tensor '${name}' is in both ${other.path} and ${s.path}`);
          owner.set(name, s);
        }
      }
      for (const [name, shard] of weightMap) {
        const s = owner.get(name);
        if (!s || path.resolve(s.path) !== path.resolve(dir, shard)) {
          throw new Error(`${indexFile}: maps tensor '${name}' to '${shard}', but ${s ? `it is in ${s.path}` : 'that shard has no such tensor'}`);
        }
      }
      return new Checkpoint(location, sources[0]?.format ?? 'safetensors', sources, owner);
    } catch (err) {
      await Promise.all(sources.map((s) => s.close()));
      throw err;
    }
  }

  /** The files the tensors are read from. */
  get files(): string[] {
    return this.sources.map((s) => s.path);
  }

  /** `__metadata__` of safetensors files (merged over shards). */
  get metadata(): Record<string, string> {
    return Object.assign({}, ...this.sources.map((s) => s.metadata)) as Record<string, string>;
  }

  names(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  list(): TensorInfo[] {
    return this.names().map((n) => this.info(n));
  }

  info(name: string): TensorInfo {
    const s = this.owner.get(name);
    if (!s) {
      const stem = name.split('.').slice(0, -1).join('.');
      const near = this.names().filter((n) => stem && n.startsWith(stem)).slice(0, 5);
      throw new Error(`${this.path}: no tensor '${name}' (${this.owner.size} tensors${near.length ? `; similar: ${near.join(', ')}` : ''})`);
    }
    return s.tensors.get(name)!;
  }

  /** Bytes of all tensors as stored. */
  get totalBytes(): number {
    let n = 0;
    for (const s of this.sources) for (const t of s.tensors.values()) n += t.byteLength;
    return n;
  }

  /** The stored bytes of a tensor, contiguous, in pieces of at most `maxBytes`. */
  chunks(name: string, maxBytes = PIECE_BYTES): AsyncGenerator<Uint8Array> {
    this.info(name);
    return this.owner.get(name)!.chunks(name, maxBytes);
  }

  /** All stored bytes of a tensor (its own dtype, little-endian, row-major). */
  async read(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const out = new Uint8Array(info.byteLength);
    let at = 0;
    for await (const piece of this.chunks(name)) {
      out.set(piece, at);
      at += piece.byteLength;
    }
    return out;
  }

  /** A tensor converted to another stored dtype (e.g. BF16 -> F32), with the count of values clamped to f16's range. */
  async readAs(name: string, dtype: StoredDType): Promise<{ bytes: Uint8Array; saturated: number }> {
    const info = this.info(name);
    const parts: Uint8Array[] = [];
    let saturated = 0;
    for await (const piece of this.chunks(name)) {
      const c = convertElements(piece, info.dtype, dtype, `${info.file}: tensor '${name}'`);
      parts.push(c.bytes);
      saturated += c.saturated;
    }
    if (parts.length === 1) return { bytes: parts[0]!, saturated };
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return { bytes: out, saturated };
  }

  /** Uploads one tensor to the GPU, converting on the way; waits for the GPU so errors surface here. */
  async upload(engine: Engine, name: string, options: UploadOptions = {}): Promise<Tensor> {
    const t = await this.uploadOne(engine, name, options, () => undefined);
    try {
      await engine.sync();
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  /** Uploads many tensors (all by default). On any failure, disposes those already uploaded. */
  async uploadAll(engine: Engine, options: UploadAllOptions = {}): Promise<Map<string, Tensor>> {
    const names = options.names ?? this.names();
    names.forEach((n) => this.info(n)); // unknown names fail before anything is allocated
    const total = names.reduce((n, name) => n + this.info(name).byteLength, 0);
    const out = new Map<string, Tensor>();
    let done = 0;
    try {
      for (const name of names) {
        out.set(name, await this.uploadOne(engine, name, options, (bytes) => {
          done += bytes;
          options.onProgress?.({ bytesDone: done, bytesTotal: total, tensor: name });
        }));
      }
      await engine.sync();
      return out;
    } catch (err) {
      for (const t of out.values()) t.dispose();
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close()));
  }

  private async uploadOne(engine: Engine, name: string, options: UploadOptions, progress: (bytes: number) => void): Promise<Tensor> {
    const info = this.info(name);
    const dtype = options.dtype ?? storageDType(info, options.policy ?? defaultStoragePolicy(engine));
    const where = `${info.file}: tensor '${name}'`;
    if (isFloatStored(info.dtype) && (dtype === 'i32' || dtype === 'u32')) throw new Error(`${where}: cannot upload floating-point ${info.dtype} as ${dtype}`);
    const t = engine.empty(info.shape, dtype, { persistent: options.persistent ?? true });
    try {
      let element = 0;
      let saturated = 0;
      let sinceSync = 0;
      // Pieces hold an even number of elements so every write of f16 lands on whole 4-byte words.
      const pair = 2 * STORED_DTYPE_BYTES[info.dtype];
      const step = Math.max(pair, Math.floor((options.pieceBytes ?? PIECE_BYTES) / pair) * pair);
      for await (const piece of this.chunks(name, step)) {
        const converted = convertElements(piece, info.dtype, STORED_OF[dtype], where);
        const host = toHostArray(converted, dtype);
        const view = t.view([host.length], element);
        try {
          engine.write(view, host);
        } finally {
          view.dispose();
        }
        element += host.length;
        saturated += converted.saturated;
        progress(piece.byteLength);
        sinceSync += host.byteLength;
        if (sinceSync >= SYNC_BYTES) {
          await engine.sync();
          sinceSync = 0;
        }
      }
      if (element !== numelOf(info.shape)) throw new Error(`${where}: read ${element} of ${numelOf(info.shape)} elements`);
      if (saturated) (options.warn ?? console.warn)(`${where}: ${saturated} value(s) beyond f16's range were clamped to ±65504`);
      return t;
    } catch (err) {
      t.dispose();
      throw err;
    }
  }
}

/** The file a location stands for: itself, or the index / single file found in a directory. */
export function resolveCheckpointFile(location: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(location);
  } catch {
    throw new Error(`${location}: no such file or directory`);
  }
  if (!stat.isDirectory()) return location;
  for (const name of INDEX_FILES) {
    const p = path.join(location, name);
    if (fs.existsSync(p)) return p;
  }
  const files = fs.readdirSync(location);
  const indexes = files.filter((f) => f.endsWith('.safetensors.index.json') || f.endsWith('.bin.index.json'));
  const singles = files.filter((f) => f.endsWith('.safetensors') || f.endsWith('.bin') || f.endsWith('.pt') || f.endsWith('.pth'));
  if (indexes.length === 1) return path.join(location, indexes[0]!);
  if (!indexes.length && singles.length === 1) return path.join(location, singles[0]!);
  throw new Error(`${location}: cannot tell which checkpoint to open: looked for ${INDEX_FILES.join(', ')}${indexes.length + singles.length ? `; found several candidates (${[...indexes, ...singles].join(', ')}), open one of them directly` : '; found none'}`);
}

/** The weight map of a Hugging Face shard index: tensor name -> shard file name. */
export function readShardIndex(file: string): Map<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read the shard index (${(err as Error).message})`);
  }
  let raw: { weight_map?: unknown };
  try {
    raw = JSON.parse(text) as { weight_map?: unknown };
  } catch (err) {
    throw new Error(`${file}: the shard index is not valid JSON (${(err as Error).message})`);
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate) throw new Error(`${file}: names '${duplicate.at(-1)}' twice (in ${duplicate.slice(0, -1).join('.') || 'the top level'})`);
  const map = raw.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${file}: the shard index has no "weight_map" object`);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || !shard) throw new Error(`${file}: tensor '${name}' maps to ${JSON.stringify(shard)}, not a file name`);
    out.set(name, shard);
  }
  return out;
}

async function openSource(file: string): Promise<TensorSource> {
  return file.endsWith('.safetensors') ? SafetensorsFile.open(file) : TorchCheckpoint.open(file);
}
