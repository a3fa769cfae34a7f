import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { broadcastTo, cast, concat, contiguous, permute, slice, transpose } from '../src/ops/copy.js';
import { hashed } from './hashed.js';
import { expectExact, loadGolden, testEngine, type Golden } from './helpers.js';

const golden = loadGolden('copy');

// Copies are exact: results must equal the reference bit for bit (expectExact).

function suite(name: string, options: { maxBindingBytes?: number }) {
  describe(name, () => {
    let engine: Engine;
    let g: Golden;
    beforeAll(async () => {
      engine = await testEngine(options);
      g = golden;
    });

    it('casts f32 -> f16 -> f32 exactly as PyTorch rounds', async () => {
      const x = g.upload(engine, 'cast.x.f32');
      const h = cast(x, 'f16');
      expect(h.dtype).toBe('f16');
      await expectExact(h, g.values('cast.f16_bits_as_f32'), 'f32->f16');
      const back = cast(h, 'f32');
      await expectExact(back, g.values('cast.f16_bits_as_f32'), 'f16->f32');
      [x, h, back].forEach((t) => t.dispose());
    });

    it.each(['f32', 'f16', 'i32'])('permute %s [3,5,7,11] by (2,0,3,1)', async (dt) => {
      const p = g.upload(engine, `p.${dt}`);
      const y = permute(p, [2, 0, 3, 1]);
      expect(y.shape).toEqual([7, 3, 11, 5]);
      await expectExact(y, g.values(`permute.${dt}`), `permute ${dt}`);
      [p, y].forEach((t) => t.dispose());
    });

    it.each(['f32', 'f16'])('transpose and slice %s', async (dt) => {
      const x = g.upload(engine, `x.${dt}`);
      const t = transpose(x);
      await expectExact(t, g.values(`transpose.${dt}`), 'transpose');
      const cols = slice(x, 1, 5, 100);
      expect(cols.shape).toEqual([67, 95]);
      await expectExact(cols, g.values(`slice_cols.${dt}`), 'slice cols');
      const rows = slice(x, 0, 13, 50);
      await expectExact(rows, g.values(`slice_rows.${dt}`), 'slice rows');
      [x, t, cols, rows].forEach((v) => v.dispose());
    });

    it.each(['f32', 'f16'])('concat %s along dims 1 and 0', async (dt) => {
      const parts = [0, 1, 2].map((i) => g.upload(engine, `part${i}.${dt}`));
      const y = concat(parts, 1);
      expect(y.shape).toEqual([3, 16, 7]);
      await expectExact(y, g.values(`concat1.${dt}`), 'concat dim 1');
      const swapped = parts.map((t) => transpose(t, 0, 1));
      const z = concat(swapped, 0);
      await expectExact(z, g.values(`concat0.${dt}`), 'concat dim 0');
      [...parts, ...swapped, y, z].forEach((t) => t.dispose());
    });
  });
}

suite('copy ops, one binding', {});
// 2 KB bindings: every tensor above spans several, so each op runs chunked.
suite('copy ops split across 2 KB bindings', { maxBindingBytes: 2048 });

describe('copy edge cases', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('f16 stores saturate instead of overflowing', async () => {
    const x = engine.tensor([70000, -1e9, 65504, 1], [4]);
    expect(Array.from(await cast(x, 'f16').toArray())).toEqual([65504, -65504, 65504, 1]);
  });

  it('makes unaligned views bindable', async () => {
    const x = engine.tensor([0, 1, 2, 3, 4, 5, 6, 7], [8]);
    const v = x.view([3], 1); // starts at byte 4: not bindable as is
    expect(() => cast(cast(v, 'f32'), 'f32')).not.toThrow();
    const c = contiguous(v);
    expect(c.byteOffset % engine.storageAlign).toBe(0);
    expect(Array.from(await c.toArray())).toEqual([1, 2, 3]);
  });

  it('broadcasts to a larger shape, exactly', async () => {
    const x = engine.tensor([1, 2, 3], [1, 3]);
    const y = broadcastTo(x, [2, 2, 3]);
    expect(Array.from(await y.toArray())).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
    expect(() => broadcastTo(x, [2, 4])).toThrow(/do not broadcast|cannot be broadcast/);
    [x, y].forEach((t) => t.dispose());
  });

  it('indexes exactly with extents past 2^16 (the kernels divide by multiplying, lib/divide.wgsl)', async () => {
    // Extents whose multipliers use every bit: 3 x 70001 x 5 elements (1.05 M), transposed twice.
    const shape = [3, 70001, 5];
    const data = hashed(3 * 70001 * 5, 11);
    const x = engine.tensor(data, shape);
    const t = permute(x, [2, 0, 1]);
    const want = new Float32Array(data.length);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 70001; j++) for (let k = 0; k < 5; k++) want[(k * 3 + i) * 70001 + j] = data[(i * 70001 + j) * 5 + k]!;
    await expectExact(t, want, 'permute [3, 70001, 5] -> [5, 3, 70001]');
    const back = permute(t, [1, 2, 0]);
    await expectExact(back, data, 'and back');
    [x, t, back].forEach((v) => v.dispose());
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

  it('names bad permutations and slices', () => {
    const table = engine.tensor(new Float32Array(12), [4, 3]);
    expect(() => permute(table, [0, 0])).toThrow(/not a permutation/);
    expect(() => slice(table, 1, 2, 5)).toThrow(/\[2, 5\) out of range for dimension 1 of \[4, 3\]/);
  });
});
