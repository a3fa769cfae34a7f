import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { attention, type AttentionKernel, type AttentionOptions } from '../src/ops/attention.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';
import { hashed, pickRows, toHeadMajor, toTokenMajor } from './hash-inputs.js';

const golden = loadGolden('attention');

interface Case {
  name: string;
  index: number;
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  causal: boolean;
  q_amp: number;
  bias?: number[];
  mask?: number[];
  mask_kind?: 'swin' | 'padding';
  rows: number[];
}

const CASES = JSON.parse(golden.metadata.cases!) as Case[];
const byName = (name: string) => CASES.find((c) => c.name === name)!;

/** The case's inputs on the host, generated exactly as scripts/golden/attention.py does. */
function hostInputs(c: Case) {
  const base = 10 * c.index;
  const q = hashed([c.B, c.Hq, c.Lq, c.D], base + 1, c.q_amp);
  const k = hashed([c.B, c.Hkv, c.Lk, c.D], base + 2);
  const v = hashed([c.B, c.Hkv, c.Lk, c.D], base + 3);
  const bias = c.bias ? hashed(c.bias, base + 4, 2) : undefined;
  let mask: Float32Array | undefined;
  if (c.mask) {
    const h = hashed(c.mask, base + 5);
    const last = c.mask[c.mask.length - 1]!;
    mask = h.map((x, i) => (c.mask_kind === 'swin' ? (x < -1 / 3 ? -100 : 0) : x < -0.5 && i % last !== 0 ? -Infinity : 0));
  }
  return { q, k, v, bias, mask };
}

interface Uploaded {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  bias?: Tensor;
  mask?: Tensor;
  dispose(): void;
}

function uploadCase(engine: Engine, c: Case, dtype: DType, layout: 'bhld' | 'blhd' = 'bhld'): Uploaded {
  const host = hostInputs(c);
  const put = (data: Float32Array, [B, H, L, D]: number[]) =>
    layout === 'bhld' ? engine.tensor(data, [B!, H!, L!, D!], dtype) : engine.tensor(toTokenMajor(data, [B!, H!, L!, D!]), [B!, L!, H!, D!], dtype);
  const t: Uploaded = {
    q: put(host.q, [c.B, c.Hq, c.Lq, c.D]),
    k: put(host.k, [c.B, c.Hkv, c.Lk, c.D]),
    v: put(host.v, [c.B, c.Hkv, c.Lk, c.D]),
    bias: host.bias ? engine.tensor(host.bias, c.bias!, dtype) : undefined,
    mask: host.mask ? engine.tensor(host.mask, c.mask!, dtype) : undefined,
    dispose: () => [t.q, t.k, t.v, t.bias, t.mask].forEach((x) => x?.dispose()),
  };
  return t;
}

async function checkCase(engine: Engine, c: Case, dtype: DType, options: AttentionOptions = {}): Promise<number> {
  const layout = options.layout ?? 'bhld';
  const t = uploadCase(engine, c, dtype, layout);
  const out = attention(t.q, t.k, t.v, { causal: c.causal, bias: t.bias, mask: t.mask, ...options });
  const outType = (options.dtype ?? dtype) as 'f32' | 'f16';
  expect(out.dtype).toBe(outType);
  let values = await out.toArray();
  if (layout === 'blhd') values = toHeadMajor(values, [c.B, c.Lq, c.Hq, c.D]);
  const got = pickRows(values, [c.B, c.Hq, c.Lq, c.D], c.rows);
  const rel = expectClose(got, golden.values(`${c.name}.out`), { rel: TOL[outType], label: `${c.name} ${dtype}` });
  out.dispose();
  t.dispose();
  return rel;
}

// Both kernel families run here whatever the adapter: 'cpu' (subgroup kernels) and 'gpu'
// (workgroup-memory tiles); each picks its prefill or decoding kernel by query length.
describe.each(['cpu', 'gpu'] as const)('attention golden cases, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  describe.each(['f32', 'f16'] as const)('%s', (dtype) => {
    it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_, c) => {
      await checkCase(engine, c, dtype);
    });
  });
});

