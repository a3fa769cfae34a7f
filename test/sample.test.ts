import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { sampleTokens } from '../src/ops/sample.js';
import { loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('sample');
const configs = golden.values('configs');
const configIndex = golden.values('config_index');
const draws = golden.values('draws');
const expected = golden.values('expected');

describe.each(['cpu', 'gpu'] as const)('sampling on the GPU, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each([0, 1, 2, 3, 4, 5, 6])('config %i matches the reference draw for every row', async (c) => {
    const [temperature, topK, topP] = [configs[c * 3]!, configs[c * 3 + 1]!, configs[c * 3 + 2]!];
    const logits = golden.upload(engine, 'logits'); // [6, 1003]: odd vocabulary, a tie at the top of row 1
    const rows = [...configIndex.keys()].filter((i) => configIndex[i] === c);
    const ids = sampleTokens(logits, rows.map((i) => draws[i]!), { temperature, topK, topP });
    expect(ids.shape).toEqual([6]);
    expect(Array.from(await ids.toArray())).toEqual(rows.map((i) => expected[i]));
    [logits, ids].forEach((t) => t.dispose());
  });
});

describe('sampling edge cases', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('temperature 0 is greedy, and top-k 1 is greedy for any draw', async () => {
    const logits = engine.tensor([0.1, 2.5, -1, 2.4, 0], [5]);
    expect(Array.from(await sampleTokens(logits, 0.99, { temperature: 0 }).toArray())).toEqual([1]);
    for (const u of [0, 0.5, 0.999]) expect(Array.from(await sampleTokens(logits, u, { topK: 1 }).toArray())).toEqual([1]);
  });

  it('draws across the whole distribution in index order', async () => {
    const logits = engine.tensor([0, 0, 0, 0], [4]); // uniform: quarters
    const got = await Promise.all([0.1, 0.3, 0.6, 0.9].map(async (u) => (await sampleTokens(logits, u).toArray())[0]));
    expect(got).toEqual([0, 1, 2, 3]);
  });

  it('names bad options', () => {
    const logits = engine.tensor([0, 1], [2]);
    expect(() => sampleTokens(logits, 0.5, { topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => sampleTokens(logits, 1.0)).toThrow(/draws must be in \[0, 1\)/);
    expect(() => sampleTokens(logits, [0.1, 0.2])).toThrow(/2 draws for 1 rows/);
    expect(() => sampleTokens(logits, 0.5, { temperature: -1 })).toThrow(/temperature must be >= 0/);
  });
});
