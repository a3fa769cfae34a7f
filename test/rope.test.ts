import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { RotaryEmbedding, rope } from '../src/ops/rope.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';
import { hashed, toHeadMajor, toTokenMajor } from './hash-inputs.js';

const golden = loadGolden('rope');

interface RopeCase {
  name: string;
  index: number;
  B: number;
  H: number;
  L: number;
  D: number;
  theta: number;
  start?: number;
  positions?: number[][];
}

const ROPE_CASES = JSON.parse(golden.metadata.cases!) as RopeCase[];

describe('rotary embedding (Hugging Face rotate-half)', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  describe.each(['f32', 'f16'] as const)('%s', (dtype) => {
    it.each(ROPE_CASES.map((c) => [c.name, c] as const))('%s, head- and token-major', async (_, c) => {
      const rotary = new RotaryEmbedding(engine, c.D, { theta: c.theta });
      const x = hashed([c.B, c.H, c.L, c.D], 1000 + c.index, 2);
      const positions = c.positions ? c.positions.flat() : c.start!;
      const want = golden.values(`${c.name}.out`);
      const a = engine.tensor(x, [c.B, c.H, c.L, c.D], dtype);
      const y = rope(a, rotary, { positions });
      expect(y.dtype).toBe(dtype);
      expectClose(await y.toArray(), want, { rel: TOL[dtype], label: `${c.name} bhld` });
      const b = engine.tensor(toTokenMajor(x, [c.B, c.H, c.L, c.D]), [c.B, c.L, c.H, c.D], dtype);
      const z = rope(b, rotary, { positions, layout: 'blhd' });
      expectClose(toHeadMajor(await z.toArray(), [c.B, c.L, c.H, c.D]), want, { rel: TOL[dtype], label: `${c.name} blhd` });
      [a, y, b, z].forEach((t) => t.dispose());
      rotary.dispose();
    });
  });

  it('matches the frequencies Hugging Face computes in f32, and accepts a checkpoint\'s own', () => {
    const rotary = new RotaryEmbedding(engine, 8, { theta: 10000 });
    // 1 / 10000^(2i/8) rounded to f32 at each step, as torch does.
    expect(Array.from(rotary.invFreq)).toEqual([1, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513]);
    const own = new RotaryEmbedding(engine, 4, { invFreq: [1, 0.5] });
    expect(Array.from(own.invFreq)).toEqual([1, 0.5]);
    expect(() => new RotaryEmbedding(engine, 4, { invFreq: [1] })).toThrow(/invFreq has 1 values; head dim 4 needs 2/);
    expect(() => new RotaryEmbedding(engine, 7)).toThrow(/head dim 7 must be a positive even integer/);
  });

  it('rejects positions it cannot honour, naming them', () => {
    const rotary = new RotaryEmbedding(engine, 8);
    const x = engine.empty([1, 2, 3, 8]);
    expect(() => rope(x, rotary, { positions: [0, 1] })).toThrow(/2 positions given for 3 rows \(batch 1\); give 3 or 3/);
    expect(() => rope(x, rotary, { positions: [0, -1, 2] })).toThrow(/position -1 \(index 1\) must be a non-negative integer/);
    expect(() => rope(x, rotary, { positions: 1.5 })).toThrow(/start position 1.5 must be a non-negative integer/);
    expect(() => rope(x, rotary, { positions: 1 << 20 })).toThrow(/position 1048578 is outside \[0, 1048576\)/);
    expect(() => rope(engine.empty([1, 2, 3, 6]), rotary)).toThrow(/has head dim 6; the rotary embedding was made for 8/);
    expect(() => rope(x, rotary, { layout: 'hbld' as 'bhld' })).toThrow(/unknown layout 'hbld'/);
    // Refused calls allocate nothing (the table, grown once, is the embedding's own).
    rope(x, rotary).dispose();
    const before = engine.memory().liveBuffers;
    expect(() => rope(x, rotary, { positions: [0, -1, 2] })).toThrow();
    expect(() => rope(x, rotary, { positions: 1 << 20 })).toThrow();
    expect(engine.memory().liveBuffers).toBe(before);
    x.dispose();
    rotary.dispose();
  });
});
