import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { embedding } from '../src/ops/gather.js';
import { expectExact, loadGolden, testEngine, type Golden } from './helpers.js';

const golden = loadGolden('gather');

// A lookup is exact: results must equal the reference bit for bit (expectExact).

function suite(name: string, options: { maxBindingBytes?: number }) {
  describe(name, () => {
    let engine: Engine;
    let g: Golden;
    beforeAll(async () => {
      engine = await testEngine(options);
      g = golden;
    });

    it.each(['f32', 'f16'])('embedding %s with repeated and boundary ids', async (dt) => {
      const table = g.upload(engine, `table.${dt}`);
      const ids = g.upload(engine, 'ids');
      const fromGpu = embedding(table, ids);
      expect(fromGpu.shape).toEqual([11, 67]);
      await expectExact(fromGpu, g.values(`embedding.${dt}`), 'embedding (GPU ids)');
      const fromHost = embedding(table, Array.from(g.values('ids')), 'f32');
      expect(fromHost.dtype).toBe('f32');
      await expectExact(fromHost, g.values(`embedding.${dt}`), 'embedding (host ids)');
      [table, ids, fromGpu, fromHost].forEach((t) => t.dispose());
    });
  });
}

suite('gather, one binding', {});
// 2 KB bindings: the table spans several, so the lookup runs chunked.
suite('gather split across 2 KB bindings', { maxBindingBytes: 2048 });

describe('gather edge cases', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('names bad ids', () => {
    const table = engine.tensor(new Float32Array(12), [4, 3]);
    expect(() => embedding(table, [1, 4])).toThrow(/id 4 at position 1 is outside the vocabulary \[0, 4\)/);
  });
});
