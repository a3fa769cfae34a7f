/**
 * Multi-scale deformable attention, the core of Deformable DETR / Grounding DINO:
 *
 *   out[b, q, h·Dh + c] = Σ_l Σ_k attn[b, q, h, l, k] · bilinear(value level l of batch b, head h, channel c,
 *                                                            at loc[b, q, h, l, k])
 *
 * with F.grid_sample's align_corners=False convention (pixel = loc · size − 0.5) and zero padding.
 * One fused kernel (kernels/ms_deform_attn.wgsl, ms_deform_attn_shared.wgsl); PyTorch's
 * formulation instead runs one grid-sample per level and a weighted sum (msDeformAttnUnfused
 * below, kept as a baseline). msDeformSamplingLocations computes `loc` from reference points and
 * predicted offsets.
 *
 * Big inputs: query rows are split so that locations, weights and output fit a binding; a value
 * tensor larger than one binding is bound in token windows, one dispatch each, adding into the
 * output (in f32; an f16 output is cast at the end).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { KernelSpec } from '../engine/pipeline.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { cast, concat, permute, slice, transpose } from './copy.js';
import { unary } from './elementwise.js';
import { rowChunks } from './support/chunks.js';
import { formatLevels, parseLevels, type Levels, type SpatialShapes } from './support/ms-deform-levels.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';
/**
 * 'registers': one invocation per (query, head, 32 channels), the channels accumulated in registers,
 * value read in 16-byte vectors; no barriers or subgroups (CPU adapters: lavapipe).
 * 'shared': 32 threads per (query, head, 32 channels), one channel each, the sampling points'
 * bilinear corners staged in workgroup memory (GPUs: coalesced loads).
 */
export type MsDeformAttnKernel = 'registers' | 'shared';

export interface MsDeformAttnOptions {
  /** Checked against the spatial shapes when given (PyTorch callers pass it alongside). */
  levelStartIndex?: ArrayLike<number>;
  /** Output dtype; default the value's. */
  dtype?: DType;
  /** Force a kernel variant (tests, benchmarks); by default 'registers' for the 'cpu' profile, 'shared' for 'gpu'. */
  kernel?: MsDeformAttnKernel;
}

const OP = 'msDeformAttn';
/** Channels one item covers, and items per workgroup of each kernel: fixed by the kernels. */
const GROUP_CHANNELS = 32;
const ITEMS_PER_WORKGROUP: Record<MsDeformAttnKernel, number> = { registers: 64, shared: 8 };

export interface MsDeformGeometry {
  batch: number;
  queries: number;
  heads: number;
  headDim: number;
  levels: Levels;
  points: number;
}

/**
 * value [B, S, H, Dh] (f32 or f16), sampling locations [B, Lq, H, L, P, 2] (f32, x then y in [0, 1]),
 * attention weights [B, Lq, H, L, P] (f32)  ->  [B, Lq, H·Dh].
 */
