import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { linear, matmul, type MatmulKernel } from '../src/ops/matmul.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('matmul');
const tol = (a: string, b: string) => (a === 'f16' || b === 'f16' ? TOL.f16 : TOL.f32);

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});

// Every kernel variant is checked on this adapter, whichever one the engine would pick.
describe.each(['subgroup', 'tiled'] as MatmulKernel[])('matmul, %s kernel', (kernel) => {
  describe.each([
    ['f32', 'f32'],
    ['f32', 'f16'],
    ['f16', 'f16'],
  ])('a %s, b %s (67x129x95)', (adt, bdt) => {
    it('a @ b', async () => {
      const a = golden.upload(engine, `a.${adt}`);
      const b = golden.upload(engine, `b.${bdt}`);
      const c = matmul(a, b, { kernel });
      expect(c.shape).toEqual([67, 95]);
      expectClose(await c.toArray(), golden.values(`ab.${adt}.${bdt}`), { rel: tol(adt, bdt), label: 'a@b' });
      [a, b, c].forEach((t) => t.dispose());
    });

    it('linear: a @ wᵀ, and with bias + gelu fused', async () => {
      const a = golden.upload(engine, `a.${adt}`);
      const w = golden.upload(engine, `w.${bdt}`);
      const bias = golden.upload(engine, `bias.${bdt}`);
      const c = matmul(a, w, { transposeB: true, kernel });
      expectClose(await c.toArray(), golden.values(`linear.${adt}.${bdt}`), { rel: tol(adt, bdt), label: 'a@wT' });
      const d = matmul(a, w, { transposeB: true, bias, act: 'gelu', kernel });
      expectClose(await d.toArray(), golden.values(`linear_bias_gelu.${adt}.${bdt}`), { rel: tol(adt, bdt), label: 'gelu(a@wT+b)' });
      const residual = golden.upload(engine, `residual.${adt}`);
      const r = matmul(a, w, { transposeB: true, bias, act: 'gelu', residual, kernel });
      expectClose(await r.toArray(), golden.values(`linear_bias_gelu_residual.${adt}.${bdt}`), { rel: tol(adt, bdt), label: 'r+gelu(a@wT+b)' });
      [a, w, bias, c, d, residual, r].forEach((t) => t.dispose());
    });
  });

  it.each(['f32', 'f16'])('even K with %s weights (paired f16 loads), bias + silu', async (dt) => {
    const a = golden.upload(engine, 'even.a.f32');
    const w = golden.upload(engine, `even.w.${dt}`);
    const bias = golden.upload(engine, `even.bias.${dt}`);
    const c = matmul(a, w, { transposeB: true, bias, act: 'silu', kernel });
    expectClose(await c.toArray(), golden.values(`even.linear_bias_silu.f32.${dt}`), { rel: tol('f32', dt), label: 'even K' });
    [a, w, bias, c].forEach((t) => t.dispose());
  });

  it.each(['f32', 'f16'] as const)('batched %s with K a multiple of 4 and b transposed (both read as quads): [2,19,36] @ [2,23,36]ᵀ', async (dt) => {
    const a = golden.upload(engine, `quads.a.${dt}`);
    const w = golden.upload(engine, `quads.w.${dt}`);
    const c = matmul(a, w, { transposeB: true, kernel });
    expect(c.shape).toEqual([2, 19, 23]);
    expectClose(await c.toArray(), golden.values(`quads.awT.${dt}`), { rel: TOL[dt], label: 'quads' });
    [a, w, c].forEach((t) => t.dispose());
  });

  it.each(['f32', 'f16'] as const)('batched %s: [2,3,17,33] @ [2,3,33,29], transposed b, and a shared a', async (dt) => {
    const a = golden.upload(engine, `batched.a.${dt}`);
    const b = golden.upload(engine, `batched.b.${dt}`);
    const bT = golden.upload(engine, `batched.bT.${dt}`);
    const shared = golden.upload(engine, `batched.shared.${dt}`);
    const c = matmul(a, b, { kernel });
    expect(c.shape).toEqual([2, 3, 17, 29]);
    expectClose(await c.toArray(), golden.values(`batched.ab.${dt}`), { rel: TOL[dt], label: 'batched' });
    const cT = matmul(a, bT, { transposeB: true, kernel });
    expectClose(await cT.toArray(), golden.values(`batched.ab.${dt}`), { rel: TOL[dt], label: 'batched transposed' });
    const s = matmul(shared, b, { kernel });
    expect(s.shape).toEqual([2, 3, 17, 29]);
    expectClose(await s.toArray(), golden.values(`batched.shared_b.${dt}`), { rel: TOL[dt], label: 'shared a' });
    [a, b, bT, shared, c, cT, s].forEach((t) => t.dispose());
  });
});

