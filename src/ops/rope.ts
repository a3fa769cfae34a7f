/**
 * Rotary position embedding (Hugging Face's rotate-half convention, as in LLaMA):
 *   inv_freq[i] = 1 / theta^(2i / D), angle = position · inv_freq[i] (both f32, as HF computes them)
 *   y[i] = x[i] cos − x[i + D/2] sin,  y[i + D/2] = x[i + D/2] cos + x[i] sin
 *
 * A RotaryEmbedding owns the cos/sin table for one (head dim, theta) on the GPU, grown on demand;
 * every layer of a model shares it. rope() rotates queries (or keys); KVCache.append rotates keys as
 * it stores them (kernels/rope.wgsl).
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import type { AttentionLayout } from './support/attention-layout.js';
import { bindingWindow, unitRanges, windowBytes, type Span } from './support/binding-windows.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';

export interface RotaryOptions {
  /** Base of the frequencies (LLaMA: 10000). */
  theta?: number;
  /** Frequencies [headDim / 2] as a checkpoint stores them (overrides theta). */
  invFreq?: ArrayLike<number>;
}

/** Positions beyond this are refused: the table would be unreasonably large. */
export const MAX_ROTARY_POSITIONS = 1 << 20;

export class RotaryEmbedding {
  readonly theta: number;
  readonly invFreq: Float32Array;
  private table: Tensor | null = null;
  private rows = 0;

  constructor(
    readonly engine: Engine,
    readonly headDim: number,
    options: RotaryOptions = {},
  ) {
    if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
      throw new RangeError(`RotaryEmbedding: head dim ${headDim} must be a positive even integer`);
    }
    this.theta = options.theta ?? 10000;
    if (options.invFreq) {
      if (options.invFreq.length !== headDim / 2) {
        throw new RangeError(`RotaryEmbedding: invFreq has ${options.invFreq.length} values; head dim ${headDim} needs ${headDim / 2}`);
      }
      this.invFreq = Float32Array.from(options.invFreq);
    } else {
      if (!(this.theta > 0)) throw new RangeError(`RotaryEmbedding: theta must be positive, got ${this.theta}`);
      // HF: 1.0 / (theta ** (arange(0, D, 2).float() / D)), every step rounded to f32.
      this.invFreq = new Float32Array(headDim / 2);
      for (let i = 0; i < headDim / 2; i++) {
        this.invFreq[i] = Math.fround(1 / Math.fround(this.theta ** Math.fround((2 * i) / headDim)));
      }
    }
  }

  /** The [rows, headDim] table (cos | sin per row) covering positions 0 .. maxPosition. */
  tableFor(maxPosition: number): Tensor {
    if (!Number.isInteger(maxPosition) || maxPosition < 0 || maxPosition >= MAX_ROTARY_POSITIONS) {
      throw new RangeError(`rope: position ${maxPosition} is outside [0, ${MAX_ROTARY_POSITIONS})`);
    }
    if (!this.table || maxPosition >= this.rows) {
      let rows = Math.max(256, this.rows);
      while (rows <= maxPosition) rows *= 2;
      this.table?.dispose();
      this.table = this.engine.tensor(this.hostTable(rows), [rows, this.headDim], 'f32', { persistent: true });
      this.rows = rows;
    }
    return this.table;
  }

  /** cos and sin in float64 of HF's f32 angles, rounded once to f32. */
  hostTable(rows: number): Float32Array {
    const D = this.headDim;
    const half = D / 2;
    const out = new Float32Array(rows * D);
    for (let pos = 0; pos < rows; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(pos * this.invFreq[i]!);
        out[pos * D + i] = Math.cos(angle);
        out[pos * D + half + i] = Math.sin(angle);
      }
    }
    return out;
  }

  dispose(): void {
    this.table?.dispose();
    this.table = null;
    this.rows = 0;
  }
}

/**
 * Positions of the rows being rotated: a start (rows get start, start+1, ...) or explicit values,
 * one per row or one per (batch, row).
 */
export type Positions = number | ArrayLike<number>;

export interface RopeOptions {
  /** Default 0 (rows are positions 0 .. L-1). */
  positions?: Positions;
  /** Layout of x and the output (default 'bhld'). */
  layout?: AttentionLayout;
  dtype?: DType;
}

