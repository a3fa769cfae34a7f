import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import * as ops from '../src/ops/elementwise.js';
import { TOL, expectClose, loadGolden, randomArray, testEngine } from './helpers.js';

const golden = loadGolden('elementwise');
const SCALE = Number(golden.metadata.scale);
const RSQRT_SHIFT = Number(golden.metadata.rsqrt_shift);

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});

const unary = {
  relu: ops.relu,
  gelu: ops.gelu,
  gelu_tanh: ops.geluTanh,
  quick_gelu: ops.quickGelu,
  silu: ops.silu,
  sigmoid: ops.sigmoid,
  scale: (x: Parameters<typeof ops.relu>[0]) => ops.scale(x, SCALE),
  rsqrt: (x: Parameters<typeof ops.relu>[0]) => ops.rsqrt(x, RSQRT_SHIFT),
};
const binary = { add: ops.add, sub: ops.sub, mul: ops.mul, div: ops.div };

describe.each(['f32', 'f16'] as const)('elementwise %s (odd shape 37x61)', (dt) => {
  it.each(Object.keys(unary))('%s', async (name) => {
    const x = golden.upload(engine, `x.${dt}`);
    const y = unary[name as keyof typeof unary](x);
    expect(y.dtype).toBe(dt);
    expect(y.shape).toEqual(x.shape);
    expectClose(await y.toArray(), golden.values(`${name}.${dt}`), { rel: TOL[dt], label: `${name} ${dt}` });
    x.dispose();
    y.dispose();
  });

  const cases = Number(golden.metadata.cases);
  for (let c = 0; c < cases; c++) {
    it.each(Object.keys(binary))(`%s with broadcast case ${c}`, async (name) => {
      const a = golden.upload(engine, `case${c}.a.${dt}`);
      const b = golden.upload(engine, `case${c}.b.${dt}`);
      const y = binary[name as keyof typeof binary](a, b);
      expect(y.shape).toEqual(golden.shape(`case${c}.${name}.${dt}`));
      expectClose(await y.toArray(), golden.values(`case${c}.${name}.${dt}`), { rel: TOL[dt], label: `${name} case ${c} ${dt}` });
      [a, b, y].forEach((t) => t.dispose());
    });
  }
});

describe('elementwise edge cases', () => {
  it('rejects shapes that do not broadcast, naming both', () => {
    const a = engine.tensor(new Float32Array(6), [2, 3]);
    const b = engine.tensor(new Float32Array(4), [4]);
    expect(() => ops.add(a, b)).toThrow(/\[2, 3\] and \[4\] do not broadcast/);
    [a, b].forEach((t) => t.dispose());
  });

  it('rejects integer inputs, naming the dtype', () => {
    const a = engine.tensor(new Int32Array(4), [4]);
    expect(() => ops.relu(a)).toThrow(/dtype i32; expected f32 or f16/);
    a.dispose();
  });

  it('mixed f32 and f16 inputs give f32, fused activation applies after the op', async () => {
    const a = engine.tensor([1, -2, 3], [3]);
    const b = engine.tensor([0.5, 0.5, -4], [3], 'f16');
    const y = ops.add(a, b, { act: 'relu' });
    expect(y.dtype).toBe('f32');
    expect(Array.from(await y.toArray())).toEqual([1.5, 0, 0]);
    [a, b, y].forEach((t) => t.dispose());
  });
});

