import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { TEST_DIR, testEngine } from './helpers.js';

// Engine feature: a binding declared `array<name_t4>` holds four elements per entry (one load for
// four values), with name_ld4/st4 by entry and name_ld/ld2/st by element, for every dtype.
describe('array<name_t4> bindings', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  const file = path.join(TEST_DIR, 'fixtures', 'vec4_bindings.wgsl');

  it.each([
    ['f32', 'f32'],
    ['f16', 'f16'],
    ['f16', 'f32'],
    ['f32', 'f16'],
    ['i32', 'f32'],
  ] as const)('%s in, %s out', async (inType, outType) => {
    const n = 4 * 37;
    const data = Array.from({ length: n }, (_, i) => ((i % 2 ? -1 : 1) * (i % 29) * (inType === 'i32' ? 1 : 0.25)) || 0); // no -0: integers have none
    const src = engine.tensor(data, [n], inType);
    const dst = engine.empty([n], outType);
    const elems = engine.empty([n], outType);
    engine.run({ file, entry: 'twice', dtypes: { src: inType, dst: outType, dst_elems: outType } }, { src, dst, dst_elems: elems }, { n4: n / 4 }, Math.ceil(n / 4 / 64));
    expect(Array.from(await dst.toArray())).toEqual(data.map((x) => 2 * x + 1));
    const reversed = data.map((_, i) => data[i - (i % 4) + 3 - (i % 4)]!);
    expect(Array.from(await elems.toArray())).toEqual(reversed);
    [src, dst, elems].forEach((t) => t.dispose());
  });

  it('saturates f16 stores at ±65504 like the scalar form', async () => {
    const src = engine.tensor([1e5, -1e5, 3, 0], [4]);
    const dst = engine.empty([4], 'f16');
    const elems = engine.empty([4], 'f16');
    engine.run({ file, entry: 'twice', dtypes: { src: 'f32', dst: 'f16', dst_elems: 'f16' } }, { src, dst, dst_elems: elems }, { n4: 1 }, 1);
    expect(Array.from(await dst.toArray())).toEqual([65504, -65504, 7, 1]);
    expect(Array.from(await elems.toArray())).toEqual([0, 3, -65504, 65504]);
    [src, dst, elems].forEach((t) => t.dispose());
  });
});
