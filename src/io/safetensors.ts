/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * { dtype, shape, data_offsets: [begin, end] } (relative to the data section), then the data.
 *
 * Headers are validated completely before any data is touched (length bound, JSON, duplicate
 * names, known dtypes, shape x dtype size = byte range, ranges inside the file and disjoint).
 * `SafetensorsFile` reads tensors of a multi-gigabyte file by byte range; `SafetensorsWriter`
 * streams one out tensor by tensor; the whole-file helpers are for goldens and tiny checkpoints.
 * Every inconsistency is an error naming the file and the tensor.
 */
import fs from 'node:fs';
import { RandomAccessFile } from './file.js';
import { STORED_DTYPE_BYTES, isStoredDType, type StoredDType } from './elements.js';
import { findDuplicateKey } from './json-duplicates.js';
import { numelOf, pieceBytes, type TensorInfo, type TensorSource } from './tensor-source.js';

export type SafetensorsDType = StoredDType;

export const SAFETENSORS_DTYPE_BYTES = STORED_DTYPE_BYTES;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataOffset: number;
}

/** Headers beyond this are refused: real ones are kilobytes, a corrupt length could be anything. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Validates a header given its JSON bytes and the file size: known dtypes, integer shapes,
 * shape x dtype size equal to the byte range, ranges inside the file and not overlapping.
 */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const dataOffset = 8 + json.byteLength;
  let raw: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: safetensors header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: safetensors header must be a JSON object`);
  const duplicate = findDuplicateKey(text);
  if (duplicate) throw new Error(`${file}: the header names ${duplicate.length === 1 ? `tensor '${duplicate[0]}'` : `'${duplicate.join('.')}'`} twice`);
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const dataBytes = fileSize - dataOffset;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((m) => typeof m === 'string')) {
        throw new Error(`${file}: __metadata__ must map names to strings`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${file}: tensor '${name}'`;
    if (typeof v !== 'object' || v === null) throw new Error(`${where}: entry is not an object`);
    if (!isStoredDType(v.dtype)) throw new Error(`${where}: unknown dtype ${JSON.stringify(v.dtype)}`);
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape ${JSON.stringify(v.shape)} is not a list of non-negative integers`);
    }
    const offsets = v.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const dtype = v.dtype as SafetensorsDType;
    const expected = (v.shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype];
    const [begin, end] = offsets as [number, number];
    if (end - begin !== expected) {
      throw new Error(`${where}: ${dtype}${JSON.stringify(v.shape)} needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    if (end > dataBytes) throw new Error(`${where}: data ends at byte ${end} of the data section, past the end of the file (${dataBytes} data bytes)`);
    tensors.set(name, { name, dtype, shape: v.shape as number[], begin: dataOffset + begin, end: dataOffset + end });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) {
      throw new Error(`${file}: tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap in the data section`);
    }
  }
  return { tensors, metadata, dataOffset };
}

/** Reads the header of a file without reading its data. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) throw new Error(`${file}: too short for a safetensors file (${size} bytes)`);
    const lenBytes = Buffer.alloc(8);
    fs.readSync(fd, lenBytes, 0, 8, 0);
    const len = lenBytes.readBigUInt64LE(0);
    if (len > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      throw new Error(`${file}: header length ${len} exceeds the file (${size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const json = Buffer.alloc(Number(len));
    fs.readSync(fd, json, 0, json.byteLength, 8);
    return parseHeader(json, size, file);
  } finally {
    fs.closeSync(fd);
  }
}

export interface LoadedTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** The raw little-endian bytes. */
  bytes: Uint8Array;
}

/** Reads a whole (small) file: for goldens and tiny checkpoints. */
export function readSafetensors(file: string): { tensors: Map<string, LoadedTensor>; metadata: Record<string, string> } {
  const header = readHeader(file);
  const data = fs.readFileSync(file);
  const tensors = new Map<string, LoadedTensor>();
  for (const t of header.tensors.values()) {
    // Copy into a fresh, aligned buffer so typed-array views of any element size work.
    const bytes = new Uint8Array(t.end - t.begin);
    bytes.set(data.subarray(t.begin, t.end));
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, bytes });
  }
  return { tensors, metadata: header.metadata };
}

