import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { argmax, layerNorm, rmsNorm, softmax } from '../src/ops/rows.js';
import { TOL, expectClose, loadGolden, randomArray, testEngine } from './helpers.js';

const golden = loadGolden('rows');
const LN_EPS = Number(golden.metadata.layernorm_eps);
const RMS_EPS = Number(golden.metadata.rmsnorm_eps);
const SCALE = Number(golden.metadata.softmax_scale);

// Both kernel variants run here: 'cpu' (one subgroup per row, no barriers) and 'gpu' (256-wide workgroups).
describe.each(['cpu', 'gpu'] as const)('row ops, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  describe.each(['f32', 'f16'] as const)('%s', (dt) => {
    describe.each(['odd', 'wide'])('%s rows', (tag) => {
      const want = (name: string) => golden.values(`${tag}.${name}.${dt}`);
      const up = (name: string) => golden.upload(engine, `${tag}.${name}.${dt}`);

      it('softmax (and scaled)', async () => {
        const x = up('x');
        const y = softmax(x);
        expectClose(await y.toArray(), want('softmax'), { rel: TOL[dt], label: 'softmax' });
        const ys = softmax(x, { scale: SCALE });
        expectClose(await ys.toArray(), want('softmax_scaled'), { rel: TOL[dt], label: 'scaled softmax' });
        [x, y, ys].forEach((t) => t.dispose());
      });

      it('layernorm with and without affine', async () => {
        const [x, w, b] = [up('x'), up('w'), up('b')];
        const y = layerNorm(x, w, b, LN_EPS);
        expectClose(await y.toArray(), want('layernorm'), { rel: TOL[dt], label: 'layernorm' });
        const plain = layerNorm(x, undefined, undefined, LN_EPS);
        expectClose(await plain.toArray(), want('layernorm_plain'), { rel: TOL[dt], label: 'layernorm plain' });
        [x, w, b, y, plain].forEach((t) => t.dispose());
      });

      it('rmsnorm', async () => {
        const [x, w] = [up('x'), up('w')];
        const y = rmsNorm(x, w, RMS_EPS);
        expectClose(await y.toArray(), want('rmsnorm'), { rel: TOL[dt], label: 'rmsnorm' });
        [x, w, y].forEach((t) => t.dispose());
      });

      it('argmax', async () => {
        const x = up('x');
        const idx = argmax(x);
        expect(idx.dtype).toBe('u32');
        expect(Array.from(await idx.toArray())).toEqual(Array.from(want('argmax')));
        [x, idx].forEach((t) => t.dispose());
      });
    });
  });

  it('argmax returns the first of tied maxima', async () => {
    const x = golden.upload(engine, 'ties.x.f32');
    const idx = argmax(x);
    expect(Array.from(await idx.toArray())).toEqual(Array.from(golden.values('ties.argmax.f32')));
    [x, idx].forEach((t) => t.dispose());
  });
});

describe('row op checks and limits', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 8192 });
  });

  it('names the weight shape that does not match the rows', async () => {
    const x = engine.tensor(new Float32Array(12), [3, 4]);
    const w = engine.tensor(new Float32Array(5), [5]);
    expect(() => rmsNorm(x, w)).toThrow(/weight \[5\] must be \[4\] to match input \[3, 4\]/);
    [x, w].forEach((t) => t.dispose());
  });

  it('splits rows across bindings when the tensor exceeds one', async () => {
    const rows = 41;
    const width = 193; // 41 x 193 x 4 = 31.6 KB over an 8 KB binding limit
    const data = randomArray(rows * width, 11);
    const x = engine.tensor(data, [rows, width]);
    const y = softmax(x);
    const want = new Float32Array(rows * width);
    for (let r = 0; r < rows; r++) {
      const row = data.subarray(r * width, (r + 1) * width);
      const m = Math.max(...row);
      const sum = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let i = 0; i < width; i++) want[r * width + i] = Math.exp(row[i]! - m) / sum;
    }
    expectClose(await y.toArray(), want, { rel: TOL.f32, label: 'chunked softmax' });
    [x, y].forEach((t) => t.dispose());
  });
});
