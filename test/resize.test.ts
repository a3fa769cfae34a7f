import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { resize } from '../src/ops/resize.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('resize');
const META = JSON.parse(golden.metadata.cases!) as {
  interpolate: Record<string, { mode: 'bilinear' | 'bicubic' | 'nearest'; antialias: boolean; size: [number, number] }>;
};

describe.each(['f32', 'f16'] as const)('resize against F.interpolate, %s', (dt) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  it.each(Object.keys(META.interpolate))('%s', async (name) => {
    const c = META.interpolate[name]!;
    const x32 = golden.upload(engine, 'interp.x.f32');
    const x = dt === 'f32' ? x32 : engine.tensor(await x32.toArray(), x32.shape, 'f16');
    const y = resize(x, c.size, { mode: c.mode, antialias: c.antialias });
    expect(y.shape).toEqual([2, 3, ...c.size]);
    expect(y.dtype).toBe(dt);
    const all = await y.toArray();
    const sampled = Array.from(golden.values(`interp.${name}.idx`), (i) => all[i]!);
    expectClose(sampled, golden.values(`interp.${name}.${dt}`), { rel: TOL[dt], label: `${name} ${dt}` });
    [x32, x, y].forEach((t) => t.dispose());
  });
});

describe('resize with align_corners', () => {
  it('bicubic, as F.interpolate(align_corners=True)', async () => {
    const engine = await testEngine();
    const x = golden.upload(engine, 'interp.x.f32');
    const y = resize(x, [50, 71], { mode: 'bicubic', alignCorners: true });
    const all = await y.toArray();
    const sampled = Array.from(golden.values('interp.align_corners.idx'), (i) => all[i]!);
    expectClose(sampled, golden.values('interp.align_corners.f32'), { rel: TOL.f32, label: 'align_corners' });
    [x, y].forEach((t) => t.dispose());
  });
});

describe('resize options and limits', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });
  it('gives the same result split across an 8 KiB binding limit', async () => {
    const data = Float32Array.from({ length: 6 * 20 * 24 }, (_, i) => Math.sin(i * 0.37));
    const x = engine.tensor(data, [2, 3, 20, 24]);
    const y = resize(x, [16, 16], { mode: 'bicubic', antialias: true });
    const whole = await testEngine();
    const xw = whole.tensor(data, [2, 3, 20, 24]);
    const yw = resize(xw, [16, 16], { mode: 'bicubic', antialias: true });
    expectClose(await y.toArray(), await yw.toArray(), { rel: 1e-7, label: 'chunked resize' });
    [x, y, xw, yw].forEach((t) => t.dispose());
  });
  it('names bad sizes and option clashes', () => {
    const x = engine.empty([1, 1, 4, 4]);
    expect(() => resize(x, [0, 3])).toThrow(/size \[0,3\] must be two positive integers/);
    expect(() => resize(x, [2, 2], { antialias: true, alignCorners: true })).toThrow(/antialias does not take alignCorners/);
    x.dispose();
  });
});
