/**
 * Fused scaled-dot-product attention: softmax(Q Kᵀ · scale + bias + mask) V in one pass over K and
 * V (kernels/attention.wgsl, attention_decode.wgsl), f32 softmax statistics and accumulation
 * whatever the storage dtype, the score matrix never materialised.
 *
 *   attention(q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v, { causal, bias, mask, scale, kvLength, layout })
 *
 * Grouped-query attention (Hq a multiple of Hkv), causal masking aligned to the end (query i sees
 * keys j <= i + Lk - Lq, as in a prefill after cached tokens), additive bias and mask terms that
 * broadcast over batch, heads and rows, token-major layouts, and a prefix of K/V (a KV cache).
 *
 * Kernels: many query rows take the prefill kernels (one subgroup per 8 rows on CPU adapters, one
 * workgroup per 64 rows with workgroup-memory K/V tiles on GPUs); up to DECODE_MAX_ROWS rows take
 * the split-K decoding kernels, which give each core a chunk of keys and merge the chunks after.
 * Heads are split across dispatches when Q, K or V exceed one storage binding.
 *
 * A decoding step against a KV cache can be one dispatch (option `fresh`): the step's key and value
 * come straight from the q|k|v projection, are rotated with the query, attended from registers and
 * written into the cache by the same kernel (see KVCache.appendAndAttend).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { ReplayHook } from '../engine/capture.js';
import type { KernelSpec } from '../engine/pipeline.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { additiveTerm, attentionGeometry, headSpan, type AdditiveTerm, type AttentionGeometry, type AttentionLayout } from './support/attention-layout.js';
import { bindingWindow, bindsWhole, spanWindow, unitRanges, windowBytes, type Span } from './support/binding-windows.js';
import { placeholder } from './support/placeholder.js';
import { subgroupsOf8 } from './support/variants.js';
import { CORES, onDemandWorkgroups, workCounters } from './support/work-sharing.js';

export type { AttentionLayout } from './support/attention-layout.js';

export type AttentionKernel = 'subgroup' | 'tiled' | 'decode_subgroup' | 'decode_tiled';

export interface AttentionOptions {
  /** Multiplies Q Kᵀ; default 1 / sqrt(headDim). */
  scale?: number;
  /** Query i sees keys j <= i + (kvLength - Lq). */
  causal?: boolean;
  /** Additive terms on the scaled scores, [B or a divisor, Hq or 1, Lq or 1, Lk] (leading 1s optional). */
  bias?: Tensor;
  mask?: Tensor;
  /** Attend to the first kvLength keys only (a preallocated KV cache); default all of K. */
  kvLength?: number;
  /** Layout of q and the output (default 'bhld'). */
  layout?: AttentionLayout;
  /** Layout of k and v (default: `layout`). */
  kvLayout?: AttentionLayout;
  /** Output dtype (default q's). */
  dtype?: DType;
  /** Force a kernel (tests, benchmarks); by default chosen by adapter and query length. */
  kernel?: AttentionKernel;
  /** Force the number of key chunks of the decoding kernels (1 = no merge pass). */
  splits?: number;
  /**
   * One decoding step with a KV cache, fused: k and v are the cache, whose key row kvLength - 1 is
   * written from fresh.k / fresh.v (the key rotated like q when fresh.rotary is given) rather than
   * read. Needs one query row, batch 1, a decoding kernel, and the fresh rows in q's storage.
   */
  fresh?: FreshRow;
}

/** The step's own key and value rows (AttentionOptions.fresh). */
export interface FreshRow {
  /** [Hkv, D] each (leading 1s allowed), views of q's storage placed after q: a fused q|k|v projection. */
  k: Tensor;
  v: Tensor;
  /** Rotate q and the fresh key (rotate-half) by row `row` of a [rows, D] f32 cos | sin table. */
  rotary?: { table: Tensor; row: number };
  /**
   * When the step is captured (Engine.capture): its key count and rotary row at each replay, and
   * the host-side effect of taking that row; null when the step cannot be replayed.
   */
  replay?: () => FreshReplay | null;
}

/** A replayed decoding step's place (FreshRow.replay). */
export interface FreshReplay {
  kvLength: number;
  row: number;
  apply?: () => void;
}

