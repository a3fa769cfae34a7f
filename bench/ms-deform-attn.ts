/**
 * Multi-scale deformable attention at Grounding DINO's sizes (an 800x1333 image: levels 100x167,
 * 50x84, 25x42, 13x21, S = 22223 tokens; 8 heads of 32 channels, 4 points per level): the encoder
 * call (Lq = S) and the decoder call (Lq = 900), fused kernel against the unfused baseline
 * (grid-sample per level, stack, weighted sum) on the same inputs in the same run.
 *
 * Sampling locations are realistic rather than uniform: a trained model samples a few pixels
 * around each query's reference point (its own pixel in the encoder, a box in the decoder), which
 * decides how well the value tensor stays in cache.
 */
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { MultiscaleDeformableAttention } from '../src/nn/ms-deform-attn.js';
import { Params } from '../src/nn/params.js';
import { gridSampleBaseline, msDeformAttnUnfused } from '../src/ops/ms-deform-attn.js';
import { permute, slice } from '../src/ops/copy.js';
import { unary } from '../src/ops/elementwise.js';
import { msDeformAttn, type MsDeformAttnKernel } from '../src/ops/ms-deform-attn.js';
import type { Harness, Measurement } from './harness.js';

const LEVELS: [number, number][] = [[100, 167], [50, 84], [25, 42], [13, 21]];
const HEADS = 8;
const HEAD_DIM = 32;
const POINTS = 4;
const D = HEADS * HEAD_DIM;
const S = LEVELS.reduce((sum, [h, w]) => sum + h * w, 0);

function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Each query's reference (x, y): the encoder's token centres, or 900 random box centres. */
function references(queries: number, rand: () => number): Float32Array {
  const ref = new Float32Array(2 * queries);
  if (queries !== S) {
    for (let i = 0; i < ref.length; i++) ref[i] = rand();
    return ref;
  }
  let q = 0;
  for (const [h, w] of LEVELS) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, q++) [ref[2 * q], ref[2 * q + 1]] = [(x + 0.5) / w, (y + 0.5) / h];
    }
  }
  return ref;
}

/** Locations within ±4 pixels of each query's reference at every level; softmax-like positive weights. */
function inputs(engine: Engine, queries: number, valueDtype: DType) {
  const rand = lcg(queries);
  const value = new Float32Array(S * D).map(() => rand() * 2 - 1);
  const ref = references(queries, rand);
  const locations = new Float32Array(queries * HEADS * LEVELS.length * POINTS * 2);
  const weights = new Float32Array(queries * HEADS * LEVELS.length * POINTS);
  let i = 0;
  for (let q = 0; q < queries; q++) {
    for (let h = 0; h < HEADS; h++) {
      for (const [lh, lw] of LEVELS) {
        for (let k = 0; k < POINTS; k++, i++) {
          locations[2 * i] = ref[2 * q]! + ((rand() * 2 - 1) * 4) / lw;
          locations[2 * i + 1] = ref[2 * q + 1]! + ((rand() * 2 - 1) * 4) / lh;
          weights[i] = rand() / (LEVELS.length * POINTS / 2);
        }
      }
    }
  }
  return {
    value: engine.tensor(value, [1, S, HEADS, HEAD_DIM], valueDtype),
    locations: engine.tensor(locations, [1, queries, HEADS, LEVELS.length, POINTS, 2]),
    weights: engine.tensor(weights, [1, queries, HEADS, LEVELS.length, POINTS]),
    references: ref,
  };
}

/**
 * Value bytes the fused kernel gathers: 4 corners x 32 channels per sampling point. Neighbouring
 * points share corners, so much of it comes from cache: a rate, not a DRAM bandwidth.
 */
function gatheredBytes(queries: number, valueDtype: DType): number {
  return queries * HEADS * LEVELS.length * POINTS * 4 * HEAD_DIM * (valueDtype === 'f16' ? 2 : 4);
}

