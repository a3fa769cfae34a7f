/** Element conversions at the edges the checkpoint goldens do not reach (PyTorch's values for the rest are in checkpoint.test.ts). */
import { describe, expect, it } from 'vitest';
import { f16BitsToF32 } from '../src/engine/dtype.js';
import { convertElements } from '../src/io/elements.js';

const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const u16 = (b: Uint8Array) => Array.from(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2));

describe('convertElements', () => {
  it('rounds f32 to f16 to nearest even and clamps only what would overflow', () => {
    const src = new Float32Array([65504, 65519, 65520, -1e6, Infinity, -Infinity, NaN, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 2 ** -24]);
    const { bytes: out, saturated } = convertElements(bytes(src), 'F32', 'F16', 't');
    const bits = u16(out);
    expect(bits.slice(0, 4)).toEqual([0x7bff, 0x7bff, 0x7bff, 0xfbff]);
    expect(saturated).toBe(2); // 65520 and -1e6; 65519 rounds down to 65504
    expect(bits.slice(4, 6)).toEqual([0x7c00, 0xfc00]);
    expect(Number.isNaN(f16BitsToF32(bits[6]!))).toBe(true);
    expect(bits.slice(7)).toEqual([0x3c00, 0x3c02, 0x0000, 0x0001]); // ties to even, smallest subnormal
  });

  it('rounds f32 to bf16 to nearest even and keeps NaN a NaN', () => {
    const src = new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7fc00000, 0x7f800001, 0xff800000]);
    expect(u16(convertElements(bytes(src), 'F32', 'BF16', 't').bytes)).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7fc0, 0x7fc0, 0xff80]);
  });

  it('converts integers to floats and narrower integers, checking every value fits', () => {
    const i64 = new BigInt64Array([0n, -5n, 2n ** 40n, -(2n ** 52n)]);
    expect(Array.from(new Float64Array(convertElements(bytes(i64), 'I64', 'F64', 't').bytes.buffer))).toEqual([0, -5, 2 ** 40, -(2 ** 52)]);
    expect(Array.from(new Float32Array(convertElements(bytes(new Int32Array([7, -3])), 'I32', 'F32', 't').bytes.buffer))).toEqual([7, -3]);
    expect(() => convertElements(bytes(i64), 'I64', 'I32', 'weights.bin: tensor \'ids\'')).toThrow(/weights\.bin: tensor 'ids': element 2 = 1099511627776 does not fit in I32/);
    expect(() => convertElements(bytes(new BigInt64Array([2n ** 60n])), 'I64', 'F32', 'x')).toThrow(/x: I64 element 0 does not fit in 53 bits/);
    expect(() => convertElements(bytes(new Int32Array([-1])), 'I32', 'U8', 'x')).toThrow(/element 0 = -1 does not fit in U8/);
    expect(Array.from(new Int32Array(convertElements(bytes(new BigInt64Array([-2n])), 'I64', 'I32', 'x').bytes.buffer))).toEqual([-2]);
    expect(Array.from(new BigInt64Array(convertElements(bytes(new Int32Array([-2, 9])), 'I32', 'I64', 'x').bytes.buffer))).toEqual([-2n, 9n]);
  });

  it('refuses floats to integers and partial elements', () => {
    expect(() => convertElements(new Uint8Array(4), 'F32', 'I32', 'w')).toThrow(/w: cannot convert floating-point F32 to integer I32/);
    expect(() => convertElements(new Uint8Array(3), 'F16', 'F32', 'w')).toThrow(/w: 3 bytes is not a whole number of F16 elements/);
  });
});