/** Query rows at or below which the split-K decoding kernels are used. */
export const DECODE_MAX_ROWS = 4;

const OP = 'attention';

export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const layout = options.layout ?? 'bhld';
  const kvLayout = options.kvLayout ?? layout;
  for (const l of [layout, kvLayout]) {
    if (l !== 'bhld' && l !== 'blhd') throw new RangeError(`${OP}: unknown layout '${String(l)}' (use 'bhld' or 'blhd')`);
  }
  const g = attentionGeometry(q, k, v, layout, kvLayout, options.kvLength);
  const bias = options.bias ? additiveTerm(options.bias, 'bias', g) : undefined;
  const mask = options.mask ? additiveTerm(options.mask, 'mask', g) : undefined;
  const causal = options.causal ?? false;
  if (causal && g.Lq > g.Lk) {
    throw new RangeError(`${OP}: causal attention needs at least as many keys as queries (q ${formatShape(q.shape)}, ${g.Lk} keys)`);
  }
  const engine = q.engine;
  const dtype = options.dtype ?? q.dtype;
  if (dtype !== 'f32' && dtype !== 'f16') throw new TypeError(`${OP}: output dtype must be f32 or f16, got ${dtype}`);
  if (g.B * g.Hq * g.Lq === 0) return engine.empty(g.outShape, dtype);
  if (g.Lk === 0) throw new RangeError(`${OP}: no keys to attend (k ${formatShape(k.shape)}, kvLength ${g.Lk}); softmax over nothing is undefined`);
  const kernel = options.kernel ?? chooseKernel(engine, g);
  if (!subgroupsOf8(engine) && (kernel === 'subgroup' || kernel === 'decode_subgroup')) {
    throw new Error(`${OP}: kernel '${kernel}' needs subgroups of exactly 8 invocations, which this adapter lacks`);
  }
  const call: Call = { engine, g, q, k, v, dtype, bias, mask, causal, scale: options.scale ?? 1 / Math.sqrt(g.D), kernel, splits: 1, chunk: g.Lk };
  if (options.fresh) call.fresh = freshPlan(call, options.fresh);
  if (kernel === 'decode_subgroup' || kernel === 'decode_tiled') {
    if (options.splits !== undefined && (!Number.isInteger(options.splits) || options.splits < 1)) {
      throw new RangeError(`${OP}: splits must be a positive integer, got ${options.splits}`);
    }
    call.forcedSplits = options.splits;
    Object.assign(call, decodeChunks(call, g.Lk));
  } else if (options.splits !== undefined) {
    throw new RangeError(`${OP}: splits applies to the decoding kernels only (kernel '${kernel}')`);
  }
  // Every check (binding limits included) happens before anything is allocated.
  const ranges = headChunks(call);
  const out = engine.empty(g.outShape, dtype);
  for (const [bh0, bh1] of ranges) dispatch(call, out, bh0, bh1);
  return out;
}

interface Call {
  engine: Engine;
  g: AttentionGeometry;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dtype: DType;
  bias?: AdditiveTerm;
  mask?: AdditiveTerm;
  causal: boolean;
  scale: number;
  kernel: AttentionKernel;
  splits: number;
  chunk: number;
  /** Key chunks asked for (AttentionOptions.splits), if any. */
  forcedSplits?: number;
  fresh?: FreshPlan;
}

/** Where a fused step's fresh rows are, relative to q's first element, and its rotary table row. */
interface FreshPlan {
  /** Elements of q's storage bound as `query`: q and the fresh rows. */
  span: Span;
  k: number;
  v: number;
  rotary?: { table: Tensor; row: number };
  replay?: () => FreshReplay | null;
}

