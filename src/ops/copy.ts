/**
 * Copies: cast, contiguous, permute/transpose, broadcastTo, slice and concat, all through one
 * strided-copy kernel (kernels/copy.wgsl). Same-dtype 32-bit copies move raw words (exact for
 * integers); anything involving f16 converts through f32 (exact both ways; f16 stores saturate at
 * ±65504).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { KernelSpec } from '../engine/pipeline.js';
import { formatShape, numel, type Tensor } from '../engine/tensor.js';
import { shapeDivisors } from './support/divisor.js';
import { broadcastShapes, broadcastStrides, contiguousStrides, normaliseDim } from './support/shape.js';

const MAX_RANK = 8;
const WG = 64;

interface StridedCopy {
  /** Iteration shape. */
  shape: number[];
  src: Tensor;
  srcOffset: number;
  srcStrides: number[];
  dst: Tensor;
  dstOffset: number;
  dstStrides: number[];
}

/** Merges neighbouring dimensions that are contiguous in both source and destination (less index math per element). */
function collapse(c: StridedCopy): StridedCopy {
  const shape: number[] = [];
  const ss: number[] = [];
  const ds: number[] = [];
  for (let d = 0; d < c.shape.length; d++) {
    const n = c.shape[d]!;
    if (n === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && ss[last] === c.srcStrides[d]! * n && ds[last] === c.dstStrides[d]! * n) {
      shape[last] = shape[last]! * n;
      ss[last] = c.srcStrides[d]!;
      ds[last] = c.dstStrides[d]!;
    } else {
      shape.push(n);
      ss.push(c.srcStrides[d]!);
      ds.push(c.dstStrides[d]!);
    }
  }
  if (shape.length === 0) return { ...c, shape: [1], srcStrides: [1], dstStrides: [1] };
  return { ...c, shape, srcStrides: ss, dstStrides: ds };
}

/**
 * An aligned binding window around elements [first, last] of `t`: the view, and the index of
 * element `first` inside it.
 */
function window(t: Tensor, first: number, last: number): { view: Tensor; lead: number } {
  const bytes = DTYPE_BYTES[t.dtype];
  const start = t.byteOffset + first * bytes;
  const aligned = start - (start % t.engine.storageAlign);
  const lead = (start - aligned) / bytes;
  return { view: t.window(aligned, [lead + last - first + 1]), lead };
}

function stridedCopy(op: string, copy: StridedCopy): void {
  const c = collapse(copy);
  if (numel(c.shape) === 0) return;
  if (c.shape.length > MAX_RANK) throw new RangeError(`${op}: rank ${c.shape.length} after merging dimensions exceeds ${MAX_RANK}`);
  const words = c.src.dtype === c.dst.dtype && DTYPE_BYTES[c.src.dtype] === 4;
  const spec = words
    ? { file: 'copy.wgsl', entry: 'copy_words' }
    : { file: 'copy.wgsl', entry: 'copy', dtypes: { src: c.src.dtype, dst: c.dst.dtype } };
  copyBox(c, spec, words ? ['src_words', 'dst_words'] : ['src', 'dst']);
}

/** Bytes of the binding window covering `len` steps along dim 0 of a box with these strides. */
function span(c: StridedCopy, strides: number[], t: Tensor, len: number): number {
  const inner = c.shape.slice(1).reduce((sum, dim, i) => sum + (dim - 1) * strides[i + 1]!, 0);
  return ((len - 1) * strides[0]! + inner + 1) * DTYPE_BYTES[t.dtype] + t.engine.storageAlign;
}

/**
 * Copies a box, splitting it along its outermost dimension until the elements each dispatch
 * touches fit one binding in both source and destination; when even one step of that dimension is
 * too big (a transpose of a huge matrix), each step is copied as a box of one dimension less.
 */
function copyBox(c: StridedCopy, spec: KernelSpec, [srcName, dstName]: [string, string]): void {
  const engine = c.src.engine;
  const fits = (len: number) => span(c, c.srcStrides, c.src, len) <= engine.maxBindingBytes && span(c, c.dstStrides, c.dst, len) <= engine.maxBindingBytes;
  const outer = c.shape[0]!;
  const step = (i: number) => ({ ...c, srcOffset: c.srcOffset + i * c.srcStrides[0]!, dstOffset: c.dstOffset + i * c.dstStrides[0]! });
  if (!fits(1)) {
    if (c.shape.length === 1) throw new RangeError(`copy: one element exceeds the ${engine.maxBindingBytes}-byte binding limit`);
    for (let i = 0; i < outer; i++) {
      const sub = step(i);
      copyBox({ ...sub, shape: c.shape.slice(1), srcStrides: c.srcStrides.slice(1), dstStrides: c.dstStrides.slice(1) }, spec, [srcName, dstName]);
    }
    return;
  }
  let per = outer;
  while (!fits(per)) per = Math.ceil(per / 2);
  const inner = numel(c.shape) / outer;
  for (let i0 = 0; i0 < outer; i0 += per) {
    const len = Math.min(per, outer - i0);
    const box = step(i0);
    const last = (strides: number[]) => (len - 1) * strides[0]! + c.shape.slice(1).reduce((sum, dim, i) => sum + (dim - 1) * strides[i + 1]!, 0);
    const s = window(c.src, box.srcOffset, box.srcOffset + last(c.srcStrides));
    const d = window(c.dst, box.dstOffset, box.dstOffset + last(c.dstStrides));
    const count = len * inner;
    engine.run(
      { ...spec, overrides: { RANK: c.shape.length } },
      { [srcName]: s.view, [dstName]: d.view },
      {
        n: count, src_offset: s.lead, dst_offset: d.lead,
        shape: [len, ...c.shape.slice(1)], src_strides: c.srcStrides, dst_strides: c.dstStrides,
        divisors: shapeDivisors([len, ...c.shape.slice(1)]),
      },
      Math.ceil(count / WG),
    );
    s.view.dispose();
    d.view.dispose();
  }
}

