/**
 * Zip archive reader for torch.save checkpoints: the central directory (with zip64 records, since
 * one shard of a 7B model is well past 4 GB) and byte ranges of stored entries, so a tensor's data
 * is read in place without extracting anything. Small deflated entries (a data.pkl re-zipped by
 * some tool) are inflated whole; deflated tensor data is refused, since it cannot be read by range.
 */
import zlib from 'node:zlib';
import type { RandomAccessFile } from './file.js';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;
/** Entries read whole into memory (data.pkl, version) must be smaller than this. */
const MAX_WHOLE_ENTRY = 1 << 30;

function u64(view: DataView, at: number, file: string, what: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${file}: zip ${what} ${v} is beyond 2^53`);
  return Number(v);
}

export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RandomAccessFile,
    readonly entries: Map<string, ZipEntry>,
  ) {}

  static async open(file: RandomAccessFile): Promise<ZipArchive> {
    const name = file.path;
    if (file.size < EOCD_MIN) throw new Error(`${name}: too short for a zip archive (${file.size} bytes)`);
    const tailLength = Math.min(file.size, EOCD_MIN + MAX_COMMENT + 20);
    const tail = await file.read(file.size - tailLength, tailLength, 'the end of central directory');
    const view = new DataView(tail.buffer);
    let eocd = -1;
    for (let i = tailLength - EOCD_MIN; i >= 0; i--) {
      if (view.getUint32(i, true) === EOCD_SIG) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error(`${name}: not a zip archive, or a truncated one (no end-of-central-directory record)`);
    let count = view.getUint16(eocd + 10, true);
    let cdSize = view.getUint32(eocd + 12, true);
    let cdOffset = view.getUint32(eocd + 16, true);
    // A zip64 locator sits just before the classic record when any field overflowed.
    if (eocd >= 20 && view.getUint32(eocd - 20, true) === ZIP64_LOCATOR_SIG) {
      const recordAt = u64(view, eocd - 20 + 8, name, 'zip64 record offset');
      const record = new DataView((await file.read(recordAt, 56, 'the zip64 end of central directory')).buffer);
      if (record.getUint32(0, true) !== ZIP64_EOCD_SIG) throw new Error(`${name}: corrupt zip64 end-of-central-directory record at byte ${recordAt}`);
      count = u64(record, 32, name, 'entry count');
      cdSize = u64(record, 40, name, 'central directory size');
      cdOffset = u64(record, 48, name, 'central directory offset');
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      throw new Error(`${name}: zip fields overflow but there is no zip64 record (corrupt archive)`);
    }
    const cd = await file.read(cdOffset, cdSize, 'the zip central directory');
    return new ZipArchive(file, parseCentralDirectory(cd, count, file));
  }

  get path(): string {
    return this.file.path;
  }

  /** The entry called `name`, with an error listing what the archive holds when it is absent. */
  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no entry '${name}' in the archive (it has ${[...this.entries.keys()].slice(0, 8).join(', ')}${this.entries.size > 8 ? ', ...' : ''})`);
    return e;
  }

  /** Absolute byte range of a stored (uncompressed) entry's data. */
  async range(entry: ZipEntry): Promise<{ begin: number; end: number }> {
    if (entry.method !== 0) {
      throw new Error(`${this.path}: entry '${entry.name}' is compressed (method ${entry.method}); tensor data must be stored uncompressed, as torch.save writes it`);
    }
    const begin = await this.dataOffset(entry);
    return { begin, end: begin + entry.size };
  }

  /** Reads a whole (small) entry, inflating it if deflated, and checks its CRC-32. */
  async read(entry: ZipEntry): Promise<Uint8Array> {
    if (entry.size > MAX_WHOLE_ENTRY) throw new Error(`${this.path}: entry '${entry.name}' is ${entry.size} bytes, too large to read whole`);
    const begin = await this.dataOffset(entry);
    const raw = await this.file.read(begin, entry.compressedSize, `zip entry '${entry.name}'`);
    let data: Uint8Array;
    if (entry.method === 0) data = raw;
    else if (entry.method === 8) {
      try {
        // Stop at the size the directory gives (a deflate bomb would otherwise expand without bound).
        data = new Uint8Array(zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) }));
      } catch (err) {
        throw new Error(`${this.path}: entry '${entry.name}' does not inflate (${(err as Error).message})`);
      }
    } else throw new Error(`${this.path}: entry '${entry.name}' uses compression method ${entry.method}; only stored and deflated entries are supported`);
    if (data.byteLength !== entry.size) throw new Error(`${this.path}: entry '${entry.name}' has ${data.byteLength} bytes, the directory says ${entry.size}`);
    if (crc32(data) !== entry.crc32) throw new Error(`${this.path}: entry '${entry.name}' fails its CRC-32 check (corrupt file)`);
    return data;
  }

  private async dataOffset(entry: ZipEntry): Promise<number> {
    const known = this.dataOffsets.get(entry.name);
    if (known !== undefined) return known;
    const header = new DataView((await this.file.read(entry.localHeaderOffset, 30, `the local header of '${entry.name}'`)).buffer);
    if (header.getUint32(0, true) !== LOCAL_SIG) throw new Error(`${this.path}: corrupt local header for '${entry.name}' at byte ${entry.localHeaderOffset}`);
    // torch pads the local header's extra field so that data starts 64-byte aligned: read its length here.
    const begin = entry.localHeaderOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
    if (begin + entry.compressedSize > this.file.size) {
      throw new Error(`${this.path}: entry '${entry.name}' needs bytes ${begin}..${begin + entry.compressedSize} but the file has ${this.file.size} bytes (truncated)`);
    }
    this.dataOffsets.set(entry.name, begin);
    return begin;
  }
}

