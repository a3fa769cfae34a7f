/**
 * Elementwise ops: activations and scaling (unary), and add/sub/mul/div with NumPy broadcasting.
 * Arithmetic is f32 whatever the storage dtype. Mixed f32/f16 inputs give an f32 output.
 */
import type { DType } from '../engine/dtype.js';
import { DTYPE_BYTES } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { activationCode, type Activation } from './support/activation.js';
import { rowChunks } from './support/chunks.js';
import { shapeDivisors } from './support/divisor.js';
import { broadcastShapes, broadcastStrides, expectDType, FLOAT_DTYPES } from './support/shape.js';

const KERNEL = 'elementwise.wgsl';
/** Elements per workgroup (kernels/elementwise.wgsl PER_GROUP). */
const PER_GROUP = 1024;
const MAX_RANK = 8;
const NO_SHAPE = { rank: 0, out_shape: [], a_strides: [], b_strides: [], divisors: [] };

export interface UnaryOptions {
  /** y = act(alpha * x + beta) */
  alpha?: number;
  beta?: number;
  dtype?: DType;
}

export function unary(x: Tensor, act: Activation, options: UnaryOptions = {}): Tensor {
  const op = act === 'none' ? 'scale' : act;
  expectDType(op, x, FLOAT_DTYPES);
  const dtype = options.dtype ?? x.dtype;
  const engine = x.engine;
  const y = engine.empty(x.shape, dtype);
  const flatX = x.reshape([x.size]);
  const flatY = y.reshape([y.size]);
  for (const [r0, r1] of rowChunks(engine, op, x.size, [DTYPE_BYTES[x.dtype], DTYPE_BYTES[dtype]])) {
    const xs = flatX.rows(r0, r1);
    const ys = flatY.rows(r0, r1);
    engine.run(
      { file: KERNEL, entry: 'unary', dtypes: { x: x.dtype, y: dtype }, overrides: { ACT: activationCode(op, act) } },
      { x: xs, y: ys },
      { n: r1 - r0, alpha: options.alpha ?? 1, beta: options.beta ?? 0, ...NO_SHAPE },
      Math.ceil((r1 - r0) / PER_GROUP),
    );
    xs.dispose();
    ys.dispose();
  }
  flatX.dispose();
  flatY.dispose();
  return y;
}

/**
 * act(first half) * second half of the last dimension: [..., 2h] -> [..., h]. With 'silu' this is
 * LLaMA's SwiGLU over a fused gate|up projection.
 */
export function gated(x: Tensor, act: Activation, dtype?: DType): Tensor {
  expectDType('gated', x, FLOAT_DTYPES);
  const width = x.shape[x.rank - 1] ?? 0;
  if (x.rank < 1 || width % 2) throw new RangeError(`gated: the last dimension of ${formatShape(x.shape)} must be even (act half | linear half)`);
  const half = width / 2;
  const rows = half === 0 ? 0 : x.size / width;
  const outType = dtype ?? x.dtype;
  const engine = x.engine;
  const y = engine.empty([...x.shape.slice(0, -1), half], outType);
  const x2 = x.reshape([rows, width]);
  const y2 = y.reshape([rows, half]);
  for (const [r0, r1] of rowChunks(engine, 'gated', rows, [width * DTYPE_BYTES[x.dtype], half * DTYPE_BYTES[outType]])) {
    const views = { x: x2.rows(r0, r1), y: y2.rows(r0, r1) };
    const n = (r1 - r0) * half;
    engine.run(
      { file: KERNEL, entry: 'gated', dtypes: { x: x.dtype, y: outType }, overrides: { ACT: activationCode('gated', act) } },
      views,
      { n, alpha: 1, beta: 0, ...NO_SHAPE, rank: half },
      Math.ceil(n / PER_GROUP),
    );
    Object.values(views).forEach((v) => v.dispose());
  }
  x2.dispose();
  y2.dispose();
  return y;
}

export const relu = (x: Tensor) => unary(x, 'relu');
/** GELU, exact erf form (PyTorch's default). */
export const gelu = (x: Tensor) => unary(x, 'gelu');
/** GELU, tanh approximation. */
export const geluTanh = (x: Tensor) => unary(x, 'gelu_tanh');
export const quickGelu = (x: Tensor) => unary(x, 'quick_gelu');
export const silu = (x: Tensor) => unary(x, 'silu');
export const sigmoid = (x: Tensor) => unary(x, 'sigmoid');
export const scale = (x: Tensor, factor: number) => unary(x, 'none', { alpha: factor });
/** 1 / sqrt(x + shift): a batch norm's scale from its variance and eps. */
export const rsqrt = (x: Tensor, shift = 0) => unary(x, 'rsqrt', { beta: shift });

const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3 } as const;
type BinaryOp = keyof typeof BINARY_OPS;

