/**
 * A preallocated key/value cache for one attention layer: keys and values [heads, maxLength, headDim]
 * in f32 or f16, of which the first `length` rows are valid. append() stores new keys (rotated by the
 * layer's rotary embedding at their positions) and values in one dispatch; attend() runs attention
 * of new queries against the valid prefix without copying it.
 *
 *   const cache = new KVCache(engine, { heads: 32, headDim: 128, maxLength: 4096, dtype: 'f16', rotary });
 *   cache.append(k, v);                       // k, v: [T, heads, D] (layout 'blhd') or [heads, T, D]
 *   const q2 = rope(q, rotary, { positions: cache.length - T, layout: 'blhd' });
 *   const out = cache.attend(q2, { causal: true, layout: 'blhd' });
 *
 * appendAndAttend(q, k, v) does those three steps, and in one dispatch when decoding a single token
 * whose q, k and v are views of one fused projection.
 */
import type { DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { attention, type AttentionOptions, type FreshReplay } from './attention.js';
import { planPositions, planRotary, rope, runRotary, type Positions, type RotaryEmbedding } from './rope.js';
import type { AttentionLayout } from './support/attention-layout.js';
import { placeholder } from './support/placeholder.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';

export interface KVCacheOptions {
  heads: number;
  headDim: number;
  maxLength: number;
  /** Storage dtype (default f16: half the memory and bandwidth; arithmetic stays f32). */
  dtype?: DType;
  /** Rotates keys as they are appended (LLaMA); omit for caches of unrotated keys. */
  rotary?: RotaryEmbedding;
}

export interface AppendOptions {
  /** Positions of the new tokens (default: length, length + 1, ...). */
  positions?: Positions;
  /** Layout of k and v: 'bhld' [heads, T, D] or 'blhd' [T, heads, D] (batch 1 may lead). Default 'bhld'. */
  layout?: AttentionLayout;
}

/** The row a fused decoding step appends (KVCache.withNextRow). */
export interface NextRow {
  row: number;
  /** The rotary table ([rows, headDim] f32, cos | sin) when the cache rotates keys. */
  table: Tensor | undefined;
  /** While capturing: the row of each replay and its effect, or null when the capture no longer fits. */
  replay: (() => FreshReplay | null) | undefined;
}

export class KVCache {
  readonly heads: number;
  readonly headDim: number;
  readonly maxLength: number;
  readonly dtype: DType;
  readonly rotary: RotaryEmbedding | undefined;
  /** [heads, maxLength, headDim]; rows past `length` are stale. */
  readonly keys: Tensor;
  readonly values: Tensor;
  private used = 0;

  constructor(
    readonly engine: Engine,
    options: KVCacheOptions,
  ) {
    const { heads, headDim, maxLength } = options;
    for (const [name, value] of [['heads', heads], ['headDim', headDim], ['maxLength', maxLength]] as const) {
      if (!Number.isInteger(value) || value <= 0) throw new RangeError(`KVCache: ${name} must be a positive integer, got ${value}`);
    }
    if (headDim % 4 !== 0) throw new RangeError(`KVCache: headDim ${headDim} must be a multiple of 4 (attention reads 4 at a time)`);
    this.dtype = options.dtype ?? 'f16';
    if (this.dtype !== 'f32' && this.dtype !== 'f16') throw new TypeError(`KVCache: dtype must be f32 or f16, got ${this.dtype}`);
    if (options.rotary && options.rotary.headDim !== headDim) {
      throw new RangeError(`KVCache: rotary embedding is for head dim ${options.rotary.headDim}, the cache has ${headDim}`);
    }
    this.heads = heads;
    this.headDim = headDim;
    this.maxLength = maxLength;
    this.rotary = options.rotary;
    this.keys = engine.empty([heads, maxLength, headDim], this.dtype, { persistent: true });
    try {
      this.values = engine.empty([heads, maxLength, headDim], this.dtype, { persistent: true });
    } catch (err) {
      this.keys.dispose();
      throw err;
    }
  }

  /** Valid rows. */
  get length(): number {
    return this.used;
  }

  /** Stores T new tokens' keys (rotated) and values at rows length .. length + T - 1. */
  append(k: Tensor, v: Tensor, options: AppendOptions = {}): void {
    const op = 'KVCache.append';
    const layout = options.layout ?? 'bhld';
    expectDType(op, k, FLOAT_DTYPES, 'k');
    expectDType(op, v, FLOAT_DTYPES, 'v');
    if (k.rank !== v.rank || k.shape.some((d, i) => d !== v.shape[i])) {
      throw new RangeError(`${op}: k ${formatShape(k.shape)} and v ${formatShape(v.shape)} must have the same shape`);
    }
    const names = layout === 'bhld' ? `[${this.heads}, T, ${this.headDim}]` : `[T, ${this.heads}, ${this.headDim}]`;
    const dims = k.rank === 4 && k.shape[0] === 1 ? k.shape.slice(1) : k.shape;
    if (dims.length !== 3) throw new RangeError(`${op}: k ${formatShape(k.shape)} must be ${names} (layout '${layout}', batch 1)`);
    const [H, T] = layout === 'bhld' ? [dims[0]!, dims[1]!] : [dims[1]!, dims[0]!];
    if (H !== this.heads || dims[2] !== this.headDim) {
      throw new RangeError(`${op}: k ${formatShape(k.shape)} must be ${names} (layout '${layout}') for this cache`);
    }
    this.checkRoom(op, T);
    if (T === 0) return;
    const D = this.headDim;
    const positions = planPositions(op, options.positions ?? this.used, 1, T);
    const plan = planRotary({
      op, entry: 'kv_append', H, L: T, D, units: H,
      strides: layout === 'bhld' ? [H * T * D, T * D, D] : [T * H * D, D, H * D],
      positions, table: this.rotary ? this.rotary.tableFor(positions.max) : placeholder(this.engine),
      src: k, srcV: v, dst: this.keys, dstV: this.values,
      dstStrides: [0, this.maxLength * D, D], dstRow0: this.used, rotate: this.rotary !== undefined,
    });
    runRotary(plan, this.keys);
    this.used += T;
  }

  /** Attention of q against the valid rows: K/V are the cache's own tensors, nothing is copied. */
  attend(q: Tensor, options: Omit<AttentionOptions, 'kvLength' | 'kvLayout'> = {}): Tensor {
    return this.attendRows(q, this.used, options);
  }

  /**
   * A layer's attention over new tokens: their keys (rotated at positions length, length + 1, ...)
   * and values join the cache, the queries are rotated alike and attend to every cached row.
   * q [T, Hq, D], k and v [T, heads, D] with layout 'blhd' (or [H, T, D] with 'bhld'); batch 1.
   * For one token (decoding) whose q, k and v are views of one fused q|k|v projection, a single
   * dispatch does all of it (attention's `fresh` row); otherwise rope, append and attend.
   */
  appendAndAttend(q: Tensor, k: Tensor, v: Tensor, options: Pick<AttentionOptions, 'causal' | 'layout' | 'scale'> = {}): Tensor {
    const layout = options.layout ?? 'bhld';
    const T = layout === 'bhld' ? k.shape[k.rank - 2]! : k.shape[k.rank - 3]!;
    const fused = T === 1 && k.rank >= 3 && q.storage === k.storage && q.storage === v.storage && k.byteOffset > q.byteOffset && v.byteOffset > q.byteOffset;
    if (!fused) {
      const q2 = this.rotary ? rope(q, this.rotary, { positions: this.used, layout }) : q;
      try {
        this.append(k, v, { layout });
        return this.attend(q2, options);
      } finally {
        if (q2 !== q) q2.dispose();
      }
    }
    return this.withNextRow('KVCache.appendAndAttend', ({ row, table, replay }) =>
      this.attendRows(q, row + 1, { ...options, fresh: { k, v, rotary: table ? { table, row } : undefined, replay } }),
    );
  }

  /**
   * For a kernel that writes the next row itself (a fused decoding step): runs `write` with the
   * row, the rotary table to rotate its key by (row `row` of it), and while capturing how a replay
   * finds its row; then counts the row. Nothing changes if `write` throws.
   */
  withNextRow<T>(op: string, write: (next: NextRow) => T): T {
    this.checkRoom(op, 1);
    const row = this.used;
    const table = this.rotary?.tableFor(row);
    const out = write({ row, table, replay: this.engine.capturing ? () => this.nextRow(table) : undefined });
    this.used += 1;
    return out;
  }

  /** Where a replayed decoding step goes: the next row, while there is room and the rotary table is the captured one. */
  private nextRow(table: Tensor | undefined): FreshReplay | null {
    if (this.used >= this.maxLength) return null;
    if (this.rotary && this.rotary.tableFor(this.used) !== table) return null;
    return { kvLength: this.used + 1, row: this.used, apply: () => (this.used += 1) };
  }

  /** Attention of q against the first `rows` rows of the cache's own K/V tensors (nothing is copied). */
  private attendRows(q: Tensor, rows: number, options: Omit<AttentionOptions, 'kvLength' | 'kvLayout'>): Tensor {
    const k = this.keys.reshape([1, this.heads, this.maxLength, this.headDim]);
    const v = this.values.reshape([1, this.heads, this.maxLength, this.headDim]);
    try {
      return attention(q, k, v, { ...options, kvLength: rows, kvLayout: 'bhld' });
    } finally {
      k.dispose();
      v.dispose();
    }
  }

  private checkRoom(op: string, T: number): void {
    if (this.used + T > this.maxLength) {
      throw new RangeError(`${op}: appending ${T} token(s) to ${this.used} would overflow the cache of ${this.maxLength} positions`);
    }
  }

  /** Forgets rows from `length` on (e.g. to regenerate from an earlier point). */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.used) {
      throw new RangeError(`KVCache.truncate: length ${length} must be an integer in [0, ${this.used}]`);
    }
    this.used = length;
  }

  reset(): void {
    this.used = 0;
  }

  dispose(): void {
    this.keys.dispose();
    this.values.dispose();
  }
}