describe.each(['gemv_rows', 'gemv_split'] as MatmulKernel[])('GEMV, %s kernel', (kernel) => {
  describe.each(['odd', 'even'])('%s K', (tag) => {
    it.each(['f32', 'f16'])('%s weights, bias + silu', async (dt) => {
      const x = golden.upload(engine, `gemv.${tag}.x.f32`);
      const w = golden.upload(engine, `gemv.${tag}.w.${dt}`);
      const bias = golden.upload(engine, `gemv.${tag}.bias.${dt}`);
      const y = matmul(x, w, { transposeB: true, bias, act: 'silu', kernel });
      expectClose(await y.toArray(), golden.values(`gemv.${tag}.y.${dt}`), { rel: tol('f32', dt), label: 'gemv' });
      const residual = golden.upload(engine, `gemv.${tag}.residual.f32`);
      const r = matmul(x, w, { transposeB: true, residual, kernel });
      expectClose(await r.toArray(), golden.values(`gemv.${tag}.y_residual.${dt}`), { rel: tol('f32', dt), label: 'gemv + residual' });
      [x, w, bias, y, residual, r].forEach((t) => t.dispose());
    });
  });
});

describe('matmul beyond one binding', () => {
  it('splits weights along N and activations along M', async () => {
    const small = await testEngine({ maxBindingBytes: 4096 });
    for (const bdt of ['f32', 'f16'] as const) {
      const a = golden.upload(small, 'a.f32'); // 67 x 129 x 4 = 34 KB
      const w = golden.upload(small, `w.${bdt}`); // 95 x 129: several bindings
      const bias = golden.upload(small, `bias.${bdt}`);
      const before = small.recorder.counters.dispatches;
      const d = linear(a, w, bias, 'gelu');
      expect(small.recorder.counters.dispatches - before).toBeGreaterThan(4);
      expectClose(await d.toArray(), golden.values(`linear_bias_gelu.f32.${bdt}`), { rel: tol('f32', bdt), label: `chunked linear ${bdt}` });
      const x = golden.upload(small, 'gemv.even.x.f32');
      const gw = golden.upload(small, `gemv.even.w.${bdt}`); // 300 x 256 weights: 150-300 KB
      const gb = golden.upload(small, `gemv.even.bias.${bdt}`);
      const y = linear(x, gw, gb, 'silu');
      expectClose(await y.toArray(), golden.values(`gemv.even.y.${bdt}`), { rel: tol('f32', bdt), label: `chunked gemv ${bdt}` });
      const res = golden.upload(small, 'gemv.even.residual.f32');
      const yr = matmul(x, gw, { transposeB: true, residual: res });
      expectClose(await yr.toArray(), golden.values(`gemv.even.y_residual.${bdt}`), { rel: tol('f32', bdt), label: `chunked gemv + residual ${bdt}` });
      [a, w, bias, d, x, gw, gb, y].forEach((t) => t.dispose());
    }
  });
});