export interface BinaryOptions {
  /** Activation fused after the op. */
  act?: Activation;
  dtype?: DType;
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor, options: BinaryOptions = {}): Tensor {
  expectDType(op, a, FLOAT_DTYPES, 'first input');
  expectDType(op, b, FLOAT_DTYPES, 'second input');
  const shape = broadcastShapes(op, a.shape, b.shape);
  if (shape.length > MAX_RANK) throw new RangeError(`${op}: rank ${shape.length} exceeds ${MAX_RANK}`);
  const dtype = options.dtype ?? (a.dtype === b.dtype ? a.dtype : 'f32');
  const engine = a.engine;
  const y = engine.empty(shape, dtype);
  const sameShape = a.size === y.size && b.size === y.size;
  const spec = {
    file: KERNEL,
    entry: 'binary',
    dtypes: { a: a.dtype, b: b.dtype, y: dtype },
    overrides: { OP: BINARY_OPS[op], ACT: activationCode(op, options.act), BROADCAST: !sameShape, RANK: sameShape ? 1 : shape.length },
  };

  if (sameShape) {
    // One flat range; split only where a binding would be too large.
    const [fa, fb, fy] = [a, b, y].map((t) => t.reshape([t.size])) as [Tensor, Tensor, Tensor];
    const bytes = [fa, fb, fy].map((t) => DTYPE_BYTES[t.dtype]);
    for (const [r0, r1] of rowChunks(engine, op, y.size, bytes)) {
      const views = { a: fa.rows(r0, r1), b: fb.rows(r0, r1), y: fy.rows(r0, r1) };
      engine.run(spec, views, { n: r1 - r0, alpha: 1, beta: 0, ...NO_SHAPE }, Math.ceil((r1 - r0) / PER_GROUP));
      Object.values(views).forEach((v) => v.dispose());
    }
    [fa, fb, fy].forEach((t) => t.dispose());
    return y;
  }

  // Broadcasting: split along the output's first dimension; an input broadcast along it is bound whole.
  const outer = shape[0] ?? 1;
  const inner = outer === 0 ? 0 : y.size / outer;
  const padded = (t: Tensor) => [...new Array<number>(shape.length - t.rank).fill(1), ...t.shape];
  const splits = (t: Tensor) => shape.length > 0 && padded(t)[0] === outer && outer > 1;
  const rowBytes = [a, b, y].map((t) => (t === y || splits(t) ? (t.size / outer) * DTYPE_BYTES[t.dtype] : 0));
  const as = broadcastStrides(a.shape, shape);
  const bs = broadcastStrides(b.shape, shape);
  for (const [r0, r1] of rowChunks(engine, op, outer, rowBytes)) {
    // The 2-D reshape is only a step to the row view: release it, or the buffer would never be freed.
    const rowsOf = (t: Tensor, width: number) => {
      const whole = t.reshape([outer, width]);
      const part = whole.rows(r0, r1);
      whole.dispose();
      return part;
    };
    const part = (t: Tensor) => (splits(t) ? rowsOf(t, -1) : t.reshape([t.size]));
    const views = { a: part(a), b: part(b), y: rowsOf(y, inner) };
    const chunkShape = [r1 - r0, ...shape.slice(1)];
    engine.run(
      spec,
      views,
      { n: (r1 - r0) * inner, rank: 0, alpha: 1, beta: 0, out_shape: chunkShape, a_strides: as, b_strides: bs, divisors: shapeDivisors(chunkShape) },
      Math.ceil(((r1 - r0) * inner) / PER_GROUP),
    );
    Object.values(views).forEach((v) => v.dispose());
  }
  return y;
}

export const add = (a: Tensor, b: Tensor, options?: BinaryOptions) => binary('add', a, b, options);
export const sub = (a: Tensor, b: Tensor, options?: BinaryOptions) => binary('sub', a, b, options);
export const mul = (a: Tensor, b: Tensor, options?: BinaryOptions) => binary('mul', a, b, options);
export const div = (a: Tensor, b: Tensor, options?: BinaryOptions) => binary('div', a, b, options);

export interface ThresholdBitsOptions {
  /** Bit set where x > threshold (default 0: a logit whose sigmoid is above one half). */
  threshold?: number;
  /** Pack each plane in column-major order, as pycocotools stores masks (default row-major). */
  columnMajor?: boolean;
}

/**
 * x [..., H, W] > threshold as bits: u32 [planes, ceil(H * W / 32)], each plane (the last two
 * dimensions) from a fresh word, bit j of word k = element 32k + j of the plane in row-major (or
 * column-major) order. Masks read back at 1/32 of their f32 size.
 */
export function thresholdBits(x: Tensor, options: ThresholdBitsOptions = {}): Tensor {
  const op = 'thresholdBits';
  expectDType(op, x, FLOAT_DTYPES);
  if (x.rank < 2) throw new RangeError(`${op}: input ${formatShape(x.shape)} needs rank >= 2 (..., H, W)`);
  const threshold = options.threshold ?? 0;
  if (!Number.isFinite(threshold)) throw new RangeError(`${op}: threshold must be finite, got ${threshold}`);
  const [h, w] = x.shape.slice(-2) as [number, number];
  const plane = h * w;
  const planes = plane === 0 ? 0 : x.size / plane;
  const words = Math.ceil(plane / 32);
  const engine = x.engine;
  const y = engine.empty([planes, words], 'u32');
  const flatX = x.reshape([planes, plane]);
  for (const [r0, r1] of rowChunks(engine, op, planes, [plane * DTYPE_BYTES[x.dtype], words * 4])) {
    const views = { x: flatX.rows(r0, r1), bits: y.rows(r0, r1) };
    const count = (r1 - r0) * words;
    engine.run(
      { file: 'elementwise_bits.wgsl', entry: 'threshold_bits', dtypes: { x: x.dtype }, overrides: { COLUMNS: options.columnMajor ?? false } },
      views,
      { count, words, plane, h, w, threshold },
      Math.ceil(count / 64),
    );
    Object.values(views).forEach((v) => v.dispose());
  }
  flatX.dispose();
  return y;
}