let crcTable: Uint32Array | null = null;

/** CRC-32 as zip uses it: zlib's when this Node has it (20.15+), else a table-driven one. */
function crc32(data: Uint8Array): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function parseCentralDirectory(cd: Uint8Array, count: number, file: RandomAccessFile): Map<string, ZipEntry> {
  const name = file.path;
  const view = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const utf8 = new TextDecoder('utf-8');
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > cd.byteLength || view.getUint32(at, true) !== CENTRAL_SIG) throw new Error(`${name}: corrupt zip central directory at entry ${i}`);
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc32 = view.getUint32(at + 16, true);
    let compressedSize = view.getUint32(at + 20, true);
    let size = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    let localHeaderOffset = view.getUint32(at + 42, true);
    const recordEnd = at + 46 + nameLength + extraLength + commentLength;
    if (recordEnd > cd.byteLength) throw new Error(`${name}: corrupt zip central directory: entry ${i} runs to byte ${recordEnd} of ${cd.byteLength}`);
    const entryName = utf8.decode(cd.subarray(at + 46, at + 46 + nameLength));
    if (flags & 1) throw new Error(`${name}: zip entry '${entryName}' is encrypted`);
    // The zip64 extra field holds, in this order, whichever of the three fields overflowed.
    let extra = at + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = view.getUint16(extra, true);
      const length = view.getUint16(extra + 2, true);
      if (extra + 4 + length > extraEnd) throw new Error(`${name}: zip entry '${entryName}' has an extra field running past its record`);
      if (id === 0x0001) {
        const overflowed = [size, compressedSize, localHeaderOffset].filter((v) => v === 0xffffffff).length;
        if (8 * overflowed > length) throw new Error(`${name}: zip entry '${entryName}' has a short zip64 extra field`);
        let p = extra + 4;
        const what = `entry '${entryName}' zip64 field`;
        if (size === 0xffffffff) [size, p] = [u64(view, p, name, what), p + 8];
        if (compressedSize === 0xffffffff) [compressedSize, p] = [u64(view, p, name, what), p + 8];
        if (localHeaderOffset === 0xffffffff) [localHeaderOffset, p] = [u64(view, p, name, what), p + 8];
      }
      extra += 4 + length;
    }
    if (entries.has(entryName)) throw new Error(`${name}: zip entry '${entryName}' appears twice`);
    if (localHeaderOffset + 30 > file.size) {
      throw new Error(`${name}: zip entry '${entryName}' starts at byte ${localHeaderOffset}, past the end of the file (${file.size} bytes; truncated)`);
    }
    entries.set(entryName, { name: entryName, method, compressedSize, size, crc32, localHeaderOffset });
    at = recordEnd;
  }
  return entries;
}
