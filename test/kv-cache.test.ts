import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { attention } from '../src/ops/attention.js';
import { KVCache } from '../src/ops/kv-cache.js';
import { RotaryEmbedding, rope } from '../src/ops/rope.js';
import { TOL, concatArrays, expectClose, loadGolden, testEngine } from './helpers.js';
import { hashed, pickRows, toHeadMajor, toTokenMajor } from './hash-inputs.js';

const golden = loadGolden('kv_cache');
const CACHE = JSON.parse(golden.metadata.cache!) as {
  H: number;
  Hkv: number;
  D: number;
  T: number;
  theta: number;
  seeds: { k: number; v: number; q: number; q_prompt: number };
  prompt_rows: number[];
};

/** Row `row` of every head of a cache [H, maxLength, D] read back. */
function cacheRow(data: Float32Array | Int32Array | Uint32Array, H: number, maxLength: number, D: number, row: number): Float32Array {
  const out = new Float32Array(H * D);
  for (let h = 0; h < H; h++) out.set(data.subarray((h * maxLength + row) * D, (h * maxLength + row + 1) * D), h * D);
  return out;
}

/** Rows [r0, r1) of every head of a [1, H, L, D] host array. */
function rowsOf(data: Float32Array, H: number, L: number, D: number, r0: number, r1: number): Float32Array {
  const out = new Float32Array(H * (r1 - r0) * D);
  for (let h = 0; h < H; h++) out.set(data.subarray((h * L + r0) * D, (h * L + r1) * D), h * (r1 - r0) * D);
  return out;
}

