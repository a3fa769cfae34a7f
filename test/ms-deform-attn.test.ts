import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { defaultKernel, msDeformAttn, msDeformAttnUnfused, type MsDeformAttnKernel } from '../src/ops/ms-deform-attn.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';
import { hashed, hashedLocations, hashedWeights, pickRows, tokenCount } from './ms-deform-attn-inputs.js';

const golden = loadGolden('ms_deform_attn');
const cases = JSON.parse(golden.metadata.cases!) as Record<string, { shapes: [number, number][]; queries?: number; value_seed?: number; location_seed?: number; weight_seed?: number }>;
const HEADS = Number(golden.metadata.heads);
const HEAD_DIM = Number(golden.metadata.head_dim);
const POINTS = Number(golden.metadata.points);
const BATCH = Number(golden.metadata.batch);

/** The edge-case inputs stored whole in the golden file, value uploaded in `dt` (its values are exact in f16). */
function smallCase(engine: Engine, tag: string, dt: DType) {
  return {
    value: engine.tensor(golden.values(`${tag}.value`), golden.shape(`${tag}.value`), dt),
    locations: golden.upload(engine, `${tag}.locations`),
    weights: golden.upload(engine, `${tag}.weights`),
    want: golden.values(`${tag}.out`),
    shapes: cases[tag]!.shapes,
  };
}

/** The pyramid cases' inputs rebuilt from the hash (the golden holds sampled output rows only). */
const pyramidHost = new Map<string, { value: Float32Array; locations: Float32Array; weights: Float32Array }>();
function pyramidCase(engine: Engine, tag: 'decoder' | 'encoder', dt: DType) {
  const c = cases[tag]!;
  const S = tokenCount(c.shapes);
  const L = c.shapes.length;
  const Lq = c.queries!;
  let host = pyramidHost.get(tag);
  if (!host) {
    host = {
      value: hashed(c.value_seed!, BATCH * S * HEADS * HEAD_DIM),
      locations: hashedLocations(c.location_seed!, BATCH * Lq * HEADS * L * POINTS * 2),
      weights: hashedWeights(c.weight_seed!, BATCH * Lq * HEADS * L * POINTS),
    };
    pyramidHost.set(tag, host);
  }
  return {
    value: engine.tensor(host.value, [BATCH, S, HEADS, HEAD_DIM], dt),
    locations: engine.tensor(host.locations, [BATCH, Lq, HEADS, L, POINTS, 2]),
    weights: engine.tensor(host.weights, [BATCH, Lq, HEADS, L, POINTS]),
    shapes: c.shapes,
    /** The output rows the golden holds. */
    pick: (out: ArrayLike<number>) => pickRows(out, BATCH, Lq, HEADS * HEAD_DIM, golden.values(`${tag}.queries`)),
    want: golden.values(`${tag}.out`),
  };
}

function dispose(...ts: Tensor[]): void {
  ts.forEach((t) => t.dispose());
}

// Each kernel runs under the profile that selects it by default, so the default choice is covered too.
describe.each([
  ['registers', 'cpu'],
  ['shared', 'gpu'],
] as const)('msDeformAttn, %s kernel (%s profile)', (kernel: MsDeformAttnKernel, profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  describe.each(['f32', 'f16'] as const)('%s value', (dt) => {
    // f16 values are exact (hash values have 11 significant bits) and sums are f32: f32 tolerance holds for both.
    it.each(['edge', 'wide'])('%s case matches F.grid_sample per level', async (tag) => {
      const c = smallCase(engine, tag, dt);
      const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights, { dtype: 'f32' });
      expect(out.shape).toEqual([c.value.shape[0], c.locations.shape[1], c.value.shape[2]! * c.value.shape[3]!]);
      expectClose(await out.toArray(), c.want, { rel: TOL.f32, label: `${tag} ${dt}` });
      dispose(c.value, c.locations, c.weights, out);
    });

    it('decoder pyramid: 900 queries, batch 2, 100x150 .. 13x19', async () => {
      const c = pyramidCase(engine, 'decoder', dt);
      const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights, { dtype: 'f32' });
      expectClose(c.pick(await out.toArray()), c.want, { rel: TOL.f32, label: `decoder ${dt}` });
      dispose(c.value, c.locations, c.weights, out);
    });
  });

  it('encoder pyramid: Lq = S = 19947, f16 value', async () => {
    const c = pyramidCase(engine, 'encoder', 'f16');
    const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights);
    expect(out.dtype).toBe('f16');
    expectClose(c.pick(await out.toArray()), c.want, { rel: TOL.f16, label: 'encoder f16' });
    dispose(c.value, c.locations, c.weights, out);
  });

  it('is the default kernel for this profile (which the cases above use)', () => {
    expect(defaultKernel(engine)).toBe(kernel);
  });
});