describe('matmul checks', () => {
  it('names both shapes when inner dimensions differ', () => {
    const a = engine.tensor(new Float32Array(6), [2, 3]);
    const b = engine.tensor(new Float32Array(8), [4, 2]);
    expect(() => matmul(a, b)).toThrow(/\[2, 3\] x \[4, 2\]: inner dimensions differ \(3 vs 4\)/);
    expect(() => linear(a, b)).toThrow(/inner dimensions differ \(3 vs 2\)/);
    [a, b].forEach((t) => t.dispose());
  });

  it('names a residual that does not match the output', () => {
    const a = engine.tensor(new Float32Array(6), [2, 3]);
    const w = engine.tensor(new Float32Array(12), [4, 3]);
    const r = engine.tensor(new Float32Array(6), [2, 3]);
    expect(() => matmul(a, w, { transposeB: true, residual: r })).toThrow(/residual \[2, 3\] must match the output \[2, 4\]/);
    [a, w, r].forEach((t) => t.dispose());
  });

  it('names the bias shape that does not match N', () => {
    const a = engine.tensor(new Float32Array(6), [2, 3]);
    const w = engine.tensor(new Float32Array(12), [4, 3]);
    const bias = engine.tensor(new Float32Array(3), [3]);
    expect(() => linear(a, w, bias)).toThrow(/bias \[3\] must be \[4\]/);
    [a, w, bias].forEach((t) => t.dispose());
  });
});

describe('fused RMSNorm in front and SwiGLU after a projection', () => {
  const eps = Number(golden.metadata.fused_eps);
  // GEMV kernels fuse them into one dispatch; 5-row inputs take the composed path.
  describe.each([
    ['gemv_rows', 1],
    ['gemv_split', 1],
    [undefined, 5],
  ] as const)('kernel %s, %i row(s)', (kernel, rows) => {
    describe.each(['even', 'odd'])('%s K', (tag) => {
      it.each(['f32', 'f16'] as const)('%s weights', async (dt) => {
        const all = golden.upload(engine, `fused.${tag}.x.f32`);
        const x = all.rows(0, rows);
        const norm = golden.upload(engine, `fused.${tag}.norm.f32`);
        const w = golden.upload(engine, `fused.${tag}.w.${dt}`);
        const bias = golden.upload(engine, `fused.${tag}.bias.${dt}`);
        const allRes = golden.upload(engine, `fused.${tag}.residual.f32`);
        const residual = allRes.rows(0, rows);
        const width = (n: string) => golden.shape(n)[1]!;
        const want = (n: string) => golden.values(n).subarray(0, rows * width(n));
        const before = engine.recorder.counters.dispatches;
        const y = matmul(x, w, { transposeB: true, bias, preNorm: { weight: norm, eps }, kernel });
        if (kernel) expect(engine.recorder.counters.dispatches - before).toBe(1);
        expectClose(await y.toArray(), want(`fused.${tag}.prenorm.${dt}`), { rel: tol('f32', dt), label: 'rmsnorm -> linear' });
        const z = matmul(x, w, { transposeB: true, bias, preNorm: { weight: norm, eps }, gated: 'silu', residual, kernel });
        expect(z.shape).toEqual([rows, 37]);
        expectClose(await z.toArray(), want(`fused.${tag}.prenorm_gated_residual.${dt}`), { rel: tol('f32', dt), label: 'rmsnorm -> swiglu + residual' });
        const u = matmul(x, w, { transposeB: true, gated: 'gelu', kernel });
        expectClose(await u.toArray(), want(`fused.${tag}.gated.${dt}`), { rel: tol('f32', dt), label: 'geglu' });
        [all, x, norm, w, bias, allRes, residual, y, z, u].forEach((t) => t.dispose());
      });
    });
  });

  it('names a gated weight with an odd row count, and act together with gated', () => {
    const x = engine.tensor(new Float32Array(4), [1, 4]);
    const w = engine.tensor(new Float32Array(12), [3, 4]);
    expect(() => matmul(x, w, { transposeB: true, gated: 'silu' })).toThrow(/gated needs an even number of weight rows/);
    const w2 = engine.tensor(new Float32Array(16), [4, 4]);
    expect(() => matmul(x, w2, { transposeB: true, gated: 'silu', act: 'relu' })).toThrow(/gated and act cannot both be set/);
    [x, w, w2].forEach((t) => t.dispose());
  });
});