export async function benchMsDeformAttn(h: Harness): Promise<void> {
  const e = h.engine;
  for (const [tag, queries] of [['decoder', 900], ['encoder', S]] as const) {
    const shape = `Lq${queries}xS${S}`;
    if (!h.wanted(`msda_${tag}`)) continue;
    const f32 = inputs(e, queries, 'f32');
    const f16 = { ...f32, value: e.tensor(await f32.value.toArray(), f32.value.shape, 'f16') };

    const unfused = await h.gpu({
      name: `msda_${tag}_unfused_f32`,
      shape,
      run: () => msDeformAttnUnfused(f32.value, LEVELS, f32.locations, f32.weights),
    });
    // The unfused path's four grid-samples alone, on the same data already in their layout: the
    // least an unfused implementation must do.
    const perHead = permute(f32.value, [0, 2, 3, 1]); // [1, H, Dh, S]
    const grids = unary(f32.locations, 'none', { alpha: 2, beta: -1 });
    const gridsByLevel = permute(grids, [0, 2, 3, 1, 4, 5]); // [1, H, L, Lq, P, 2]
    let start = 0;
    const levelInputs = LEVELS.map(([lh, lw], l) => {
      const v = slice(perHead, 3, start, start + lh * lw);
      const g = slice(gridsByLevel, 2, l, l + 1);
      start += lh * lw;
      const level = { value: v.reshape([HEADS, HEAD_DIM, lh, lw]), grid: g.reshape([HEADS, queries, POINTS, 2]) };
      [v, g].forEach((t) => t.dispose());
      return level;
    });
    [perHead, grids, gridsByLevel].forEach((t) => t.dispose());
    const samplesOnly = await h.gpu({
      name: `msda_${tag}_unfused_grid_samples_only`,
      shape,
      run: () => {
        const outs = levelInputs.map((l) => gridSampleBaseline(l.value, l.grid));
        return { dispose: () => outs.forEach((t) => t.dispose()) };
      },
    });
    levelInputs.forEach((l) => [l.value, l.grid].forEach((t) => t.dispose()));

    const fused = async (inp: typeof f32, dt: DType, kernel: MsDeformAttnKernel): Promise<Measurement | null> => {
      const m = await h.gpu({
        name: `msda_${tag}_fused_${kernel}_${dt}`,
        shape,
        run: () => msDeformAttn(inp.value, LEVELS, inp.locations, inp.weights, { kernel, dtype: 'f32' }),
      });
      if (!m) return m;
      h.annotate(m, {
        speedup_vs_unfused: ratio(unfused, m),
        speedup_vs_grid_samples_only: ratio(samplesOnly, m),
        gathered_gb_per_s: Math.round(gatheredBytes(queries, dt) / m.median_ms / 1e4) / 100,
      });
      return m;
    };
    await fused(f32, 'f32', 'registers');
    await fused(f16, 'f16', 'registers');
    // The GPU variant (workgroup memory, barriers) on this adapter, for comparison.
    await fused(f16, 'f16', 'shared');
    [f32.value, f16.value, f32.locations, f32.weights].forEach((t) => t.dispose());

    await benchModule(h, tag, queries, f32.references);
  }
}

/** The whole MSDeformAttn layer (projections, softmax, locations, sampling) with f16 value storage. */
async function benchModule(h: Harness, tag: string, queries: number, ref: Float32Array): Promise<void> {
  const e = h.engine;
  const rand = lcg(7);
  const tensor = (shape: number[], scale: number) => e.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => (rand() * 2 - 1) * scale), shape);
  const L = LEVELS.length;
  const weights = new Map<string, Tensor>([
    ['value_proj.weight', tensor([D, D], 1 / 16)], ['value_proj.bias', tensor([D], 0.1)],
    ['sampling_offsets.weight', tensor([HEADS * L * POINTS * 2, D], 1 / 16)], ['sampling_offsets.bias', tensor([HEADS * L * POINTS * 2], 2)],
    ['attention_weights.weight', tensor([HEADS * L * POINTS, D], 1 / 16)], ['attention_weights.bias', tensor([HEADS * L * POINTS], 0.1)],
    ['output_proj.weight', tensor([D, D], 1 / 16)], ['output_proj.bias', tensor([D], 0.1)],
  ]);
  const attn = MultiscaleDeformableAttention.load(Params.of(weights, 'bench weights'), { dModel: D, heads: HEADS, levels: L, points: POINTS }, { valueDtype: 'f16' });
  const input = tensor([1, S, D], 1);
  const query = queries === S ? input : tensor([1, queries, D], 1);
  const refPoints = new Float32Array(queries * L * 2);
  for (let q = 0; q < queries; q++) for (let l = 0; l < L; l++) refPoints.set([ref[2 * q]!, ref[2 * q + 1]!], (q * L + l) * 2);
  const referencePoints = e.tensor(refPoints, [1, queries, L, 2]);
  await h.gpu({
    name: `msda_${tag}_module_f16_value`,
    shape: `Lq${queries}xS${S}xd${D}`,
    run: () => attn.forward({ query, input, referencePoints, spatialShapes: LEVELS }),
  });
  [...weights.values(), input, referencePoints].forEach((t) => t.dispose());
  if (query !== input) query.dispose();
}

/** How many times faster than a baseline timed in the same run ('n/a' when the filter skipped it). */
function ratio(baseline: Measurement | null, m: Measurement): number | string {
  return baseline ? Math.round((baseline.median_ms / m.median_ms) * 100) / 100 : 'n/a';
}
