/**
 * Element types as checkpoints store them (safetensors' names, which torch storages map onto) and
 * conversion between them on the CPU, one chunk at a time.
 *
 * Float conversions round to nearest even, as PyTorch does, except that finite values beyond
 * f16's range saturate to ±65504 instead of becoming infinite (the engine's f16 stores do the
 * same); the number of saturated values is returned so callers can warn. Integer conversions
 * check every value fits. Floats never convert to integers.
 */
import type { DType, HostArray } from '../engine/dtype.js';
import { hostArrayFor } from '../engine/dtype.js';

export type StoredDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U32' | 'U16';

export const STORED_DTYPE_BYTES: Record<StoredDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U32: 4, U16: 2,
};

export function isStoredDType(s: unknown): s is StoredDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(STORED_DTYPE_BYTES, s);
}

export function isFloatStored(d: StoredDType): boolean {
  return d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';
}

/** The stored dtype of an engine dtype. */
export const STORED_OF: Record<DType, StoredDType> = { f32: 'F32', f16: 'F16', i32: 'I32', u32: 'U32' };

export interface Converted {
  /** Little-endian elements of the target dtype. */
  bytes: Uint8Array;
  /** Finite values that exceeded the target's range and were clamped (f16 only). */
  saturated: number;
}

const F16_MAX_BITS = 0x7bff;

/** Round-to-nearest-even f32 bits -> f16 bits, saturating finite overflow. Returns bits | 0x10000 when saturated. */
function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | F16_MAX_BITS | 0x10000;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && r & 1)) r += 1;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r += 1;
  if ((r & 0x7fff) >= 0x7c00) return sign | F16_MAX_BITS | 0x10000; // rounded up past 65504
  return sign | r;
}

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  let e = 113; // normalise a subnormal
  while (!(mant & 0x400)) {
    mant <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

let bf16ToF16Table: Uint32Array | null = null;
let f16ToF32Table: Uint32Array | null = null;

/** bf16 has only 65536 values: a table makes bf16 -> f16 exact and fast (bit 16 of an entry marks saturation). */
function bf16ToF16Lut(): Uint32Array {
  if (!bf16ToF16Table) {
    bf16ToF16Table = new Uint32Array(65536);
    for (let b = 0; b < 65536; b++) bf16ToF16Table[b] = f32BitsToF16((b << 16) >>> 0);
  }
  return bf16ToF16Table;
}

function f16ToF32Lut(): Uint32Array {
  if (!f16ToF32Table) {
    f16ToF32Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16ToF32Table[h] = f16BitsToF32Bits(h);
  }
  return f16ToF32Table;
}

function view<T>(ctor: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T, bytes: Uint8Array, size: number): T {
  if (bytes.byteOffset % size) throw new Error(`internal: unaligned ${size}-byte view at offset ${bytes.byteOffset}`);
  return new ctor(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
}

function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Float elements as f32 bits (exact for F16/BF16, rounded for F64). */
function floatToF32Bits(src: Uint8Array, from: StoredDType): Uint32Array {
  switch (from) {
    case 'F32': return view(Uint32Array, src, 4);
    case 'BF16': {
      const s = view(Uint16Array, src, 2);
      const out = new Uint32Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = (s[i]! << 16) >>> 0;
      return out;
    }
    case 'F16': {
      const s = view(Uint16Array, src, 2);
      const lut = f16ToF32Lut();
      const out = new Uint32Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = lut[s[i]!]!;
      return out;
    }
    case 'F64': {
      const out = new Float32Array(src.byteLength / 8);
      out.set(view(Float64Array, src, 8));
      return new Uint32Array(out.buffer);
    }
    default: throw new Error(`internal: ${from} is not a float dtype`);
  }
}

function toF16(src: Uint8Array, from: StoredDType): Converted {
  if (from === 'BF16') {
    const s = view(Uint16Array, src, 2);
    const lut = bf16ToF16Lut();
    const out = new Uint16Array(s.length);
    let saturated = 0;
    for (let i = 0; i < s.length; i++) {
      const h = lut[s[i]!]!;
      out[i] = h;
      saturated += h >>> 16;
    }
    return { bytes: asBytes(out), saturated };
  }
  const bits = floatToF32Bits(src, from);
  const out = new Uint16Array(bits.length);
  let saturated = 0;
  for (let i = 0; i < bits.length; i++) {
    const h = f32BitsToF16(bits[i]!);
    out[i] = h & 0xffff;
    saturated += h >>> 16;
  }
  return { bytes: asBytes(out), saturated };
}

function toBf16(src: Uint8Array, from: StoredDType): Converted {
  const bits = floatToF32Bits(src, from);
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) out[i] = (x >>> 16) | 0x40; // keep NaN a NaN
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16; // nearest even; may carry into the exponent, as it should
  }
  return { bytes: asBytes(out), saturated: 0 };
}

