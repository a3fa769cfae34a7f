/** Shape arithmetic and the checks every op wrapper makes. Errors name the op, shapes and dtypes. */
import type { DType } from '../../engine/dtype.js';
import { formatShape, type Tensor } from '../../engine/tensor.js';

/** Row-major strides of a contiguous tensor, in elements. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d]!;
  }
  return strides;
}

/** NumPy broadcasting of two shapes; throws naming both. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(`${op}: shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides to read `shape` as if broadcast to `out` (0 along broadcast dimensions). */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): number[] {
  const own = contiguousStrides(shape);
  return out.map((_, i) => {
    const d = i - (out.length - shape.length);
    return d < 0 || shape[d] === 1 ? 0 : own[d]!;
  });
}

export function normaliseDim(op: string, dim: number, rank: number): number {
  const d = dim < 0 ? dim + rank : dim;
  if (!Number.isInteger(d) || d < 0 || d >= rank) throw new RangeError(`${op}: dimension ${dim} out of range for rank ${rank}`);
  return d;
}

export function expectDType(op: string, t: Tensor, allowed: readonly DType[], role = 'input'): void {
  if (!allowed.includes(t.dtype)) {
    throw new TypeError(`${op}: ${role} ${formatShape(t.shape)} has dtype ${t.dtype}; expected ${allowed.join(' or ')}`);
  }
}

export function expectRank(op: string, t: Tensor, min: number, role = 'input'): void {
  if (t.rank < min) throw new RangeError(`${op}: ${role} ${formatShape(t.shape)} needs rank >= ${min}`);
}

export function expectSameShape(op: string, a: Tensor, b: Tensor, roles = ['input', 'other']): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new RangeError(`${op}: ${roles[0]} ${formatShape(a.shape)} and ${roles[1]} ${formatShape(b.shape)} must have the same shape`);
  }
}

/** Size of the last dimension and the number of rows before it. */
export function rowsAndWidth(t: Tensor): { rows: number; width: number } {
  const width = t.shape[t.rank - 1] ?? 1;
  return { rows: width === 0 ? 0 : t.size / width, width };
}

export const FLOAT_DTYPES: readonly DType[] = ['f32', 'f16'];