describe('elementwise beyond one binding', () => {
  it('splits tensors larger than the binding limit across dispatches', async () => {
    const small = await testEngine({ maxBindingBytes: 4096 });
    const n = 3001; // 12 KB of f32: three-plus bindings, odd length
    const av = randomArray(n, 3);
    const bv = randomArray(n, 4);
    const a = small.tensor(av, [n]);
    const b = small.tensor(bv, [n]);
    const before = small.recorder.counters.dispatches;
    const y = ops.mul(a, b);
    expect(small.recorder.counters.dispatches - before).toBeGreaterThan(2);
    expectClose(await y.toArray(), av.map((v, i) => v * bv[i]!), { rel: TOL.f32, label: 'chunked mul' });

    const m = small.tensor(randomArray(31 * 97, 5), [31, 97]);
    const row = small.tensor(randomArray(97, 6), [97]);
    const z = ops.add(m, row);
    const mv = await m.toArray();
    const rv = await row.toArray();
    expectClose(await z.toArray(), mv.map((v, i) => v + rv[i % 97]!), { rel: TOL.f32, label: 'chunked broadcast add' });
  });
});

describe.each(['f32', 'f16'] as const)('gated activations %s ([5, 2, 86] -> [5, 2, 43])', (dt) => {
  it.each([['swiglu', 'silu'], ['geglu', 'gelu']] as const)('%s', async (name, act) => {
    const x = golden.upload(engine, `gated.x.${dt}`);
    const y = ops.gated(x, act);
    expect(y.shape).toEqual([5, 2, 43]);
    expectClose(await y.toArray(), golden.values(`${name}.${dt}`), { rel: TOL[dt], label: `${name} ${dt}` });
    [x, y].forEach((t) => t.dispose());
  });
});

describe('elementwise memory', () => {
  it('a broadcasting op returns every buffer once its tensors are disposed', async () => {
    const engine = await testEngine();
    const before = engine.memory().liveBuffers;
    const a = engine.tensor(randomArray(6 * 5, 7), [6, 5]);
    const b = engine.tensor(randomArray(6, 8), [6, 1]);
    const y = ops.mul(a, b);
    [a, b, y].forEach((t) => t.dispose());
    expect(engine.memory().liveBuffers).toBe(before);
  });
});

describe('thresholdBits (masks as bits)', () => {
  /** Bit e of plane k, and the element it should hold, row- or column-major. */
  async function check(x: Float32Array, planes: number, h: number, w: number, columnMajor: boolean, t: import('../src/engine/tensor.js').Tensor): Promise<void> {
    const words = Math.ceil((h * w) / 32);
    const bits = ops.thresholdBits(t, { threshold: 0.25, columnMajor });
    expect(bits.shape).toEqual([planes, words]);
    const got = (await bits.read()) as Uint32Array;
    bits.dispose();
    let bad = 0;
    let set = 0;
    for (let k = 0; k < planes; k++) for (let e = 0; e < h * w; e++) {
      const [r, c] = columnMajor ? [e % h, Math.floor(e / h)] : [Math.floor(e / w), e % w];
      const bit = (got[k * words + (e >> 5)]! >>> (e & 31)) & 1;
      set += bit;
      if (bit !== (x[k * h * w + r * w + c]! > 0.25 ? 1 : 0)) bad++;
    }
    expect(bad).toBe(0);
    expect(set).toBeGreaterThan(0);
    // Bits past a plane's end are zero.
    const tail = (h * w) % 32;
    if (tail) for (let k = 0; k < planes; k++) expect(got[(k + 1) * words - 1]! >>> tail).toBe(0);
  }

  it.each([false, true])('planes of 5 x 7, f32 and f16 (columnMajor %s)', async (columnMajor) => {
    const x = randomArray(3 * 35, 9);
    await check(x, 3, 5, 7, columnMajor, engine.tensor(x, [3, 5, 7]));
    const half = await engine.tensor(x, [3, 5, 7], 'f16').toArray();
    await check(Float32Array.from(half), 3, 5, 7, columnMajor, engine.tensor(x, [3, 5, 7], 'f16'));
  });

  it('splits planes across bindings', async () => {
    const small = await testEngine({ maxBindingBytes: 4096 });
    const x = randomArray(40 * 9 * 11, 10); // 40 planes of 396 bytes
    await check(x, 40, 9, 11, true, small.tensor(x, [40, 9, 11]));
  });
});
