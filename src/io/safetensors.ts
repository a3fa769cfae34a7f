/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * { dtype, shape, data_offsets: [begin, end] } (relative to the data section), then the data.
 *
 * This module parses and validates headers and reads or writes whole small files (test goldens,
 * tiny checkpoints). Every inconsistency is an error naming the file and the tensor.
 */
import fs from 'node:fs';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U32' | 'U16';

export const SAFETENSORS_DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U32: 4, U16: 2,
};

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
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (err) {
    throw new Error(`${file}: safetensors header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: safetensors header must be a JSON object`);
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const dataBytes = fileSize - dataOffset;
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${file}: tensor '${name}'`;
    if (typeof v !== 'object' || v === null) throw new Error(`${where}: entry is not an object`);
    if (typeof v.dtype !== 'string' || !(v.dtype in SAFETENSORS_DTYPE_BYTES)) throw new Error(`${where}: unknown dtype ${JSON.stringify(v.dtype)}`);
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

export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (bytes.byteLength !== expected) throw new Error(`tensor '${name}': ${t.dtype}${JSON.stringify(t.shape)} needs ${expected} bytes, got ${bytes.byteLength}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  const rawJson = new TextEncoder().encode(JSON.stringify(header));
  const jsonBytes = new Uint8Array(Math.ceil(rawJson.byteLength / 8) * 8).fill(0x20); // spaces pad the data section to 8 bytes
  jsonBytes.set(rawJson);
  const out = new Uint8Array(8 + jsonBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(jsonBytes.byteLength), true);
  out.set(jsonBytes, 8);
  let at = 8 + jsonBytes.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
}