function freshPlan(c: Call, fresh: FreshRow): FreshPlan {
  const { g, q } = c;
  const what = `${OP} (fresh row)`;
  if (c.kernel !== 'decode_subgroup' && c.kernel !== 'decode_tiled') throw new RangeError(`${what}: needs a decoding kernel, not '${c.kernel}'`);
  if (g.Lq !== 1 || g.B !== 1) throw new RangeError(`${what}: needs one query row and batch 1, q is ${formatShape(q.shape)}`);
  if (g.Lk < 1) throw new RangeError(`${what}: kvLength must count the fresh row`);
  const rowElements = g.Hkv * g.D;
  const at = (t: Tensor, role: string): number => {
    if (t.size !== rowElements || t.dtype !== q.dtype) {
      throw new RangeError(`${what}: ${role} ${formatShape(t.shape)} ${t.dtype} must hold ${g.Hkv} x ${g.D} ${q.dtype} elements`);
    }
    const offset = (t.byteOffset - q.byteOffset) / DTYPE_BYTES[q.dtype];
    if (t.storage !== q.storage || !Number.isInteger(offset) || offset < 0) {
      throw new RangeError(`${what}: ${role} must be a view of q's storage after q (a fused q|k|v projection)`);
    }
    return offset;
  };
  const k = at(fresh.k, 'k');
  const v = at(fresh.v, 'v');
  const span: Span = [0, Math.max(q.size, k + rowElements, v + rowElements)];
  if (windowBytes(q, span) > c.engine.maxBindingBytes) {
    throw new RangeError(`${what}: q and the fresh rows span ${windowBytes(q, span)} bytes, over the ${c.engine.maxBindingBytes}-byte binding limit`);
  }
  const r = fresh.rotary;
  if (r && (r.table.dtype !== 'f32' || r.table.rank !== 2 || r.table.shape[1] !== g.D || !Number.isInteger(r.row) || r.row < 0 || r.row >= r.table.shape[0]!)) {
    throw new RangeError(`${what}: rotary row ${r.row} of table ${formatShape(r.table.shape)} ${r.table.dtype} must be a row of an f32 [rows, ${g.D}] table`);
  }
  return { span, k, v, rotary: r, replay: fresh.replay };
}

function chooseKernel(engine: Engine, g: AttentionGeometry): AttentionKernel {
  const sub = engine.profile === 'cpu' && subgroupsOf8(engine);
  if (g.Lq <= DECODE_MAX_ROWS) return sub ? 'decode_subgroup' : 'decode_tiled';
  return sub ? 'subgroup' : 'tiled';
}

/**
 * Key chunks per query row: enough work items for every core (CPU adapters: lavapipe runs one
 * workgroup per thread) or every multiprocessor, but chunks of at least MIN_CHUNK keys so the merge
 * pass stays small.
 */
function defaultSplits(engine: Engine, g: AttentionGeometry, Lk: number): number {
  const MIN_CHUNK = 256;
  const wanted = engine.profile === 'cpu' ? 4 * CORES : 512;
  const rows = g.B * g.Hq * g.Lq;
  return Math.max(1, Math.min(Math.ceil(wanted / rows), Math.floor(Lk / MIN_CHUNK)));
}

/** Key chunks of the decoding kernels over Lk keys: their number and length (a multiple of the kernel's key step). */
function decodeChunks(c: Call, Lk: number): { splits: number; chunk: number } {
  const wanted = c.forcedSplits ?? defaultSplits(c.engine, c.g, Lk);
  const step = c.kernel === 'decode_subgroup' ? 8 : 64;
  const chunk = Math.max(step, Math.ceil(Math.ceil(Lk / wanted) / step) * step);
  return { splits: Math.max(1, Math.ceil(Lk / chunk)), chunk };
}

/** Bytes of scratch per query head for the split-K partial results (D outputs, max and sum per chunk). */
function partBytesPerHead(c: Call): number {
  return c.splits > 1 ? c.g.Lq * c.splits * (c.g.D + 2) * 4 : 0;
}

/**
 * Ranges of query heads [bh0, bh1) whose Q, O, K and V windows (and split-K scratch) each fit one
 * storage binding. The additive terms are bound whole.
 */
function headChunks(c: Call): [number, number][] {
  const { engine, g } = c;
  const limit = engine.maxBindingBytes;
  for (const [role, term] of [['bias', c.bias], ['mask', c.mask]] as const) {
    if (term && term.tensor.byteLength > limit) {
      throw new RangeError(`${OP}: ${role} ${formatShape(term.tensor.shape)} is ${term.tensor.byteLength} bytes, over the ${limit}-byte binding limit`);
    }
  }
  const out = { dtype: c.dtype, byteOffset: 0, engine }; // a new tensor starts its buffer
  const fits = (bh0: number, bh1: number) =>
    windowBytes(c.q, headSpan(g, 'q', bh0, bh1)) <= limit &&
    windowBytes(out, headSpan(g, 'q', bh0, bh1)) <= limit &&
    windowBytes(c.k, headSpan(g, 'k', bh0, bh1)) <= limit &&
    windowBytes(c.v, headSpan(g, 'k', bh0, bh1)) <= limit &&
    partBytesPerHead(c) * (bh1 - bh0) <= limit;
  return unitRanges(g.B * g.Hq, fits, () =>
    `${OP}: one head of q ${formatShape(c.q.shape)} / k ${formatShape(c.k.shape)} (${c.k.dtype}, layouts '${g.layout}'/'${g.kvLayout}') ` +
    `does not fit the ${limit}-byte binding limit; heads are the smallest unit attention splits`);
}

