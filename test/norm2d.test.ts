import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { concat } from '../src/ops/copy.js';
import { groupNorm, layerNorm2d } from '../src/ops/norm2d.js';
import { pad, upsampleNearest, type PadMode } from '../src/ops/spatial.js';
import { timestepEmbedding } from '../src/ops/timestep.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('norm2d');
const META = JSON.parse(golden.metadata.cases!) as {
  group_norm: Record<string, { shape: number[]; groups: number; affine: boolean; act: 'none' | 'silu'; eps: number; offset: number; seed: number }>;
  layer_norm2d: Record<string, { shape: number[]; affine: boolean; eps: number; offset: number; seed: number }>;
  pad: Record<string, { amounts: [number, number, number, number]; mode: PadMode; value: number }>;
  timesteps: number[];
  embeddings: Record<string, { dim: number; flip_sin_to_cos: boolean; downscale_freq_shift: number }>;
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

async function expectExact(t: { toArray(): Promise<ArrayLike<number>> }, want: ArrayLike<number>, label: string) {
  const got = Array.from(await t.toArray());
  expect(got.length, label).toBe(want.length);
  const bad = got.findIndex((v, i) => v !== want[i]);
  expect(bad, `${label}: first mismatch at ${bad}: got ${got[bad]}, want ${want[bad]}`).toBe(-1);
}

describe('upsample, pad, concat and timestep embedding', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it.each([2, 3])('nearest upsampling x%i equals F.interpolate', async (f) => {
    const x = golden.upload(engine, 'remap.x');
    const y = upsampleNearest(x, f);
    expect(y.shape).toEqual([2, 3, 5 * f, 7 * f]);
    await expectExact(y, golden.values(`upsample${f}`), `upsample x${f}`);
    [x, y].forEach((t) => t.dispose());
  });

  it.each(Object.keys(META.pad))('pad %s equals F.pad', async (name) => {
    const c = META.pad[name]!;
    const x = golden.upload(engine, 'remap.x');
    const y = pad(x, c.amounts, { mode: c.mode, value: c.value });
    expect(y.shape).toEqual(golden.shape(`pad.${name}`));
    await expectExact(y, golden.values(`pad.${name}`), `pad ${name}`);
    [x, y].forEach((t) => t.dispose());
  });

  it('pads f16 and names bad amounts', async () => {
    const x = golden.upload(engine, 'remap.x');
    const x16 = engine.tensor(await x.toArray(), x.shape, 'f16');
    const y = pad(x16, [1, 1, 1, 1], { mode: 'replicate' });
    expect(y.dtype).toBe('f16');
    expect(y.shape).toEqual([2, 3, 7, 9]);
    expect(() => pad(x, [7, 0, 0, 0], { mode: 'reflect' })).toThrow(/reflect padding \[7,0,0,0\] must be smaller than the input's 5x7/);
    expect(() => pad(x, [0, 0, -3, -3])).toThrow(/output size -1x7 of input \[2, 3, 5, 7\] is negative/);
    [x, x16, y].forEach((t) => t.dispose());
  });

  it('concatenates NCHW tensors along channels (the U-Net skip connections)', async () => {
    const a = engine.tensor(hashed(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
    const b = engine.tensor(hashed(2 * 2 * 4 * 5, 2), [2, 2, 4, 5]);
    const y = concat([a, b], 1);
    expect(y.shape).toEqual([2, 5, 4, 5]);
    const [av, bv] = [hashed(120, 1), hashed(80, 2)];
    const want: number[] = [];
    for (let n = 0; n < 2; n++) want.push(...av.subarray(n * 60, (n + 1) * 60), ...bv.subarray(n * 40, (n + 1) * 40));
    await expectExact(y, want, 'concat channels');
    [a, b, y].forEach((t) => t.dispose());
  });

  it.each(Object.keys(META.embeddings))('timestep embedding %s matches diffusers', async (name) => {
    const c = META.embeddings[name]!;
    const y = timestepEmbedding(engine, META.timesteps, c.dim, { flipSinToCos: c.flip_sin_to_cos, downscaleFreqShift: c.downscale_freq_shift });
    expect(y.shape).toEqual([META.timesteps.length, c.dim]);
    // PyTorch's f32 exp may differ from a correctly rounded one by an ulp, which t = 999 turns into ~6e-5 radians.
    expectClose(await y.toArray(), golden.values(`timestep.${name}`), { rel: TOL.f32, label: `timestep ${name}` });
    y.dispose();
  });
});

describe('norm2d limits and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });

  it('splits GroupNorm rows and remaps across an 8 KiB binding limit', async () => {
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
    const up = upsampleNearest(x, 2);
    const upData = await up.toArray();
    expect(upData[((4 * c + 31) * 8 + 7) * 8 + 7]).toBe(data[((4 * c + 31) * 4 + 3) * 4 + 3]);
    [x, y, up].forEach((t) => t.dispose());
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