/** Integer elements as numbers, with the range each can hold. */
function integerValues(src: Uint8Array, from: StoredDType, what: string): ArrayLike<number> {
  switch (from) {
    case 'I32': return view(Int32Array, src, 4);
    case 'U32': return view(Uint32Array, src, 4);
    case 'I16': return view(Int16Array, src, 2);
    case 'U16': return view(Uint16Array, src, 2);
    case 'I8': return view(Int8Array, src, 1);
    case 'U8':
    case 'BOOL': return src;
    case 'I64': {
      // Two 32-bit halves: exact whenever the value fits in 53 bits, and an error otherwise.
      const w = view(Int32Array, src, 4);
      const out = new Float64Array(w.length / 2);
      for (let i = 0; i < out.length; i++) {
        const lo = w[2 * i]! >>> 0;
        const hi = w[2 * i + 1]!;
        if (hi > 0x1fffff || hi < -0x200000) throw new Error(`${what}: I64 element ${i} does not fit in 53 bits`);
        out[i] = hi * 4294967296 + lo;
      }
      return out;
    }
    default: throw new Error(`internal: ${from} is not an integer dtype`);
  }
}

const INT_RANGE: Partial<Record<StoredDType, [number, number]>> = {
  I32: [-2147483648, 2147483647], U32: [0, 4294967295], I16: [-32768, 32767], U16: [0, 65535], I8: [-128, 127], U8: [0, 255], BOOL: [0, 1],
};

function toInteger(src: Uint8Array, from: StoredDType, to: StoredDType, what: string): Converted {
  const values = integerValues(src, from, what);
  if (to === 'I64') {
    const out = new Int32Array(values.length * 2);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      out[2 * i] = v | 0;
      out[2 * i + 1] = v < 0 ? -1 : Math.floor(v / 4294967296);
    }
    return { bytes: asBytes(out), saturated: 0 };
  }
  const [lo, hi] = INT_RANGE[to]!;
  const Ctor = { I32: Int32Array, U32: Uint32Array, I16: Int16Array, U16: Uint16Array, I8: Int8Array, U8: Uint8Array, BOOL: Uint8Array }[to as 'I32'];
  const out = new Ctor(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo || v > hi) throw new Error(`${what}: element ${i} = ${v} does not fit in ${to}`);
    out[i] = v;
  }
  return { bytes: asBytes(out), saturated: 0 };
}

/**
 * Converts little-endian elements `from` -> `to`. `src` must start at a multiple of its element
 * size within its buffer. `what` names the tensor in errors. Same dtype returns `src` itself.
 */
export function convertElements(src: Uint8Array, from: StoredDType, to: StoredDType, what: string): Converted {
  if (src.byteLength % STORED_DTYPE_BYTES[from]) throw new Error(`${what}: ${src.byteLength} bytes is not a whole number of ${from} elements`);
  if (from === to) return { bytes: src, saturated: 0 };
  const fromFloat = isFloatStored(from);
  if (isFloatStored(to)) {
    // Integers become floats through f32 (exact below 2^24, like torch's .float()).
    const floats = fromFloat ? src : asBytes(Float32Array.from(integerValues(src, from, what)));
    const via: StoredDType = fromFloat ? from : 'F32';
    switch (to) {
      case 'F32': return { bytes: via === 'F32' ? floats : asBytes(floatToF32Bits(floats, via)), saturated: 0 };
      case 'F16': return via === 'F16' ? { bytes: floats, saturated: 0 } : toF16(floats, via);
      case 'BF16': return via === 'BF16' ? { bytes: floats, saturated: 0 } : toBf16(floats, via);
      case 'F64': {
        const bits = floatToF32Bits(floats, via);
        const out = new Float64Array(new Float32Array(bits.buffer, bits.byteOffset, bits.length));
        return { bytes: asBytes(out), saturated: 0 };
      }
    }
  }
  if (fromFloat) throw new Error(`${what}: cannot convert floating-point ${from} to integer ${to}`);
  return toInteger(src, from, to, what);
}

/** Converted elements as the typed array the engine uploads for `dtype`. */
export function toHostArray(c: Converted, dtype: DType): HostArray {
  return hostArrayFor(dtype, c.bytes.buffer as ArrayBuffer, c.bytes.byteOffset, c.bytes.byteLength / (dtype === 'f16' ? 2 : 4));
}