/**
 * Output columns of attention_subgroup: HB whole blocks of 32, and a tail block of TAIL columns
 * per lane when the rest is 8, 16 or 24 (D = 40: one block and a tail of 1); other widths round
 * up to whole blocks.
 */
function subgroupBlocks(D: number): { HB: number; TAIL: number } {
  const rest = D % 32;
  return rest % 8 === 0 ? { HB: Math.floor(D / 32), TAIL: rest / 8 } : { HB: Math.ceil(D / 32), TAIL: 0 };
}

function dispatch(c: Call, out: Tensor, bh0: number, bh1: number): void {
  const { engine, g } = c;
  const count = bh1 - bh0;
  const qw = c.fresh ? spanWindow(c.q, c.fresh.span) : bindingWindow(c.q, headSpan(g, 'q', bh0, bh1));
  const ow = bindingWindow(out, headSpan(g, 'q', bh0, bh1));
  const kw = bindingWindow(c.k, headSpan(g, 'k', bh0, bh1));
  const vw = bindingWindow(c.v, headSpan(g, 'k', bh0, bh1));
  const none = placeholder(engine);
  const rotary = c.fresh?.rotary;
  // The whole table when it fits a binding (it does but for huge contexts): the same bind group every step.
  const tw = rotary ? bindingWindow(rotary.table, [rotary.row * g.D, (rotary.row + 1) * g.D]) : null;
  const bias = c.bias?.tensor ?? none;
  const mask = c.mask?.tensor ?? none;
  const dtypes = { query: c.q.dtype, keys: c.k.dtype, values: c.v.dtype, bias: bias.dtype, mask: mask.dtype, out: out.dtype };
  const flags = { CAUSAL: c.causal, HAS_BIAS: c.bias !== undefined, HAS_MASK: c.mask !== undefined };
  const term = (t: AdditiveTerm | undefined, name: string) => ({
    [`${name}_nb`]: t?.nb ?? 1, [`${name}_sb`]: t?.sb ?? 0, [`${name}_sh`]: t?.sh ?? 0, [`${name}_sl`]: t?.sl ?? 0,
  });
  const params = (items: number) => ({
    Lq: g.Lq, D: g.D, Hq: g.Hq, group: g.group,
    bh_begin: bh0, bh_count: count, items,
    q_sb: g.qStrides[0], q_sh: g.qStrides[1], q_sl: g.qStrides[2], q_base: qw.base, o_base: ow.base,
    k_sb: g.kStrides[0], k_sh: g.kStrides[1], k_sl: g.kStrides[2], k_base: kw.base, v_base: vw.base,
    ...term(c.bias, 'bias'), ...term(c.mask, 'mask'),
    scale: c.scale, splits: c.splits,
    fresh_k: c.fresh ? c.fresh.k - qw.base : 0, fresh_v: c.fresh ? c.fresh.v - qw.base : 0,
    ...keyCountParams(c, g.Lk, c.chunk, rotary?.row ?? 0, tw?.base ?? 0),
  });
  const tensors = { query: qw.view, keys: kw.view, values: vw.view, bias, mask, out: ow.view };
  switch (c.kernel) {
    case 'subgroup': {
      const items = Math.ceil(g.Lq / 8);
      engine.run({ file: 'attention.wgsl', entry: 'attention_subgroup', dtypes, overrides: { ...flags, ...subgroupBlocks(g.D) } }, tensors, params(items), items * count);
      break;
    }
    case 'tiled': {
      const items = Math.ceil(g.Lq / 64);
      const TK = Math.floor(2048 / g.D);
      engine.run({ file: 'attention.wgsl', entry: 'attention_tiled', dtypes, overrides: { ...flags, TK } }, tensors, params(items), items * count);
      break;
    }
    case 'decode_subgroup':
    case 'decode_tiled': {
      const replay = engine.capturing && c.fresh ? decodeReplay(c, tw?.base ?? 0) : undefined;
      decode(c, count, { ...tensors, table: tw?.view ?? none }, dtypes, flags, params, replay);
      break;
    }
  }
  for (const w of [qw, ow, kw, vw, tw]) w?.view.dispose();
}