describe('attention options', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it.each(['decode_513_gqa', 'decode_4096_d64_mask', 'decode_5of300_causal'])('split-K decoding with forced chunk counts: %s', async (name) => {
    const c = byName(name);
    for (const kernel of ['decode_subgroup', 'decode_tiled'] as AttentionKernel[]) {
      for (const splits of [1, 3, 16]) await checkCase(engine, c, 'f32', { kernel, splits });
    }
  });

  it('every kernel computes every shape: decoding kernels on prefill shapes and back', async () => {
    for (const name of ['d80_77_bias', 'swin_49_d32', 'decode_513_gqa']) {
      for (const kernel of ['subgroup', 'tiled', 'decode_subgroup', 'decode_tiled'] as AttentionKernel[]) {
        await checkCase(engine, byName(name), 'f32', { kernel });
      }
    }
  });

  it.each(['gqa8x4_77_d128_causal', 'swin_49_d32', 'decode_513_gqa'])('token-major layout (blhd): %s', async (name) => {
    await checkCase(engine, byName(name), 'f32', { layout: 'blhd' });
    await checkCase(engine, byName(name), 'f16', { layout: 'blhd' });
  });

  it('f16 inputs with an f32 output, and f32 inputs with an f16 output', async () => {
    const c = byName('gqa8x4_77_d128_causal');
    const t = uploadCase(engine, c, 'f16');
    const out = attention(t.q, t.k, t.v, { causal: true, dtype: 'f32' });
    expect(out.dtype).toBe('f32');
    expectClose(pickRows(await out.toArray(), [c.B, c.Hq, c.Lq, c.D], c.rows), golden.values(`${c.name}.out`), { rel: TOL.f32 * 10, label: 'f16 in, f32 out' });
    [out].forEach((x) => x.dispose());
    t.dispose();
    await checkCase(engine, c, 'f32', { dtype: 'f16' });
  });

  it('attends to a prefix of K/V (kvLength), as from a preallocated cache', async () => {
    const c = byName('decode_513_gqa');
    const host = hostInputs(c);
    const maxLen = 600;
    const pad = (src: Float32Array) => {
      const out = new Float32Array(c.Hkv * maxLen * c.D).fill(1e4); // stale rows must never be read
      for (let h = 0; h < c.Hkv; h++) out.set(src.subarray(h * c.Lk * c.D, (h + 1) * c.Lk * c.D), h * maxLen * c.D);
      return out;
    };
    const q = engine.tensor(host.q, [1, c.Hq, 1, c.D]);
    const k = engine.tensor(pad(host.k), [1, c.Hkv, maxLen, c.D]);
    const v = engine.tensor(pad(host.v), [1, c.Hkv, maxLen, c.D]);
    for (const kernel of ['decode_subgroup', 'subgroup', 'tiled'] as AttentionKernel[]) {
      const out = attention(q, k, v, { kvLength: c.Lk, causal: true, kernel });
      expectClose(await out.toArray(), golden.values(`${c.name}.out`), { rel: TOL.f32, label: `kvLength ${kernel}` });
      out.dispose();
    }
    [q, k, v].forEach((x) => x.dispose());
  });

  it('a row that sees no key at all gives zeros, not NaN', async () => {
    const q = engine.tensor(hashed([1, 1, 9, 8], 1), [1, 1, 9, 8]);
    const k = engine.tensor(hashed([1, 1, 9, 8], 2), [1, 1, 9, 8]);
    const v = engine.tensor(hashed([1, 1, 9, 8], 3), [1, 1, 9, 8]);
    const maskData = new Float32Array(9 * 9);
    maskData.fill(-Infinity, 0, 9); // row 0 masked entirely
    const mask = engine.tensor(maskData, [9, 9]);
    for (const kernel of ['subgroup', 'tiled', 'decode_subgroup', 'decode_tiled'] as AttentionKernel[]) {
      const out = await attention(q, k, v, { mask, kernel }).toArray();
      expect(Array.from(out.slice(0, 8)), kernel).toEqual(new Array(8).fill(0));
      expect(out.every(Number.isFinite), kernel).toBe(true);
      expect(out.slice(8).some((x) => x !== 0), kernel).toBe(true);
    }
    [q, k, v, mask].forEach((x) => x.dispose());
  });

  it('a custom scale', async () => {
    // With scale 0 every key weighs the same: the output is the mean of V.
    const vData = hashed([1, 2, 13, 16], 9);
    const q = engine.tensor(hashed([1, 2, 5, 16], 7), [1, 2, 5, 16]);
    const k = engine.tensor(hashed([1, 2, 13, 16], 8), [1, 2, 13, 16]);
    const v = engine.tensor(vData, [1, 2, 13, 16]);
    const want = new Float32Array(2 * 5 * 16);
    for (let h = 0; h < 2; h++)
      for (let d = 0; d < 16; d++) {
        let s = 0;
        for (let j = 0; j < 13; j++) s += vData[(h * 13 + j) * 16 + d]!;
        for (let i = 0; i < 5; i++) want[(h * 5 + i) * 16 + d] = s / 13;
      }
    const out = attention(q, k, v, { scale: 0 });
    expectClose(await out.toArray(), want, { rel: TOL.f32, label: 'scale 0' });
    [q, k, v, out].forEach((x) => x.dispose());
  });
});

