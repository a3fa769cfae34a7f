import os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { fusesChains, gemvChain, type GemvStage } from '../src/ops/gemv-chain.js';
import { KVCache } from '../src/ops/kv-cache.js';
import { RotaryEmbedding } from '../src/ops/rope.js';
import { onDemandWorkgroups } from '../src/ops/support/work-sharing.js';
import { matmul } from '../src/ops/matmul.js';
import { randomTensor } from '../bench/random.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('gemv_chain');
const eps = Number(golden.metadata.eps);

/** A decoding layer's chain, as src/model/llama.ts builds it. */
function layerChain(engine: Engine, tag: string, dt: string): { stages: GemvStage[]; inputs: Tensor[] } {
  const up = (name: string) => golden.upload(engine, `${tag}.${name}`);
  const [attn, x, postNorm, nextNorm] = ['attn', 'x', 'post_norm', 'next_norm'].map(up) as [Tensor, Tensor, Tensor, Tensor];
  const [o, gateUp, down, qkv] = ['o', 'gate_up', 'down', 'qkv'].map((w) => up(`${w}.${dt}`)) as [Tensor, Tensor, Tensor, Tensor];
  const stages: GemvStage[] = [
    { input: attn, weight: o, residual: x },
    { input: 0, weight: gateUp, preNorm: { weight: postNorm, eps }, gated: 'silu' },
    { input: 1, weight: down, residual: 0 },
    { input: 2, weight: qkv, preNorm: { weight: nextNorm, eps } },
  ];
  return { stages, inputs: [attn, x, postNorm, nextNorm, o, gateUp, down, qkv] };
}