export function msDeformAttn(
  value: Tensor,
  spatialShapes: SpatialShapes,
  samplingLocations: Tensor,
  attentionWeights: Tensor,
  options: MsDeformAttnOptions = {},
): Tensor {
  const g = checkMsDeformInputs(OP, value, spatialShapes, samplingLocations, attentionWeights, options.levelStartIndex);
  const engine = value.engine;
  const dtype = options.dtype ?? value.dtype;
  if (!FLOAT_DTYPES.includes(dtype)) throw new TypeError(`${OP}: output dtype ${dtype}; expected ${FLOAT_DTYPES.join(' or ')}`);
  const kernel = options.kernel ?? defaultKernel(engine);
  checkKernel(kernel);
  const { batch: B, queries: Lq, heads: H, headDim: Dh, levels, points: P } = g;
  const L = levels.shapes.length;
  const S = levels.tokens;
  if (B * Lq === 0) return engine.empty([B, Lq, H * Dh], dtype);
  const valueChunks = rowChunks(engine, OP, B * S, [H * Dh * DTYPE_BYTES[value.dtype]]);
  // Several value windows add into the output: do that in f32 and cast once at the end.
  const accumulateIn: DType = valueChunks.length > 1 ? 'f32' : dtype;
  const rowChunksOfQueries = rowChunks(engine, OP, B * Lq, [H * L * P * 2 * 4, H * L * P * 4, H * Dh * DTYPE_BYTES[accumulateIn]]);
  const target = engine.empty([B, Lq, H * Dh], accumulateIn);

  const tokens = value.reshape([B * S, H * Dh]);
  const locs = samplingLocations.reshape([B * Lq, H * L * P * 2]);
  const weights = attentionWeights.reshape([B * Lq, H * L * P]);
  const rows = target.reshape([B * Lq, H * Dh]);
  const groups = Math.ceil(Dh / GROUP_CHANNELS);
  const dtypes = { value: value.dtype, sampling: 'f32', attn: 'f32', out: target.dtype } as const;
  const spec = (accumulate: boolean): KernelSpec =>
    kernel === 'registers'
      ? { file: 'ms_deform_attn.wgsl', entry: 'ms_deform_attn', dtypes, includes: { value_layout: valueLayout(value.dtype, Dh) }, overrides: { ACCUMULATE: accumulate } }
      : { file: 'ms_deform_attn_shared.wgsl', entry: 'ms_deform_attn_shared', dtypes, overrides: { ACCUMULATE: accumulate } };

  for (const [r0, r1] of rowChunksOfQueries) {
    // Only the value windows holding this row range's batches matter.
    const firstToken = Math.floor(r0 / Lq) * S;
    const endToken = (Math.floor((r1 - 1) / Lq) + 1) * S;
    const windows = valueChunks.filter(([t0, t1]) => t0 < endToken && t1 > firstToken);
    const views = { sampling: locs.rows(r0, r1), attn: weights.rows(r0, r1), out: rows.rows(r0, r1) };
    const items = (r1 - r0) * H * groups;
    windows.forEach(([t0, t1], i) => {
      const window = tokens.rows(t0, t1);
      engine.run(
        spec(i > 0),
        { value: window, ...views },
        {
          items, heads: H, head_dim: Dh, groups, levels: L, points: P, queries: Lq, value_tokens: S,
          row_offset: r0, token_begin: t0, token_end: t1, level_info: levels.info,
        },
        Math.ceil(items / ITEMS_PER_WORKGROUP[kernel]),
      );
      window.dispose();
    });
    Object.values(views).forEach((t) => t.dispose());
  }
  [tokens, locs, weights, rows].forEach((t) => t.dispose());
  if (accumulateIn === dtype) return target;
  const result = cast(target, dtype);
  target.dispose();
  return result;
}

export function defaultKernel(engine: Engine): MsDeformAttnKernel {
  return engine.profile === 'cpu' ? 'registers' : 'shared';
}

function checkKernel(kernel: MsDeformAttnKernel): void {
  if (kernel !== 'registers' && kernel !== 'shared') throw new RangeError(`${OP}: unknown kernel '${String(kernel)}' (use registers or shared)`);
}

/** How the registers kernel reads value: 16-byte vectors when a head is whole 32-channel groups, else channel by channel. */
function valueLayout(dtype: DType, headDim: number): 'f32x4' | 'f16x8' | 'scalar' {
  if (headDim % GROUP_CHANNELS) return 'scalar';
  return dtype === 'f16' ? 'f16x8' : 'f32x4';
}

/** Shape and dtype checks shared by the fused op and the baseline; errors name the tensor and what it should be. */
export function checkMsDeformInputs(
  op: string,
  value: Tensor,
  spatialShapes: SpatialShapes,
  samplingLocations: Tensor,
  attentionWeights: Tensor,
  levelStartIndex?: ArrayLike<number>,
): MsDeformGeometry {
  expectDType(op, value, FLOAT_DTYPES, 'value');
  expectDType(op, samplingLocations, ['f32'], 'sampling locations');
  expectDType(op, attentionWeights, ['f32'], 'attention weights');
  if (value.rank !== 4) throw new RangeError(`${op}: value ${formatShape(value.shape)} must be [batch, tokens, heads, head_dim]`);
  const [B, S, H, Dh] = value.shape as [number, number, number, number];
  const levels = parseLevels(op, spatialShapes, levelStartIndex);
  const L = levels.shapes.length;
  if (levels.tokens !== S) {
    throw new RangeError(`${op}: spatial shapes ${formatLevels(levels.shapes)} hold ${levels.tokens} tokens but value ${formatShape(value.shape)} has ${S}`);
  }
  if (H === 0 || Dh === 0) throw new RangeError(`${op}: value ${formatShape(value.shape)} has no heads or channels`);
  const loc = samplingLocations.shape;
  if (loc.length !== 6 || loc[5] !== 2) {
    throw new RangeError(`${op}: sampling locations ${formatShape(loc)} must be [batch, queries, heads, levels, points, 2]`);
  }
  const [lb, Lq, lh, ll, P] = loc as [number, number, number, number, number];
  if (lb !== B || lh !== H || ll !== L) {
    throw new RangeError(`${op}: sampling locations ${formatShape(loc)} must be [${B}, queries, ${H}, ${L}, points, 2] for value ${formatShape(value.shape)} and ${L} levels`);
  }
  if (P === 0) throw new RangeError(`${op}: sampling locations ${formatShape(loc)} have no points`);
  const expected = [B, Lq, H, L, P];
  if (attentionWeights.rank !== 5 || attentionWeights.shape.some((d, i) => d !== expected[i])) {
    throw new RangeError(`${op}: attention weights ${formatShape(attentionWeights.shape)} must be ${formatShape(expected)} to match sampling locations ${formatShape(loc)}`);
  }
  return { batch: B, queries: Lq, heads: H, headDim: Dh, levels, points: P };
}