describe('msDeformAttn encoder pyramid in f32', () => {
  it('Lq = S = 19947, registers kernel', async () => {
    const engine = await testEngine({ profile: 'cpu' });
    const c = pyramidCase(engine, 'encoder', 'f32');
    const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights);
    expectClose(c.pick(await out.toArray()), c.want, { rel: TOL.f32, label: 'encoder f32' });
    dispose(c.value, c.locations, c.weights, out);
  });
});

describe('msDeformAttn over small bindings', () => {
  // Value, locations and output all exceed the binding limit: queries are split into row ranges and
  // the value into token windows whose contributions add up.
  it.each(['registers', 'shared'] as const)('%s kernel: edge and wide cases, f32 and f16 output', async (kernel) => {
    const engine = await testEngine({ maxBindingBytes: 2048 });
    for (const tag of ['edge', 'wide']) {
      const c = smallCase(engine, tag, 'f32');
      expect(c.value.byteLength).toBeGreaterThan(2048);
      const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights, { kernel });
      expectClose(await out.toArray(), c.want, { rel: TOL.f32, label: `${tag} chunked` });
      const half = msDeformAttn(c.value, c.shapes, c.locations, c.weights, { kernel, dtype: 'f16' });
      expect(half.dtype).toBe('f16');
      expectClose(await half.toArray(), c.want, { rel: TOL.f16, label: `${tag} chunked f16 out` });
      dispose(c.value, c.locations, c.weights, out, half);
    }
  });

  it('decoder pyramid with a 1 MiB binding limit (40 MB value in windows)', async () => {
    const engine = await testEngine({ maxBindingBytes: 1 << 20 });
    const c = pyramidCase(engine, 'decoder', 'f16');
    const out = msDeformAttn(c.value, c.shapes, c.locations, c.weights, { dtype: 'f32' });
    expectClose(c.pick(await out.toArray()), c.want, { rel: TOL.f32, label: 'decoder chunked' });
    dispose(c.value, c.locations, c.weights, out);
  });
});

describe('msDeformAttn unfused baseline (grid-sample per level, weighted sum)', () => {
  it.each(['edge', 'wide'])('%s case agrees with the reference', async (tag) => {
    const engine = await testEngine();
    const c = smallCase(engine, tag, 'f32');
    const out = msDeformAttnUnfused(c.value, c.shapes, c.locations, c.weights);
    expectClose(await out.toArray(), c.want, { rel: TOL.f32, label: `unfused ${tag}` });
    dispose(c.value, c.locations, c.weights, out);
  });
});