// 'cpu' fuses a chain into one dispatch (on lavapipe); 'gpu' runs a matmul per stage.
describe.each(['cpu', 'gpu'] as const)('gemvChain, %s profile', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  describe.each(['odd', 'even'])('%s sizes', (tag) => {
    it.each(['f32', 'f16'])('%s weights: a decoding layer (o + residual, normed SwiGLU, down + residual, normed q|k|v) matches PyTorch', async (dt) => {
      const { stages, inputs } = layerChain(engine, tag, dt);
      const before = engine.recorder.counters.dispatches;
      const outputs = gemvChain(stages);
      const dispatches = engine.recorder.counters.dispatches - before;
      expect(dispatches).toBe(fusesChains(engine) ? 1 : 4);
      const tol = dt === 'f16' ? TOL.f16 : TOL.f32;
      for (const [i, name] of ['x1', 'h', 'x2', 'qkv_out'].entries()) {
        const want = golden.values(`${tag}.${name}.${dt}`);
        expect(outputs[i]!.shape).toEqual([1, want.length]);
        expectClose(await outputs[i]!.toArray(), want, { rel: tol, label: `${tag} ${dt} ${name}` });
      }
      [...inputs, ...outputs].forEach((t) => t.dispose());
    });
  });

  it('a chain fed its own output 40 times in one submission matches the same products one matmul at a time', async () => {
    // Each dispatch starts where the last left the shared counters: a chunk count left unreset
    // would skip rows here, and the stale rows would compound over the iterations.
    const [d, ff] = [45, 93];
    const w1 = randomTensor(engine, [2 * ff, d], 1, { scale: 0.3, dtype: 'f16' });
    const w2 = randomTensor(engine, [d, ff], 2, { scale: 0.3, dtype: 'f16' });
    const norm = randomTensor(engine, [d], 3, { scale: 1 });
    let chained = randomTensor(engine, [1, d], 4);
    let stepwise = chained;
    engine.scope(() => {
      for (let i = 0; i < 40; i++) {
        const x = chained;
        chained = engine.keep(gemvChain([{ input: x, weight: w1, preNorm: { weight: norm, eps }, gated: 'silu' }, { input: 0, weight: w2, residual: x }])[1]!);
        const h = matmul(stepwise, w1, { transposeB: true, preNorm: { weight: norm, eps }, gated: 'silu', dtype: 'f32' });
        stepwise = engine.keep(matmul(h, w2, { transposeB: true, residual: stepwise, dtype: 'f32' }));
      }
    });
    const want = await stepwise.toArray();
    expect(want.every(Number.isFinite)).toBe(true);
    expect(Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(0.1);
    expectClose(await chained.toArray(), want, { rel: TOL.f32, label: '40 chained layers' });
  });

  it('names the stage and the sizes of a bad chain', () => {
    const w = randomTensor(engine, [6, 5], 1);
    const x = randomTensor(engine, [1, 5], 2);
    const y = randomTensor(engine, [1, 6], 3);
    expect(() => gemvChain([])).toThrow(/gemvChain: no stages/);
    expect(() => gemvChain([{ input: y, weight: w }])).toThrow(/stage 0: input has 6 elements, the weight \[6, 5\] takes 5/);
    expect(() => gemvChain([{ input: x, weight: w }, { input: 0, weight: w }])).toThrow(/stage 1: input has 6 elements, the weight \[6, 5\] takes 5/);
    expect(() => gemvChain([{ input: 1, weight: w }])).toThrow(/stage 0: input refers to stage 1; only earlier stages/);
    expect(() => gemvChain([{ input: x, weight: w, residual: x }])).toThrow(/stage 0: residual has 5 elements, the stage makes 6/);
    expect(() => gemvChain([{ input: x, weight: randomTensor(engine, [7, 5], 4), gated: 'silu' }])).toThrow(/stage 0: gated weight \[7, 5\] needs an even number of rows/);
    expect(() => gemvChain([{ input: x, weight: w, preNorm: { weight: y, eps } }])).toThrow(/stage 0: preNorm weight \[1, 6\] must have 5 elements/);
    expect(() => gemvChain([{ input: x, weight: randomTensor(engine, [6], 5) }])).toThrow(/stage 0: weight \[6\] must be \[N, K\]/);
  });

  it('more stages than one dispatch takes run as separate products, with the same results', async () => {
    const { stages, inputs } = layerChain(engine, 'odd', 'f32');
    // Six stages: the four of a layer, then the MLP again on the layer's output.
    const outputs = gemvChain([...stages, { ...stages[1]!, input: 2 }, { ...stages[2]!, input: 4, residual: 2 }]);
    expect(outputs).toHaveLength(6);
    const again = gemvChain([{ ...stages[1]!, input: outputs[2]! }, { ...stages[2]!, input: 0, residual: outputs[2]! }]);
    expectClose(await outputs[5]!.toArray(), await again[1]!.toArray(), { rel: TOL.f32, label: 'stages 5 and 6' });
    expectClose(await outputs[3]!.toArray(), golden.values('odd.qkv_out.f32'), { rel: TOL.f32, label: 'qkv of a 6-stage chain' });
    [...inputs, ...outputs, ...again].forEach((t) => t.dispose());
  });
});