describe('attention over small storage bindings', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ maxBindingBytes: 64 * 1024 });
  });

  it('splits heads across dispatches when Q, K or V exceed one binding', async () => {
    // 32 heads x 7 x 128 f32 = 115 KB per tensor, 3.5 KB per head; the Swin batch (8 windows x 3
    // heads) is 150 KB per tensor, and token-major it splits between windows.
    await checkCase(engine, byName('mha32_7_d128_causal'), 'f32');
    await checkCase(engine, byName('mha32_7_d128_causal'), 'f16');
    await checkCase(engine, byName('swin_49_d32'), 'f32');
    await checkCase(engine, byName('swin_49_d32'), 'f16', { layout: 'blhd' });
    // Decoding: one kv head's K is 263 KB; with a 300 KiB limit each dispatch takes one kv head's
    // query heads, and the split-K scratch is windowed alike.
    const roomy = await testEngine({ maxBindingBytes: 300 * 1024 });
    await checkCase(roomy, byName('decode_513_gqa'), 'f32', { splits: 5 });
    await checkCase(roomy, byName('decode_513_gqa'), 'f32', { kernel: 'decode_tiled', splits: 2 });
  });

  it('refuses a head larger than one binding, naming the shapes', () => {
    const q = engine.empty([1, 2, 200, 128]);
    const k = engine.empty([1, 2, 200, 128]);
    expect(() => attention(q, k, k)).toThrow(/one head of q \[1, 2, 200, 128\] \/ k \[1, 2, 200, 128\] \(f32, layouts 'bhld'\/'bhld'\) does not fit the 65536-byte binding limit/);
    const bias = engine.empty([2, 100, 100]);
    const q2 = engine.empty([1, 2, 100, 16]);
    const k2 = engine.empty([1, 2, 100, 16]);
    expect(() => attention(q2, k2, k2, { bias })).toThrow(/bias \[2, 100, 100\] is 80000 bytes, over the 65536-byte binding limit/);
    [q, k, bias, q2, k2].forEach((x) => x.dispose());
  });
});