/** Reads the header of an open file. */
async function readHeaderAsync(file: RandomAccessFile): Promise<SafetensorsHeader> {
  if (file.size < 8) throw new Error(`${file.path}: too short for a safetensors file (${file.size} bytes)`);
  const len = new DataView((await file.read(0, 8, 'the header length')).buffer).getBigUint64(0, true);
  if (len > BigInt(Math.min(MAX_HEADER_BYTES, file.size - 8))) {
    throw new Error(`${file.path}: header length ${len} exceeds the file (${file.size} bytes) or the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return parseHeader(await file.read(8, Number(len), 'the header'), file.size, file.path);
}

/** One safetensors file, its tensors read by byte range. */
export class SafetensorsFile implements TensorSource {
  readonly format = 'safetensors' as const;
  readonly tensors: ReadonlyMap<string, TensorInfo>;

  private constructor(
    private readonly file: RandomAccessFile,
    private readonly header: SafetensorsHeader,
  ) {
    const infos = new Map<string, TensorInfo>();
    for (const t of header.tensors.values()) {
      infos.set(t.name, { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.end - t.begin, file: file.path });
    }
    this.tensors = infos;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const file = await RandomAccessFile.open(path);
    try {
      return new SafetensorsFile(file, await readHeaderAsync(file));
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  get path(): string {
    return this.file.path;
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  async *chunks(name: string, maxBytes: number): AsyncGenerator<Uint8Array> {
    const t = this.header.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor '${name}'`);
    const step = pieceBytes(maxBytes, SAFETENSORS_DTYPE_BYTES[t.dtype]);
    for (let at = t.begin; at < t.end; at += step) yield await this.file.read(at, Math.min(step, t.end - at), `tensor '${name}'`);
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

export interface TensorDescriptor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

/**
 * The header bytes (length prefix included) for tensors laid out back to back in the given order.
 * The JSON is padded with spaces so the data section starts 8-byte aligned.
 */
export function layoutHeader(tensors: readonly TensorDescriptor[], metadata: Record<string, string> = {}): { header: Uint8Array; dataBytes: number; ranges: Map<string, [number, number]> } {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length) json.__metadata__ = metadata;
  const ranges = new Map<string, [number, number]>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || ranges.has(t.name)) throw new Error(`tensor name '${t.name}' is ${t.name === '__metadata__' ? 'reserved' : 'used twice'}`);
    const bytes = numelOf(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    ranges.set(t.name, [offset, offset + bytes]);
    offset += bytes;
  }
  const raw = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(raw.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(raw, 8);
  return { header, dataBytes: offset, ranges };
}

/**
 * Writes a safetensors file tensor by tensor without holding it in memory: the header is known
 * from the descriptors, then each tensor's bytes are appended in order, in any number of pieces.
 * The file appears under its name only when complete (written as `<file>.partial`, then renamed).
 */
export class SafetensorsWriter {
  private index = 0;
  private written = 0;
  private readonly partial: string;

  private constructor(
    readonly file: string,
    private readonly handle: fs.promises.FileHandle,
    private readonly tensors: readonly TensorDescriptor[],
    private position: number,
  ) {
    this.partial = `${file}.partial`;
  }

  static async create(file: string, tensors: readonly TensorDescriptor[], metadata: Record<string, string> = {}): Promise<SafetensorsWriter> {
    const { header } = layoutHeader(tensors, metadata);
    const handle = await fs.promises.open(`${file}.partial`, 'w');
    try {
      await handle.write(header, 0, header.byteLength, 0);
    } catch (err) {
      await handle.close();
      await fs.promises.rm(`${file}.partial`, { force: true });
      throw err;
    }
    return new SafetensorsWriter(file, handle, tensors, header.byteLength);
  }

  /** Appends bytes of the tensor `name`, which must be the current one in the descriptors' order. */
  async write(name: string, bytes: Uint8Array): Promise<void> {
    const t = this.tensors[this.index];
    if (!t || t.name !== name) throw new Error(`${this.file}: expected data for '${t?.name ?? '(no more tensors)'}', got '${name}'`);
    const total = numelOf(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (this.written + bytes.byteLength > total) throw new Error(`${this.file}: tensor '${name}' is ${total} bytes, got more`);
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done, this.position);
      done += bytesWritten;
      this.position += bytesWritten;
    }
    this.written += bytes.byteLength;
    if (this.written === total) this.next();
  }

  /** Checks every tensor is complete, then gives the file its name. */
  async close(): Promise<void> {
    while (this.index < this.tensors.length && numelOf(this.tensors[this.index]!.shape) === 0) this.next();
    if (this.index < this.tensors.length) {
      const t = this.tensors[this.index]!;
      await this.abort();
      throw new Error(`${this.file}: tensor '${t.name}' is incomplete (${this.written} bytes written)`);
    }
    await this.handle.close();
    await fs.promises.rename(this.partial, this.file);
  }

  /** Closes and deletes the partial file. */
  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.promises.rm(this.partial, { force: true });
  }

  private next(): void {
    this.index += 1;
    this.written = 0;
    // Empty tensors have no bytes to wait for.
    while (this.index < this.tensors.length && numelOf(this.tensors[this.index]!.shape) === 0) this.index += 1;
  }
}

export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const entries = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const { header, dataBytes, ranges } = layoutHeader(entries, metadata);
  const out = new Uint8Array(header.byteLength + dataBytes);
  out.set(header);
  for (const [name, t] of Object.entries(tensors)) {
    const [begin, end] = ranges.get(name)!;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.byteLength !== end - begin) throw new Error(`tensor '${name}': ${t.dtype}${JSON.stringify(t.shape)} needs ${end - begin} bytes, got ${bytes.byteLength}`);
    out.set(bytes, header.byteLength + begin);
  }
  return out;
}

export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
}
