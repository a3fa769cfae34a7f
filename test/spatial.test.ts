import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { maxPool2d, pad, upsampleNearest, type PadMode } from '../src/ops/spatial.js';
import { binary } from '../src/ops/elementwise.js';
import { hashed } from './hashed.js';
import { expectExact, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('spatial');
const META = JSON.parse(golden.metadata.cases!) as {
  pad: Record<string, { amounts: [number, number, number, number]; mode: PadMode; value: number }>;
  max_pool: Record<string, { kernel: number; stride: number; padding: number; shift: number }>;
};

describe('upsample and pad', () => {
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

  it.each(Object.keys(META.max_pool))('max pool %s equals F.max_pool2d', async (name) => {
    const c = META.max_pool[name]!;
    const x = golden.upload(engine, 'remap.x');
    const shifted = binary('add', x, engine.tensor([c.shift], [1]));
    const y = maxPool2d(shifted, { kernel: c.kernel, stride: c.stride, padding: c.padding });
    expect(y.shape).toEqual(golden.shape(`max_pool.${name}`));
    await expectExact(y, golden.values(`max_pool.${name}`), `max pool ${name}`);
    [x, shifted, y].forEach((t) => t.dispose());
  });

  it('max-pools f16 and names bad settings', async () => {
    const x = golden.upload(engine, 'remap.x');
    const x16 = engine.tensor(await x.toArray(), x.shape, 'f16');
    const y = maxPool2d(x16, { kernel: 3, stride: 2, padding: 1 });
    expect(y.dtype).toBe('f16');
    expect(y.shape).toEqual([2, 3, 3, 4]);
    const want = golden.values('max_pool.resnet');
    const got = await y.toArray();
    got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(want[i]!))));
    expect(() => maxPool2d(x, { kernel: 3, padding: 2 })).toThrow(/padding 2 must be at most half the kernel 3/);
    expect(() => maxPool2d(x, { kernel: 0 })).toThrow(/kernel must be an integer >= 1, got 0/);
    expect(() => maxPool2d(x, { kernel: 9 })).toThrow(/input \[2, 3, 5, 7\] padded by 0 is smaller than the 9x9 window/);
    [x, x16, y].forEach((t) => t.dispose());
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
});

describe('spatial limits', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });

  it('splits planes across an 8 KiB binding limit', async () => {
    const [n, c, h, w] = [5, 32, 4, 4];
    const data = hashed(n * c * h * w, 9, 2);
    const x = engine.tensor(data, [n, c, h, w]);
    const up = upsampleNearest(x, 2);
    const upData = await up.toArray();
    expect(upData[((4 * c + 31) * 8 + 7) * 8 + 7]).toBe(data[((4 * c + 31) * 4 + 3) * 4 + 3]);
    [x, up].forEach((t) => t.dispose());
  });
});