const SAMPLING_OP = 'msDeformSamplingLocations';

/**
 * Where multi-scale deformable attention samples: reference points plus predicted offsets, in the
 * convention of Hugging Face's GroundingDino / Deformable-DETR (kernels/ms_deform_attn_sampling.wgsl):
 *   reference points [B, Lq, L, 2] (x, y):       loc = ref + offset / (W_l, H_l)
 *   reference boxes  [B, Lq, L, 4] (cx, cy, w, h): loc = ref.xy + offset / P · ref.wh · 0.5
 * Offsets [B, Lq, H, L, P, 2]; locations [B, Lq, H, L, P, 2] in f32 (sub-pixel positions need it).
 */
export function msDeformSamplingLocations(referencePoints: Tensor, offsets: Tensor, spatialShapes: SpatialShapes): Tensor {
  expectDType(SAMPLING_OP, referencePoints, FLOAT_DTYPES, 'reference points');
  expectDType(SAMPLING_OP, offsets, FLOAT_DTYPES, 'sampling offsets');
  const levels = parseLevels(SAMPLING_OP, spatialShapes);
  const L = levels.shapes.length;
  const ref = referencePoints.shape;
  const R = ref[3];
  if (ref.length !== 4 || ref[2] !== L || (R !== 2 && R !== 4)) {
    throw new RangeError(`${SAMPLING_OP}: reference points ${formatShape(ref)} must be [batch, queries, ${L}, 2] (points) or [batch, queries, ${L}, 4] (boxes) for ${L} levels`);
  }
  const off = offsets.shape;
  if (off.length !== 6 || off[0] !== ref[0] || off[1] !== ref[1] || off[3] !== L || off[5] !== 2) {
    throw new RangeError(`${SAMPLING_OP}: sampling offsets ${formatShape(off)} must be [${ref[0]}, ${ref[1]}, heads, ${L}, points, 2] to match reference points ${formatShape(ref)}`);
  }
  const [B, Lq, H, , P] = off as [number, number, number, number, number];
  const engine = offsets.engine;
  const locations = engine.empty(off, 'f32');
  const rows = B * Lq;
  const perRow = H * L * P;
  if (rows * perRow === 0) return locations;
  const refRows = referencePoints.reshape([rows, L * R]);
  const offRows = offsets.reshape([rows, perRow * 2]);
  const outRows = locations.reshape([rows, perRow * 2]);
  const bytes = [L * R * DTYPE_BYTES[referencePoints.dtype], perRow * 2 * DTYPE_BYTES[offsets.dtype], perRow * 2 * 4];
  for (const [r0, r1] of rowChunks(engine, SAMPLING_OP, rows, bytes)) {
    const views = { reference: refRows.rows(r0, r1), offsets: offRows.rows(r0, r1), locations: outRows.rows(r0, r1) };
    const n = (r1 - r0) * perRow;
    engine.run(
      {
        file: 'ms_deform_attn_sampling.wgsl',
        entry: 'sampling_locations',
        dtypes: { reference: referencePoints.dtype, offsets: offsets.dtype, locations: 'f32' },
        overrides: { BOXES: R === 4 },
      },
      views,
      { n, heads: H, levels: L, points: P, level_info: levels.info },
      Math.ceil(n / 64),
    );
    Object.values(views).forEach((t) => t.dispose());
  }
  [refRows, offRows, outRows].forEach((t) => t.dispose());
  return locations;
}

// BASELINE ONLY (benchmarks and cross-checks; use msDeformAttn): multi-scale deformable attention
// in PyTorch's reference formulation, the way exporters lower it: one bilinear grid-sample per
// level (kernels/ms_deform_attn_unfused.wgsl), the samples stacked, then weighted and summed
// (ms_deform_attn_unfused_sum.wgsl).
//
//   value [B, S, H, Dh] -> per level [B·H, Dh, H_l, W_l]; grids 2·loc − 1 -> per level [B·H, Lq, P, 2]
//   grid-sample each level -> [B·H, Dh, Lq, P]; stack -> [B·H, Dh, Lq, L·P]
//   Σ over L·P with the weights [B·H, Lq, L·P] -> [B, H·Dh, Lq] -> [B, Lq, H·Dh]
//
// Every step is its own dispatch writing its own tensor, which is what the fused kernel avoids.

