/**
 * BASELINE ONLY (benchmarks and cross-checks; use msDeformAttn): multi-scale deformable attention
 * in PyTorch's reference formulation, the way exporters lower it: one bilinear grid-sample per
 * level, the samples stacked, then weighted and summed.
 *
 *   value [B, S, H, Dh] -> per level [B·H, Dh, H_l, W_l]; grids 2·loc − 1 -> per level [B·H, Lq, P, 2]
 *   grid-sample each level -> [B·H, Dh, Lq, P]; stack -> [B·H, Dh, Lq, L·P]
 *   Σ over L·P with the weights [B·H, Lq, L·P] -> [B, H·Dh, Lq] -> [B, Lq, H·Dh]
 *
 * Every step is its own dispatch writing its own tensor, which is what the fused kernel avoids.
 */
import { DTYPE_BYTES } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './chunks.js';
import { concat, permute, slice, transpose } from './copy.js';
import { unary } from './elementwise.js';
import { checkMsDeformInputs } from './ms-deform-attn.js';
import type { SpatialShapes } from './ms-deform-levels.js';

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
      { file: 'ms_deform_unfused.wgsl', entry: 'grid_sample', dtypes: { input: input.dtype, grid: grid.dtype, output: 'f32' } },
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
      { file: 'ms_deform_unfused_sum.wgsl', entry: 'weighted_sum', dtypes: { sampled: 'f32', weights: weights.dtype, summed: 'f32' } },
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