/** Converts to another dtype (f32 <-> f16 and integer <-> float). */
export function cast(x: Tensor, dtype: DType): Tensor {
  const y = x.engine.empty(x.shape, dtype);
  stridedCopy('cast', { shape: [x.size], src: x, srcOffset: 0, srcStrides: [1], dst: y, dstOffset: 0, dstStrides: [1] });
  return y;
}

/** A tensor the caller owns whose data starts at a bindable (aligned) offset: a view if already so, else a copy. */
export function contiguous(x: Tensor): Tensor {
  if (x.byteOffset % x.engine.storageAlign === 0) return x.view(x.shape);
  return cast(x, x.dtype);
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const rank = x.rank;
  const order = dims.map((d) => normaliseDim('permute', d, rank));
  if (order.length !== rank || new Set(order).size !== rank) {
    throw new RangeError(`permute: [${dims.join(', ')}] is not a permutation of ${rank} dimensions of ${formatShape(x.shape)}`);
  }
  const shape = order.map((d) => x.shape[d]!);
  const own = contiguousStrides(x.shape);
  const y = x.engine.empty(shape, x.dtype);
  stridedCopy('permute', {
    shape, src: x, srcOffset: 0, srcStrides: order.map((d) => own[d]!),
    dst: y, dstOffset: 0, dstStrides: contiguousStrides(shape),
  });
  return y;
}

export function transpose(x: Tensor, dim0 = -2, dim1 = -1): Tensor {
  const order = [...x.shape.keys()];
  const [a, b] = [normaliseDim('transpose', dim0, x.rank), normaliseDim('transpose', dim1, x.rank)];
  [order[a], order[b]] = [order[b]!, order[a]!];
  return permute(x, order);
}

/** Copies x broadcast to `shape` (NumPy rules: size-1 or missing leading dimensions repeat). */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = broadcastShapes('broadcastTo', x.shape, shape);
  if (out.length !== shape.length || out.some((d, i) => d !== shape[i])) {
    throw new RangeError(`broadcastTo: ${formatShape(x.shape)} cannot be broadcast to ${formatShape(shape)}`);
  }
  const y = x.engine.empty(shape, x.dtype);
  stridedCopy('broadcastTo', {
    shape: [...shape], src: x, srcOffset: 0, srcStrides: broadcastStrides(x.shape, shape),
    dst: y, dstOffset: 0, dstStrides: contiguousStrides(shape),
  });
  return y;
}

/** Elements [start, end) along `dim`, copied into a new tensor. */
export function slice(x: Tensor, dim: number, start: number, end: number): Tensor {
  const d = normaliseDim('slice', dim, x.rank);
  const n = x.shape[d]!;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    throw new RangeError(`slice: [${start}, ${end}) out of range for dimension ${d} of ${formatShape(x.shape)}`);
  }
  const shape = [...x.shape];
  shape[d] = end - start;
  const strides = contiguousStrides(x.shape);
  const y = x.engine.empty(shape, x.dtype);
  stridedCopy('slice', {
    shape, src: x, srcOffset: start * strides[d]!, srcStrides: strides,
    dst: y, dstOffset: 0, dstStrides: contiguousStrides(shape),
  });
  return y;
}

/** Joins tensors along `dim`; all other dimensions and the dtype must agree. */
export function concat(xs: readonly Tensor[], dim: number): Tensor {
  if (xs.length === 0) throw new RangeError('concat: no tensors');
  const first = xs[0]!;
  const d = normaliseDim('concat', dim, first.rank);
  for (const t of xs) {
    const ok = t.rank === first.rank && t.dtype === first.dtype && t.shape.every((v, i) => i === d || v === first.shape[i]);
    if (!ok) {
      throw new RangeError(`concat: ${t} does not match ${first} outside dimension ${d}`);
    }
  }
  const shape = [...first.shape];
  shape[d] = xs.reduce((sum, t) => sum + t.shape[d]!, 0);
  const y = first.engine.empty(shape, first.dtype);
  const outStrides = contiguousStrides(shape);
  let at = 0;
  for (const t of xs) {
    stridedCopy('concat', {
      shape: [...t.shape], src: t, srcOffset: 0, srcStrides: contiguousStrides(t.shape),
      dst: y, dstOffset: at * outStrides[d]!, dstStrides: outStrides,
    });
    at += t.shape[d]!;
  }
  return y;
}