describe('KV cache: append with rotary keys, attend', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  const { H, Hkv, D, T, theta, seeds } = CACHE;
  const kAll = hashed([1, Hkv, T + 1, D], seeds.k);
  const vAll = hashed([1, Hkv, T + 1, D], seeds.v);

  describe.each([
    ['f32', 'bhld'],
    ['f16', 'bhld'],
    ['f16', 'blhd'],
  ] as const)('%s cache, %s inputs', (dtype, layout) => {
    it('a 513-token prompt, then one decoding step, match a naive Hugging Face-style reference', async () => {
      const tol = TOL[dtype];
      const rotary = new RotaryEmbedding(engine, D, { theta });
      const cache = new KVCache(engine, { heads: Hkv, headDim: D, maxLength: 600, dtype, rotary });
      const put = (data: Float32Array, heads: number, L: number) =>
        layout === 'bhld' ? engine.tensor(data, [heads, L, D]) : engine.tensor(toTokenMajor(data, [1, heads, L, D]), [L, heads, D]);

      // Prompt: keys and values of 513 tokens appended at once, queries rotated at positions 0..512.
      const k = put(rowsOf(kAll, Hkv, T + 1, D, 0, T), Hkv, T);
      const v = put(rowsOf(vAll, Hkv, T + 1, D, 0, T), Hkv, T);
      cache.append(k, v, { layout });
      expect(cache.length).toBe(T);
      const qp = put(hashed([1, H, T, D], seeds.q_prompt, 2), H, T);
      const qpRot = rope(qp, rotary, { positions: 0, layout });
      const prompt = cache.attend(qpRot, { causal: true, layout });
      let promptOut = await prompt.toArray();
      if (layout === 'blhd') promptOut = toHeadMajor(promptOut, [1, T, H, D]);
      expectClose(pickRows(promptOut, [1, H, T, D], CACHE.prompt_rows), golden.values('cache_prompt.out'), { rel: tol, label: 'prompt' });

      // One decoding step at position 513.
      const k1 = put(rowsOf(kAll, Hkv, T + 1, D, T, T + 1), Hkv, 1);
      const v1 = put(rowsOf(vAll, Hkv, T + 1, D, T, T + 1), Hkv, 1);
      cache.append(k1, v1, { layout });
      expect(cache.length).toBe(T + 1);
      const q1 = put(hashed([1, H, 1, D], seeds.q, 2), H, 1);
      const q1Rot = rope(q1, rotary, { positions: T, layout });
      const step = cache.attend(q1Rot, { causal: true, layout });
      expectClose(await step.toArray(), golden.values('cache_step.out'), { rel: tol, label: 'decoding step' });

      // The same step fused: q|k|v of the new token as one projection's views, one dispatch.
      const fused = new KVCache(engine, { heads: Hkv, headDim: D, maxLength: 600, dtype, rotary });
      fused.append(k, v, { layout });
      const qkv = engine.tensor(concatArrays([hashed([1, H, 1, D], seeds.q, 2), rowsOf(kAll, Hkv, T + 1, D, T, T + 1), rowsOf(vAll, Hkv, T + 1, D, T, T + 1)]), [1, (H + 2 * Hkv) * D]);
      const dispatches = engine.recorder.counters.dispatches;
      const fusedStep = fused.appendAndAttend(qkv.view([1, H, D]), qkv.view([1, Hkv, D], H * D), qkv.view([1, Hkv, D], (H + Hkv) * D), { causal: true, layout: 'blhd' });
      expect(engine.recorder.counters.dispatches - dispatches).toBe(1);
      expect(fused.length).toBe(T + 1);
      expectClose(await fusedStep.toArray(), golden.values('cache_step.out'), { rel: tol, label: 'fused decoding step' });
      // ... and leaves the cache as rope + append would (row T of every kv head).
      expectClose(cacheRow(await fused.keys.toArray(), Hkv, 600, D, T), cacheRow(await cache.keys.toArray(), Hkv, 600, D, T), { rel: tol, label: 'fused key row' });
      expectClose(cacheRow(await fused.values.toArray(), Hkv, 600, D, T), cacheRow(await cache.values.toArray(), Hkv, 600, D, T), { rel: tol, label: 'fused value row' });

      [k, v, qp, qpRot, prompt, k1, v1, q1, q1Rot, step, qkv, fusedStep].forEach((t) => t.dispose());
      cache.dispose();
      fused.dispose();
      rotary.dispose();
    });
  });

  describe.each(['decode_subgroup', 'decode_tiled'] as const)('a fused decoding step (%s)', (kernel) => {
    // Cached lengths where the fresh key starts a chunk of its own (64 and 128 with 64-key chunks)
    // or shares one; with and without rotation, grouped-query and plain heads; head dims that are
    // and are not multiples of 8 (the subgroup kernel's blocks) or of 32 (its column groups).
    it.each([
      [37, 1, 4, 2, true, 32],
      [64, 2, 4, 4, true, 32],
      [128, 3, 6, 2, false, 32],
      [200, 4, 4, 1, true, 32],
      [45, 1, 3, 3, true, 20],
      [90, 2, 2, 1, false, 44],
    ] as const)('%i cached keys, %i split(s), %i query heads on %i kv heads, rotary %s, head dim %i: as rope + append + attend', async (cached, splits, H, Hkv, rotate, D) => {
      const rotary = rotate ? new RotaryEmbedding(engine, D) : undefined;
      const make = () => new KVCache(engine, { heads: Hkv, headDim: D, maxLength: 256, dtype: 'f16', rotary });
      const [fused, plain] = [make(), make()];
      // Rows past the prompt hold NaN, as a reused buffer might: the fresh row must never be read.
      engine.write(fused.keys, new Uint16Array(fused.keys.size).fill(0x7e00));
      engine.write(fused.values, new Uint16Array(fused.values.size).fill(0x7e00));
      const prompt = engine.tensor(hashed([cached, Hkv, D], 31), [cached, Hkv, D]);
      for (const c of [fused, plain]) c.append(prompt, prompt, { layout: 'blhd' });
      const qkv = engine.tensor(hashed([1, (H + 2 * Hkv) * D], 32, 2), [1, (H + 2 * Hkv) * D]);
      const [q, k, v] = [qkv.view([1, H, D]), qkv.view([1, Hkv, D], H * D), qkv.view([1, Hkv, D], (H + Hkv) * D)];
      const keys = fused.keys.reshape([1, Hkv, 256, D]);
      const values = fused.values.reshape([1, Hkv, 256, D]);
      const table = rotary ? { table: rotary.tableFor(cached), row: cached } : undefined;
      const got = attention(q, keys, values, { layout: 'blhd', kvLayout: 'bhld', causal: true, kvLength: cached + 1, kernel, splits, fresh: { k, v, rotary: table } });
      const q2 = rotary ? rope(q, rotary, { positions: cached, layout: 'blhd' }) : q;
      plain.append(k, v, { layout: 'blhd' });
      const want = plain.attend(q2, { causal: true, layout: 'blhd' });
      const out = await got.toArray();
      expect(out.some((x) => x !== 0) && out.every(Number.isFinite)).toBe(true);
      expectClose(out, await want.toArray(), { rel: TOL.f16, label: 'output' });
      expectClose(cacheRow(await fused.keys.toArray(), Hkv, 256, D, cached), cacheRow(await plain.keys.toArray(), Hkv, 256, D, cached), { rel: TOL.f16, label: 'key row' });
      expectClose(cacheRow(await fused.values.toArray(), Hkv, 256, D, cached), cacheRow(await plain.values.toArray(), Hkv, 256, D, cached), { rel: TOL.f16, label: 'value row' });
      [prompt, qkv, q, k, v, keys, values, got, want].forEach((t) => t.dispose());
      if (q2 !== q) q2.dispose();
      [fused, plain].forEach((c) => c.dispose());
      rotary?.dispose();
    });
  });

  it('fuses only what it can: prompts and separate tensors take rope + append + attend; bad fresh rows are named', () => {
    const cache = new KVCache(engine, { heads: 2, headDim: 8, maxLength: 8, dtype: 'f32' });
    const apart = [engine.empty([1, 2, 8]), engine.empty([1, 2, 8]), engine.empty([1, 2, 8])] as const;
    let dispatches = engine.recorder.counters.dispatches;
    cache.appendAndAttend(...apart, { layout: 'blhd' }).dispose();
    expect(engine.recorder.counters.dispatches - dispatches).toBe(2); // append, attend (no rotary)
    const qkv = engine.empty([2, 6, 8]);
    dispatches = engine.recorder.counters.dispatches;
    cache.appendAndAttend(qkv.view([2, 2, 8]), qkv.view([2, 2, 8], 32), qkv.view([2, 2, 8], 64), { layout: 'blhd', causal: true }).dispose();
    expect(engine.recorder.counters.dispatches - dispatches).toBe(2); // two tokens: not fused
    expect(cache.length).toBe(3);
    const keys = cache.keys.reshape([1, 2, 8, 8]);
    const k = qkv.view([1, 2, 8], 16);
    expect(() => attention(qkv.view([2, 2, 8]), keys, keys, { layout: 'blhd', kvLayout: 'bhld', kvLength: 4, fresh: { k, v: k } })).toThrow(/needs one query row and batch 1/);
    expect(() => attention(qkv.view([1, 2, 8]), keys, keys, { layout: 'blhd', kvLayout: 'bhld', kvLength: 4, fresh: { k, v: apart[0] } })).toThrow(/v must be a view of q's storage after q/);
    expect(() => attention(qkv.view([1, 2, 8]), keys, keys, { layout: 'blhd', kvLayout: 'bhld', kvLength: 4, fresh: { k: qkv.view([1, 1, 8], 16), v: k } })).toThrow(/k \[1, 1, 8\] f32 must hold 2 x 8 f32 elements/);
    [...apart, qkv, keys, k].forEach((t) => t.dispose());
    cache.dispose();
  });

  it('stores keys unrotated without a rotary embedding, at explicit positions too', async () => {
    const cache = new KVCache(engine, { heads: 2, headDim: 8, maxLength: 5, dtype: 'f32' });
    const kData = hashed([2, 3, 8], 1);
    const vData = hashed([2, 3, 8], 2);
    const k = engine.tensor(kData, [2, 3, 8]);
    const v = engine.tensor(vData, [2, 3, 8]);
    cache.append(k, v);
    const keys = await cache.keys.toArray();
    const values = await cache.values.toArray();
    for (let h = 0; h < 2; h++) {
      expect(Array.from(keys.slice(h * 5 * 8, h * 5 * 8 + 24))).toEqual(Array.from(kData.slice(h * 24, h * 24 + 24)));
      expect(Array.from(values.slice(h * 5 * 8, h * 5 * 8 + 24))).toEqual(Array.from(vData.slice(h * 24, h * 24 + 24)));
    }
    // With a rotary embedding and explicit positions, row r holds rope(k) at positions[r].
    const rotary = new RotaryEmbedding(engine, 8);
    const rotated = new KVCache(engine, { heads: 2, headDim: 8, maxLength: 5, dtype: 'f32', rotary });
    rotated.append(k, v, { positions: [7, 2, 300] });
    const want = rope(k.reshape([1, 2, 3, 8]), rotary, { positions: [7, 2, 300] });
    const got = await rotated.keys.toArray();
    const wantData = await want.toArray();
    const rows = new Float32Array(48);
    for (let h = 0; h < 2; h++) rows.set(got.slice(h * 40, h * 40 + 24), h * 24);
    expectClose(rows, wantData, { rel: TOL.f32, label: 'explicit positions' });
    [k, v, want].forEach((t) => t.dispose());
    cache.dispose();
    rotated.dispose();
    rotary.dispose();
  });

  it('refuses to overflow, names bad shapes, and can truncate and reset', () => {
    const cache = new KVCache(engine, { heads: 2, headDim: 8, maxLength: 4 });
    expect(cache.dtype).toBe('f16');
    const three = engine.empty([2, 3, 8]);
    cache.append(three, three);
    expect(() => cache.append(three, three)).toThrow(/appending 3 token\(s\) to 3 would overflow the cache of 4 positions/);
    expect(cache.length).toBe(3);
    expect(() => cache.append(engine.empty([3, 3, 8]), engine.empty([3, 3, 8]))).toThrow(/k \[3, 3, 8\] must be \[2, T, 8\] \(layout 'bhld'\) for this cache/);
    expect(() => cache.append(three, engine.empty([2, 2, 8]))).toThrow(/k \[2, 3, 8\] and v \[2, 2, 8\] must have the same shape/);
    expect(() => cache.truncate(5)).toThrow(/length 5 must be an integer in \[0, 3\]/);
    cache.truncate(1);
    expect(cache.length).toBe(1);
    cache.append(three, three);
    expect(cache.length).toBe(4);
    cache.reset();
    expect(cache.length).toBe(0);
    expect(() => new KVCache(engine, { heads: 2, headDim: 6, maxLength: 4 })).toThrow(/headDim 6 must be a multiple of 4/);
    expect(() => new KVCache(engine, { heads: 0, headDim: 8, maxLength: 4 })).toThrow(/heads must be a positive integer, got 0/);
    expect(() => new KVCache(engine, { heads: 2, headDim: 8, maxLength: 4, rotary: new RotaryEmbedding(engine, 16) })).toThrow(/rotary embedding is for head dim 16, the cache has 8/);
    three.dispose();
    cache.dispose();
  });
});