/** F.grid_sample(input [N, C, H, W], grid [N, Ho, Wo, 2], bilinear, zeros, align_corners=False) -> [N, C, Ho, Wo] f32. */
export function gridSampleBaseline(input: Tensor, grid: Tensor): Tensor {
  if (input.rank !== 4 || grid.rank !== 4 || grid.shape[3] !== 2 || grid.shape[0] !== input.shape[0]) {
    throw new RangeError(`gridSampleBaseline: input ${formatShape(input.shape)} must be [N, C, H, W] and grid ${formatShape(grid.shape)} [N, Ho, Wo, 2]`);
  }
  const [N, C, H, W] = input.shape as [number, number, number, number];
  const [, Ho, Wo] = grid.shape as [number, number, number];
  const engine = input.engine;
  const output = engine.empty([N, C, Ho, Wo], 'f32');
  const bytes = [C * H * W * DTYPE_BYTES[input.dtype], Ho * Wo * 2 * DTYPE_BYTES[grid.dtype], C * Ho * Wo * 4];
  for (const [n0, n1] of rowChunks(engine, 'gridSampleBaseline', N, bytes)) {
    const views = { input: input.rows(n0, n1), grid: grid.rows(n0, n1), output: output.rows(n0, n1) };
    const n = (n1 - n0) * C * Ho * Wo;
    engine.run(
      { file: 'ms_deform_attn_unfused.wgsl', entry: 'grid_sample', dtypes: { input: input.dtype, grid: grid.dtype, output: 'f32' } },
      views,
      { n, channels: C, in_h: H, in_w: W, out_h: Ho, out_w: Wo },
      Math.ceil(n / 64),
    );
    Object.values(views).forEach((t) => t.dispose());
  }
  return output;
}

/** sampled [N, C, Q, K] · weights [N, Q, K] summed over K -> [N, C, Q] f32. */
function weightedSum(sampled: Tensor, weights: Tensor): Tensor {
  const [N, C, Q, K] = sampled.shape as [number, number, number, number];
  const engine = sampled.engine;
  const summed = engine.empty([N, C, Q], 'f32');
  const rows = sampled.reshape([N * C * Q, K]);
  const flat = summed.reshape([N * C * Q]);
  for (const [r0, r1] of rowChunks(engine, 'weightedSum', N * C * Q, [K * 4, 4])) {
    const views = { sampled: rows.rows(r0, r1), summed: flat.rows(r0, r1) };
    engine.run(
      { file: 'ms_deform_attn_unfused_sum.wgsl', entry: 'weighted_sum', dtypes: { sampled: 'f32', weights: weights.dtype, summed: 'f32' } },
      { ...views, weights },
      { n: r1 - r0, channels: C, queries: Q, terms: K, row_offset: r0 },
      Math.ceil((r1 - r0) / 64),
    );
    Object.values(views).forEach((t) => t.dispose());
  }
  rows.dispose();
  flat.dispose();
  return summed;
}

export function msDeformAttnUnfused(value: Tensor, spatialShapes: SpatialShapes, samplingLocations: Tensor, attentionWeights: Tensor): Tensor {
  const g = checkMsDeformInputs('msDeformAttnUnfused', value, spatialShapes, samplingLocations, attentionWeights);
  const { batch: B, queries: Lq, heads: H, headDim: Dh, points: P } = g;
  const L = g.levels.shapes.length;
  const temps: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (temps.push(t), t);
  try {
    const perHead = keep(permute(value, [0, 2, 3, 1])); // [B, H, Dh, S]
    const grids = keep(unary(samplingLocations, 'none', { alpha: 2, beta: -1 })); // [B, Lq, H, L, P, 2]
    const gridsByLevel = keep(permute(grids, [0, 2, 3, 1, 4, 5])); // [B, H, L, Lq, P, 2]
    const sampled = g.levels.shapes.map(([h, w], l) => {
      const start = g.levels.starts[l]!;
      const level = keep(slice(perHead, 3, start, start + h * w)).reshape([B * H, Dh, h, w]);
      const grid = keep(slice(gridsByLevel, 2, l, l + 1)).reshape([B * H, Lq, P, 2]);
      const s = keep(gridSampleBaseline(keep(level), keep(grid)));
      return keep(s.reshape([B * H, Dh, Lq, 1, P]));
    });
    const stacked = keep(concat(sampled, 3)).reshape([B * H, Dh, Lq, L * P]);
    const weights = keep(permute(attentionWeights, [0, 2, 1, 3, 4])).reshape([B * H, Lq, L * P]);
    const summed = keep(weightedSum(keep(stacked), keep(weights))).reshape([B, H * Dh, Lq]);
    return transpose(keep(summed), 1, 2);
  } finally {
    temps.forEach((t) => t.dispose());
  }
}