/** Checked positions and the range of table rows they need. */
export interface PositionPlan {
  start: number;
  /** Explicit positions, [L] or [B, L] (uploaded at dispatch), or null for start + row. */
  values: Int32Array | null;
  /** Batch stride into `values` (0 when shared by the batch). */
  batchStride: number;
  min: number;
  max: number;
}

export function planPositions(op: string, positions: Positions, B: number, L: number): PositionPlan {
  if (typeof positions === 'number') {
    if (!Number.isInteger(positions) || positions < 0) throw new RangeError(`${op}: start position ${positions} must be a non-negative integer`);
    return { start: positions, values: null, batchStride: 0, min: positions, max: positions + Math.max(L - 1, 0) };
  }
  const n = positions.length;
  if (n !== L && n !== B * L) throw new RangeError(`${op}: ${n} positions given for ${L} rows (batch ${B}); give ${L} or ${B * L}`);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = positions[i]!;
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${op}: position ${v} (index ${i}) must be a non-negative integer`);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return { start: 0, values: Int32Array.from(positions), batchStride: n === L ? 0 : L, min: n ? min : 0, max: n ? max : 0 };
}

/** A bound-but-unread i32 tensor for kernels whose positions are start + row. */
function noPositions(engine: Engine): Tensor {
  return engine.constant('placeholder i32x4', new Int32Array(4));
}

/** Rotates x [B, H, L, D] (or [B, L, H, D] with layout 'blhd'; batch optional) into a new tensor. */
export function rope(x: Tensor, rotary: RotaryEmbedding, options: RopeOptions = {}): Tensor {
  const op = 'rope';
  expectDType(op, x, FLOAT_DTYPES, 'x');
  const layout = options.layout ?? 'bhld';
  if (layout !== 'bhld' && layout !== 'blhd') throw new RangeError(`${op}: unknown layout '${String(layout)}' (use 'bhld' or 'blhd')`);
  if (x.rank !== 3 && x.rank !== 4) throw new RangeError(`${op}: x ${formatShape(x.shape)} must be rank 3 or 4 (layout '${layout}')`);
  const [B, s1, s2, D] = (x.rank === 3 ? [1, ...x.shape] : [...x.shape]) as [number, number, number, number];
  const [H, L] = layout === 'bhld' ? [s1, s2] : [s2, s1];
  if (D !== rotary.headDim) throw new RangeError(`${op}: x ${formatShape(x.shape)} has head dim ${D}; the rotary embedding was made for ${rotary.headDim}`);
  const dtype = options.dtype ?? x.dtype;
  if (dtype !== 'f32' && dtype !== 'f16') throw new TypeError(`${op}: output dtype must be f32 or f16, got ${dtype}`);
  const engine = x.engine;
  if (x.size === 0) return engine.empty(x.shape, dtype);
  const positions = planPositions(op, options.positions ?? 0, B, L);
  const strides = layout === 'bhld' ? [H * L * D, L * D, D] : [L * H * D, D, H * D];
  const plan = planRotary({
    op, entry: 'rope', H, L, D, units: B * H, strides, positions, table: rotary.tableFor(positions.max),
    src: x, dst: { dtype, byteOffset: 0, engine }, dstStrides: strides, dstRow0: 0,
  });
  const y = engine.empty(x.shape, dtype);
  runRotary(plan, y);
  return y;
}

/** Tensor-like: what planning needs of a destination that may not exist yet. */
type Placed = Pick<Tensor, 'dtype' | 'byteOffset' | 'engine'>;

export interface RotaryDispatch {
  op: string;
  entry: 'rope' | 'kv_append';
  H: number;
  L: number;
  D: number;
  /** Heads (batch x heads) to process. */
  units: number;
  /** Element strides (batch, head, row) of src (and src_v). */
  strides: number[];
  positions: PositionPlan;
  table: Tensor;
  src: Tensor;
  dst: Placed;
  srcV?: Tensor;
  dstV?: Tensor;
  dstStrides: number[];
  dstRow0: number;
  /** kv_append without rotation. */
  rotate?: boolean;
}

export interface RotaryPlan {
  r: RotaryDispatch;
  ranges: [number, number][];
  srcSpan: (u0: number, u1: number) => Span;
  dstSpan: (u0: number, u1: number) => Span;
  tableSpan: Span;
}

/** Checks binding limits and groups heads into dispatches whose windows fit; allocates nothing. */
export function planRotary(r: RotaryDispatch): RotaryPlan {
  const engine = r.src.engine;
  const span = (strides: number[], row0: number) => (u0: number, u1: number): Span => {
    let first = Infinity;
    let end = 0;
    for (let u = u0; u < u1; u++) {
      const at = Math.floor(u / r.H) * strides[0]! + (u % r.H) * strides[1]! + row0 * strides[2]!;
      first = Math.min(first, at);
      end = Math.max(end, at + (r.L - 1) * strides[2]! + r.D);
    }
    return [first, end];
  };
  const srcSpan = span(r.strides, 0);
  const dstSpan = span(r.dstStrides, r.dstRow0);
  // Only the table rows of the positions used are bound (a cache without rotation binds a stub).
  const tableSpan: Span = r.rotate === false ? [0, 1] : [r.positions.min * r.D, (r.positions.max + 1) * r.D];
  const limit = engine.maxBindingBytes;
  if (windowBytes(r.table, tableSpan) > limit) {
    throw new RangeError(`${r.op}: positions ${r.positions.min}..${r.positions.max} need ${windowBytes(r.table, tableSpan)} bytes of rotary table, over the ${limit}-byte binding limit`);
  }
  const pairs: [Placed, Placed][] = [[r.src, r.dst]];
  if (r.srcV && r.dstV) pairs.push([r.srcV, r.dstV]);
  const fits = (u0: number, u1: number) => pairs.every(([s, d]) => windowBytes(s, srcSpan(u0, u1)) <= limit && windowBytes(d, dstSpan(u0, u1)) <= limit);
  const ranges = unitRanges(r.units, fits, () => `${r.op}: one head of ${formatShape(r.src.shape)} (${r.src.dtype}) does not fit the ${limit}-byte binding limit`);
  return { r, ranges, srcSpan, dstSpan, tableSpan };
}

/** Records the dispatches of a plan, writing to `dst` (the planned destination, now allocated). */
export function runRotary({ r, ranges, srcSpan, dstSpan, tableSpan }: RotaryPlan, dst: Tensor): void {
  const engine = dst.engine;
  const half = r.D / 2;
  const tw = bindingWindow(r.table, tableSpan);
  const values = r.positions.values;
  const positions = values ? engine.tensor(values, [values.length], 'i32') : noPositions(engine);
  for (const [u0, u1] of ranges) {
    const sw = bindingWindow(r.src, srcSpan(u0, u1));
    const dw = bindingWindow(dst, dstSpan(u0, u1));
    const svw = r.srcV ? bindingWindow(r.srcV, srcSpan(u0, u1)) : null;
    const dvw = r.dstV ? bindingWindow(r.dstV, dstSpan(u0, u1)) : null;
    const tensors: Record<string, Tensor> = { src: sw.view, dst: dw.view, table: tw.view, positions };
    const dtypes: Record<string, DType> = { src: r.src.dtype, dst: dst.dtype };
    if (svw && dvw) {
      Object.assign(tensors, { src_v: svw.view, dst_v: dvw.view });
      Object.assign(dtypes, { src_v: r.srcV!.dtype, dst_v: r.dstV!.dtype });
    }
    const count = (u1 - u0) * r.L * half;
    engine.run(
      { file: 'rope.wgsl', entry: r.entry, dtypes, overrides: { HAS_POSITIONS: values !== null, ...(r.entry === 'kv_append' ? { ROPE: r.rotate ?? true } : {}) } },
      tensors,
      {
        H: r.H, L: r.L, D: r.D, unit_begin: u0, units: u1 - u0,
        src_sb: r.strides[0]!, src_sh: r.strides[1]!, src_sl: r.strides[2]!, src_base: sw.base, src_v_base: svw?.base ?? 0,
        dst_sb: r.dstStrides[0]!, dst_sh: r.dstStrides[1]!, dst_sl: r.dstStrides[2]!, dst_base: dw.base, dst_v_base: dvw?.base ?? 0,
        dst_row0: r.dstRow0, pos_start: r.positions.start, pos_sb: r.positions.batchStride, table_base: tw.base,
      },
      Math.ceil(count / 64),
    );
    for (const w of [sw, dw, svw, dvw]) w?.view.dispose();
  }
  tw.view.dispose();
  if (values) positions.dispose();
}
