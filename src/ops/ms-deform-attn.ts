/**
 * Multi-scale deformable attention, the core of Deformable DETR / Grounding DINO:
 *
 *   out[b, q, h·Dh + c] = Σ_l Σ_k attn[b, q, h, l, k] · bilinear(value level l of batch b, head h, channel c,
 *                                                            at loc[b, q, h, l, k])
 *
 * with F.grid_sample's align_corners=False convention (pixel = loc · size − 0.5) and zero padding.
 * One fused kernel (kernels/ms_deform_attn.wgsl); PyTorch's formulation instead runs one
 * grid-sample per level and a weighted sum (see ms-deform-attn-unfused.ts, kept as a baseline).
 *
 * Big inputs: query rows are split so that locations, weights and output fit a binding; a value
 * tensor larger than one binding is bound in token windows, one dispatch each, adding into the
 * output (in f32; an f16 output is cast at the end).
 */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import type { Engine } from '../engine/engine.js';
import type { KernelSpec } from '../engine/pipeline.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './chunks.js';
import { cast } from './copy.js';
import { formatLevels, parseLevels, type Levels, type SpatialShapes } from './ms-deform-levels.js';
import { expectDType, FLOAT_DTYPES } from './shape.js';

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