describe('KV cache over small storage bindings', () => {
  it('splits the append across heads; refuses one head beyond the limit', async () => {
    const engine = await testEngine({ maxBindingBytes: 4096 });
    const rotary = new RotaryEmbedding(engine, 16);
    // 6 heads x 40 rows x 16 x 4 bytes = 15 KB of cache per tensor, 2.5 KB per head.
    const cache = new KVCache(engine, { heads: 6, headDim: 16, maxLength: 40, dtype: 'f32', rotary });
    const kData = hashed([6, 3, 16], 5);
    const k = engine.tensor(kData, [6, 3, 16]);
    cache.append(k, k);
    cache.append(k, k);
    const want = await rope(k.reshape([1, 6, 3, 16]), rotary, { positions: 3 }).toArray();
    const got = await cache.keys.toArray();
    const rows = new Float32Array(6 * 3 * 16);
    for (let h = 0; h < 6; h++) rows.set(got.slice((h * 40 + 3) * 16, (h * 40 + 6) * 16), h * 48);
    expectClose(rows, want, { rel: TOL.f32, label: 'split append' });
    const big = new KVCache(engine, { heads: 2, headDim: 16, maxLength: 100, dtype: 'f32' });
    const k70 = engine.empty([2, 70, 16]);
    expect(() => big.append(k70, k70)).toThrow(/KVCache.append: one head of \[2, 70, 16\] \(f32\) does not fit the 4096-byte binding limit/);
  });
});