describe('msDeformAttn checks', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  const shapes: [number, number][] = [[2, 3], [1, 2]];

  function inputs(S = 8, lastDim = 2, weightsShape = [1, 4, 2, 2, 3]) {
    return {
      value: engine.tensor(new Float32Array(1 * S * 2 * 4), [1, S, 2, 4]),
      locations: engine.tensor(new Float32Array(1 * 4 * 2 * 2 * 3 * lastDim), [1, 4, 2, 2, 3, lastDim]),
      weights: engine.tensor(new Float32Array(weightsShape.reduce((a, b) => a * b, 1)), weightsShape),
    };
  }

  function expectError(run: () => unknown, message: RegExp): void {
    const before = engine.memory().liveBuffers;
    expect(run).toThrow(message);
    expect(engine.memory().liveBuffers, 'nothing left allocated').toBe(before);
  }

  it('names levels that do not match the value tokens', () => {
    const t = inputs(9);
    expectError(() => msDeformAttn(t.value, shapes, t.locations, t.weights), /spatial shapes \[2x3, 1x2\] hold 8 tokens but value \[1, 9, 2, 4\] has 9/);
    dispose(t.value, t.locations, t.weights);
  });

  it('names wrong last dimensions and mismatched weights', () => {
    const t = inputs(8, 3);
    expectError(() => msDeformAttn(t.value, shapes, t.locations, t.weights), /sampling locations \[1, 4, 2, 2, 3, 3\] must be \[batch, queries, heads, levels, points, 2\]/);
    const u = inputs(8, 2, [1, 4, 2, 2, 4]);
    expectError(() => msDeformAttn(u.value, shapes, u.locations, u.weights), /attention weights \[1, 4, 2, 2, 4\] must be \[1, 4, 2, 2, 3\]/);
    const v = inputs();
    expectError(() => msDeformAttn(v.value, [[2, 3], [1, 1], [1, 1]], v.locations, v.weights), /sampling locations \[1, 4, 2, 2, 3, 2\] must be \[1, queries, 2, 3, points, 2\]/);
    dispose(t.value, t.locations, t.weights, u.value, u.locations, u.weights, v.value, v.locations, v.weights);
  });

  it('checks level start index, shapes, dtypes and kernel names', () => {
    const t = inputs();
    expectError(() => msDeformAttn(t.value, shapes, t.locations, t.weights, { levelStartIndex: [0, 5] }), /level start index \[0, 5\] does not match spatial shapes \[2x3, 1x2\] \(expected \[0, 6\]\)/);
    expectError(() => msDeformAttn(t.value, [[2, 4], [0, 2]], t.locations, t.weights), /level 1 has spatial shape \(0, 2\)/);
    expectError(() => msDeformAttn(t.value, [2, 3, 1], t.locations, t.weights), /flat spatial shapes need \(height, width\) pairs; got 3 numbers/);
    expectError(() => msDeformAttn(t.value, Array.from({ length: 17 }, () => [1, 1] as [number, number]), t.locations, t.weights), /17 levels exceed the 16/);
    expectError(() => msDeformAttn(t.value, shapes, t.locations, t.weights, { kernel: 'subgroup' as MsDeformAttnKernel }), /unknown kernel 'subgroup'/);
    const half = engine.tensor(new Float32Array(t.locations.size), t.locations.shape, 'f16');
    expectError(() => msDeformAttn(t.value, shapes, half, t.weights), /sampling locations \[1, 4, 2, 2, 3, 2\] has dtype f16; expected f32/);
    expect(msDeformAttn(t.value, [2, 3, 1, 2], t.locations, t.weights, { levelStartIndex: [0, 6] }).shape).toEqual([1, 4, 8]);
    dispose(t.value, t.locations, t.weights, half);
  });

  it('names bad ranks, empty or malformed levels, zero sizes and output dtypes', () => {
    const t = inputs();
    const flat = engine.tensor(new Float32Array(64), [8, 8]);
    expectError(() => msDeformAttn(flat, shapes, t.locations, t.weights), /value \[8, 8\] must be \[batch, tokens, heads, head_dim\]/);
    expectError(() => msDeformAttn(t.value, [], t.locations, t.weights), /spatial shapes are empty/);
    expectError(() => msDeformAttn(t.value, [[2, 3, 1], [1, 2]] as unknown as [number, number][], t.locations, t.weights), /spatial shape of level 0 has 3 entries/);
    expectError(() => msDeformAttn(t.value, shapes, t.locations, t.weights, { dtype: 'i32' }), /output dtype i32; expected f32 or f16/);
    const noPoints = engine.tensor(new Float32Array(0), [1, 4, 2, 2, 0, 2]);
    expectError(() => msDeformAttn(t.value, shapes, noPoints, t.weights), /have no points/);
    dispose(t.value, t.locations, t.weights, flat, noPoints);
  });

  it('names a token too wide for the binding limit', async () => {
    const small = await testEngine({ maxBindingBytes: 1024 });
    const value = small.tensor(new Float32Array(2 * 300), [1, 2, 1, 300]);
    const locations = small.tensor(new Float32Array(2), [1, 1, 1, 1, 1, 2]);
    const weights = small.tensor(new Float32Array(1), [1, 1, 1, 1, 1]);
    expect(() => msDeformAttn(value, [[1, 2]], locations, weights)).toThrow(/msDeformAttn: 1 row\(s\) of 1200 bytes exceed the 1024-byte binding limit/);
    dispose(value, locations, weights);
  });
});
