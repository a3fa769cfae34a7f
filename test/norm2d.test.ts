import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { groupNorm, layerNorm2d } from '../src/ops/norm2d.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('norm2d');
const META = JSON.parse(golden.metadata.cases!) as {
  group_norm: Record<string, { shape: number[]; groups: number; affine: boolean; act: 'none' | 'silu'; eps: number; offset: number; seed: number }>;
  layer_norm2d: Record<string, { shape: number[]; affine: boolean; eps: number; offset: number; seed: number }>;
};

/** The input, weight and bias of a norm case, as the generator built them. */
function normInputs(engine: Engine, c: { shape: number[]; offset: number; seed: number }, dt: 'f32' | 'f16') {
  const n = c.shape.reduce((a, b) => a * b);
  const x = engine.tensor(hashed(n, c.seed, 4).map((v) => v + c.offset), c.shape, dt);
  const ch = c.shape[1]!;
  const w = engine.tensor(hashed(ch, c.seed + 1, 0.5).map((v) => v + 1), [ch], dt);
  const b = engine.tensor(hashed(ch, c.seed + 2, 0.5), [ch], dt);
  return { x, w, b };
}

async function expectSampled(y: { toArray(): Promise<ArrayLike<number>> }, name: string, dt: 'f32' | 'f16') {
  const all = await y.toArray();
  const sampled = Array.from(golden.values(`${name}.idx`), (i) => all[i]!);
  expectClose(sampled, golden.values(`${name}.${dt}`), { rel: TOL[dt], label: `${name} ${dt}` });
}

describe.each(['cpu', 'gpu'] as const)('norm2d golden, %s profile', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });
  describe.each(['f32', 'f16'] as const)('%s', (dt) => {
    it.each(Object.keys(META.group_norm))('GroupNorm %s', async (name) => {
      const c = META.group_norm[name]!;
      const { x, w, b } = normInputs(engine, c, dt);
      const y = groupNorm(x, c.groups, c.affine ? w : undefined, c.affine ? b : undefined, { eps: c.eps, act: c.act });
      await expectSampled(y, name, dt);
      [x, w, b, y].forEach((t) => t.dispose());
    });
    it.each(Object.keys(META.layer_norm2d))('LayerNorm2d %s', async (name) => {
      const c = META.layer_norm2d[name]!;
      const { x, w, b } = normInputs(engine, c, dt);
      const y = layerNorm2d(x, c.affine ? w : undefined, c.affine ? b : undefined, { eps: c.eps });
      await expectSampled(y, name, dt);
      [x, w, b, y].forEach((t) => t.dispose());
    });
  });
});

describe('norm2d limits and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });

  it('splits GroupNorm rows across an 8 KiB binding limit', async () => {
    const [n, c, h, w, groups] = [5, 32, 4, 4, 4];
    const data = hashed(n * c * h * w, 9, 2);
    const x = engine.tensor(data, [n, c, h, w]);
    const y = groupNorm(x, groups, undefined, undefined, { act: 'silu' });
    const width = (c / groups) * h * w;
    const want = new Float64Array(data.length);
    for (let r = 0; r < n * groups; r++) {
      const row = data.subarray(r * width, (r + 1) * width);
      const mean = row.reduce((s, v) => s + v, 0) / width;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / width;
      row.forEach((v, i) => {
        const z = (v - mean) / Math.sqrt(variance + 1e-5);
        want[r * width + i] = z / (1 + Math.exp(-z));
      });
    }
    expectClose(await y.toArray(), want, { rel: TOL.f32, label: 'chunked GroupNorm' });
    [x, y].forEach((t) => t.dispose());
  });

  it('names bad groups and weights', () => {
    const x = engine.empty([2, 30, 3, 3]);
    const w = engine.empty([32]);
    expect(() => groupNorm(x, 4)).toThrow(/4 groups must divide the 30 channels of \[2, 30, 3, 3\]/);
    expect(() => groupNorm(x, 3, w)).toThrow(/weight \[32\] must be \[30\]/);
    expect(() => layerNorm2d(x.reshape([2, 30, 9]))).toThrow(/must be NCHW/);
    [x, w].forEach((t) => t.dispose());
  });
});
