/** Element types a tensor can hold, their sizes, and exact f16 <-> f32 conversion on the CPU. */

export type DType = 'f32' | 'f16' | 'i32' | 'u32';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'i32', 'u32'];

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** The typed array a tensor of each dtype reads back into (f16 as raw IEEE half bits). */
export type HostArray = Float32Array | Uint16Array | Int32Array | Uint32Array;

export function isFloat(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'f16';
}

export function hostArrayFor(dtype: DType, buffer: ArrayBuffer, byteOffset = 0, length?: number): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(buffer, byteOffset, length);
    case 'f16': return new Uint16Array(buffer, byteOffset, length);
    case 'i32': return new Int32Array(buffer, byteOffset, length);
    case 'u32': return new Uint32Array(buffer, byteOffset, length);
  }
}

/** The dtype a typed array naturally stores; Uint16Array is taken to hold f16 bits. */
export function dtypeOfHostArray(data: ArrayBufferView): DType {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Uint16Array) return 'f16';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint32Array) return 'u32';
  throw new TypeError(`unsupported host array ${data.constructor.name}: use Float32Array, Uint16Array (f16 bits), Int32Array or Uint32Array`);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Round-to-nearest-even conversion of one f32 to IEEE half bits, with overflow to infinity. */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflow to signed zero
    mant |= 0x800000; // make the implicit bit explicit, then shift into a subnormal
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rest > half || (rest === half && (r & 1))) r += 1;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1))) r += 1; // may carry into the exponent: still correct
  return sign | r;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]!);
  return out;
}

/** bfloat16 bits -> f32 is exact: bf16 is the top half of an f32. */
export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/** The nearest integer, ties to even: C's lrint (cvRound), NumPy's and Python 3's round(). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