describe('attention checks its inputs', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  const t = (shape: number[], dtype: DType = 'f32') => engine.empty(shape, dtype);

  it('names mismatched shapes, dtypes and options', () => {
    const q = t([1, 4, 7, 64]);
    const k = t([1, 2, 9, 64]);
    expect(() => attention(q, k, t([1, 2, 9, 32]))).toThrow(/k \[1, 2, 9, 64\] and v \[1, 2, 9, 32\] must have the same shape/);
    expect(() => attention(q, k, t([1, 2, 9, 64], 'f16'))).toThrow(/k is f32 but v is f16/);
    expect(() => attention(q, t([1, 3, 9, 64]), t([1, 3, 9, 64]))).toThrow(/query heads 4 must be a multiple of kv heads 3 \(q \[1, 4, 7, 64\], k \[1, 3, 9, 64\]\)/);
    expect(() => attention(q, t([2, 2, 9, 64]), t([2, 2, 9, 64]))).toThrow(/batch sizes differ \(q \[1, 4, 7, 64\], k \[2, 2, 9, 64\]\)/);
    expect(() => attention(q, t([1, 2, 9, 32]), t([1, 2, 9, 32]))).toThrow(/head dims differ/);
    expect(() => attention(t([1, 2, 7, 6]), t([1, 2, 9, 6]), t([1, 2, 9, 6]))).toThrow(/head dim 6 must be a positive multiple of 4 up to 256/);
    expect(() => attention(t([1, 2, 7, 260]), t([1, 2, 9, 260]), t([1, 2, 9, 260]))).toThrow(/head dim 260/);
    expect(() => attention(t([7, 64]), k, k)).toThrow(/q \[7, 64\] must be \[batch, heads, length, headDim\]/);
    expect(() => attention(t([1, 4, 7, 64], 'i32'), k, k)).toThrow(/q \[1, 4, 7, 64\] has dtype i32; expected f32 or f16/);
    expect(() => attention(t([1, 4, 12, 64]), k, k, { causal: true, kvLength: 8 })).toThrow(/causal attention needs at least as many keys as queries \(q \[1, 4, 12, 64\], 8 keys\)/);
    expect(() => attention(q, k, k, { kvLength: 10 })).toThrow(/kvLength 10 must be an integer in \[0, 9\] for k \[1, 2, 9, 64\]/);
    expect(() => attention(q, k, k, { bias: t([4, 7, 8]) })).toThrow(/bias \[4, 7, 8\] does not broadcast to the scores \[1, 4, 7, 9\]/);
    expect(() => attention(q, k, k, { mask: t([3, 1, 7, 9]) })).toThrow(/mask \[3, 1, 7, 9\] does not broadcast to the scores \[1, 4, 7, 9\]/);
    expect(() => attention(q, k, k, { layout: 'bdhl' as 'bhld' })).toThrow(/unknown layout 'bdhl'/);
    expect(() => attention(q, k, k, { kernel: 'subgroup', splits: 2 })).toThrow(/splits applies to the decoding kernels only/);
    expect(() => attention(t([1, 4, 1, 64]), k, k, { splits: 0 })).toThrow(/splits must be a positive integer, got 0/);
    expect(() => attention(q, k, k, { kvLength: 0 })).toThrow(/no keys to attend \(k \[1, 2, 9, 64\], kvLength 0\)/);
    expect(() => attention(q, k, k, { dtype: 'i32' })).toThrow(/output dtype must be f32 or f16, got i32/);
  });

  it('a refused call allocates nothing', async () => {
    const q = t([1, 4, 7, 64]);
    const k = t([1, 2, 9, 64]);
    const small = await testEngine({ maxBindingBytes: 4096 });
    const qs = small.empty([1, 2, 40, 64]);
    await engine.sync();
    const before = [engine.memory().liveBuffers, small.memory().liveBuffers];
    expect(() => attention(q, k, k, { splits: 2 })).toThrow();
    expect(() => attention(q, k, k, { kvLength: 0 })).toThrow();
    expect(() => attention(qs, qs, qs)).toThrow(/does not fit the 4096-byte binding limit/);
    expect([engine.memory().liveBuffers, small.memory().liveBuffers]).toEqual(before);
  });

  it('returns an empty output for empty queries and allocates nothing else', async () => {
    const before = engine.memory().liveBuffers;
    const out = attention(t([1, 2, 0, 16]), t([1, 2, 5, 16]), t([1, 2, 5, 16]));
    expect(out.shape).toEqual([1, 2, 0, 16]);
    expect(engine.memory().liveBuffers).toBe(before + 4);
  });

  it('leaves no intermediate buffers behind (split-K scratch included)', async () => {
    const c = byName('decode_513_gqa');
    const inputs = uploadCase(engine, c, 'f32');
    attention(inputs.q, inputs.k, inputs.v, { splits: 3 }).dispose(); // creates the per-engine placeholders
    await engine.sync();
    const before = engine.memory().liveBuffers;
    const out = attention(inputs.q, inputs.k, inputs.v, { splits: 3 });
    await out.read();
    expect(engine.memory().liveBuffers).toBe(before + 1);
    out.dispose();
    inputs.dispose();
  });
});