describe.each(['cpu', 'gpu'] as const)('gemvChain with a decoding attention first, %s profile', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  // 4 query heads on 2 kv heads of 40 dims (not a multiple of 32: a partial block of columns),
  // after 37 cached positions; three steps, against the cache's own appendAndAttend and a chain.
  it.each([
    ['f32', true],
    ['f16', true],
    ['f16', false],
  ] as const)('%s cache (rotary %s): outputs and appended rows match attention then chain, step after step', async (dtype, rotates) => {
    const [heads, kvHeads, D, d, ff] = [4, 2, 40, 48, 56];
    const rotary = rotates ? new RotaryEmbedding(engine, D) : undefined;
    const caches = [0, 1].map(() => new KVCache(engine, { heads: kvHeads, headDim: D, maxLength: 64, dtype, rotary }));
    const prompt = randomTensor(engine, [37, kvHeads, D], 1);
    for (const c of caches) c.append(prompt, prompt, { layout: 'blhd' });
    const o = randomTensor(engine, [d, heads * D], 2, { scale: 0.2, dtype: 'f16' });
    const gateUp = randomTensor(engine, [2 * ff, d], 3, { scale: 0.2, dtype: 'f16' });
    const down = randomTensor(engine, [d, ff], 4, { scale: 0.2, dtype: 'f16' });
    const norm = randomTensor(engine, [d], 5, { scale: 1 });
    const x = randomTensor(engine, [1, d], 6);
    const stages = (input: Tensor | 'attention'): GemvStage[] => [
      { input, weight: o, residual: x },
      { input: 0, weight: gateUp, preNorm: { weight: norm, eps }, gated: 'silu' },
      { input: 1, weight: down, residual: 0 },
    ];
    for (let step = 0; step < 3; step++) {
      const qkv = randomTensor(engine, [1, (heads + 2 * kvHeads) * D], 10 + step);
      const before = engine.recorder.counters.dispatches;
      const fused = gemvChain(stages('attention'), { attention: { cache: caches[0]!, qkv, heads } });
      if (fusesChains(engine)) expect(engine.recorder.counters.dispatches - before).toBe(1);
      const view = (offset: number, h: number) => qkv.view([1, h, D], offset);
      const attended = caches[1]!.appendAndAttend(view(0, heads), view(heads * D, kvHeads), view((heads + kvHeads) * D, kvHeads), { causal: true, layout: 'blhd' });
      const reference = gemvChain(stages(attended.reshape([1, heads * D])));
      expect(caches[0]!.length).toBe(38 + step);
      for (const [i, out] of fused.entries()) {
        const want = await reference[i]!.toArray();
        expect(Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(0.01);
        expectClose(await out.toArray(), want, { rel: TOL.f32, label: `step ${step} stage ${i}` });
      }
      for (const which of ['keys', 'values'] as const) {
        const [got, want] = await Promise.all(caches.map((c) => c[which].toArray()));
        expectClose(got!, want!, { rel: TOL.f32, label: `step ${step} cache ${which}` });
      }
    }
  });

  it('names a bad attention', () => {
    const cache = new KVCache(engine, { heads: 2, headDim: 8, maxLength: 4 });
    const w = randomTensor(engine, [6, 32], 1);
    const qkv = randomTensor(engine, [1, 64], 2);
    expect(() => gemvChain([{ input: 'attention', weight: w }])).toThrow(/stage 0: input is 'attention', and the chain has no attention/);
    expect(() => gemvChain([{ input: 'attention', weight: w }], { attention: { cache, qkv: randomTensor(engine, [1, 60], 3), heads: 4 } })).toThrow(
      /attention: qkv \[1, 60\] must hold \(4 \+ 2 x 2\) heads of 8: 64 elements/,
    );
    expect(() => gemvChain([{ input: 'attention', weight: w }], { attention: { cache, qkv, heads: 3 } })).toThrow(/3 query heads must be a positive multiple of the cache's 2 heads/);
    expect(cache.length).toBe(0);
  });
});

describe('onDemandWorkgroups', () => {
  it("as many as lavapipe runs at once, never more than the cores; one where nothing runs at once", async () => {
    const engine = await testEngine();
    const { workerThreads } = engine.gpu.summary;
    expect(onDemandWorkgroups(engine)).toBe(Math.max(1, Math.min(workerThreads, os.availableParallelism())));
    const withThreads = (threads: number) => ({ gpu: { summary: { ...engine.gpu.summary, workerThreads: threads } } }) as unknown as Engine;
    expect(onDemandWorkgroups(withThreads(0))).toBe(1); // lavapipe without a pool, or another adapter
    expect(onDemandWorkgroups(withThreads(1))).toBe(1);
    expect(onDemandWorkgroups(withThreads(64))).toBe(os.availableParallelism());
  });
});