/**
 * How a captured fused decoding step follows its KV cache at each replay (FreshRow.replay): the
 * parameters that count keys change; the hooks decline when the chunking would change, or when the
 * cache or rotary table is bound through a window that moves with the length.
 */
function decodeReplay(c: Call, tableBase: number): (withEffect: boolean) => ReplayHook {
  const fixed = bindsWhole(c.k) && bindsWhole(c.v) && (!c.fresh?.rotary || bindsWhole(c.fresh.rotary.table));
  return (withEffect) => () => {
    const at = fixed ? c.fresh?.replay?.() : null;
    if (!at) return null;
    const { splits, chunk } = decodeChunks(c, at.kvLength);
    if (splits !== c.splits) return null;
    const params = keyCountParams(c, at.kvLength, chunk, at.row, tableBase);
    return withEffect ? { params, apply: at.apply } : { params };
  };
}

/**
 * The parameters that follow the number of keys Lk (and, for a fused step, its rotary row in a
 * table bound from element tableBase): all that a replayed decoding step changes.
 */
function keyCountParams(c: Call, Lk: number, chunk: number, row: number, tableBase: number): Record<string, number> {
  return {
    Lk, chunk,
    causal_offset: c.causal ? Lk - c.g.Lq : 0,
    new_key: c.fresh ? Lk - 1 : 0,
    table_row: c.fresh?.rotary ? row * c.g.D - tableBase : 0,
  };
}

function decode(
  c: Call,
  count: number,
  tensors: Record<string, Tensor>,
  dtypes: Record<string, DType>,
  flags: Record<string, boolean>,
  params: (items: number) => Record<string, number>,
  replay?: (withEffect: boolean) => ReplayHook,
): void {
  const { engine, g } = c;
  const split = c.splits > 1;
  // Without a merge pass the kernel never writes `part`, but it must still be bound (and not alias an input).
  const part = engine.empty(split ? [count * g.Lq * c.splits * (g.D + 2)] : [4], 'f32');
  const sub = c.kernel === 'decode_subgroup';
  const WG = sub ? 8 : 64;
  const fused = { FRESH: c.fresh !== undefined, ROPE: c.fresh?.rotary !== undefined };
  const overrides = sub ? { ...flags, ...fused, SPLIT: split, HB: Math.ceil(g.D / 32), QB: Math.ceil(g.D / 8) } : { ...flags, ...fused, SPLIT: split, WG };
  const items = g.Lq * c.splits;
  // A fused step writes the cache: keys and values are then bound read-write.
  const includes = { kv: c.fresh ? 'read_write' : 'read' };
  // On lavapipe a few workgroups take the items on demand (src/ops/support/work-sharing.ts).
  const workers = sub ? Math.min(onDemandWorkgroups(engine), items * count) : 1;
  const onDemand: Record<string, number | boolean> = workers > 1 ? { ON_DEMAND: true, NWG: workers } : {};
  const spec: KernelSpec = { file: 'attention_decode.wgsl', entry: c.kernel, dtypes, overrides: { ...overrides, ...onDemand }, includes };
  const shared: Record<string, Tensor> = sub ? { counters: workCounters(engine) } : {};
  engine.run(spec, { ...tensors, part, ...shared }, params(items), workers > 1 ? workers : items * count);
  if (replay) engine.onReplay(replay(true));
  if (split) {
    const combine: KernelSpec = { file: 'attention_decode.wgsl', entry: 'decode_combine', dtypes: { out: dtypes.out! }, overrides: { WG }, includes: { kv: 'read' } };
    engine.run(combine, { out: tensors.out!, part }, params(g.Lq), g.Lq * count);
    if (replay) engine.onReplay(replay(false));
  }
  part.dispose();
}
