import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseSwinConfig } from '../src/decoders/gdino/config.js';
import { SwinBackbone } from '../src/decoders/gdino/swin.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

// Goldens: scripts/golden/gdino_swin.py (Hugging Face's SwinBackbone, reference_gdino_swin.py).
const golden = loadGolden('gdino_swin');
const SOURCE = 'gdino_swin.safetensors';
const config = parseSwinConfig(new ConfigReader(SOURCE, JSON.parse(golden.metadata.config!), 'backbone_config'));
const PREFIX = golden.metadata.prefix!;
interface Case { name: string; height: number; width: number; seed: number; scale: number; beyond_hf: boolean; shapes: number[][] }
const cases = JSON.parse(golden.metadata.cases!) as Case[];

/** The checkpoint's tensors under their names (f16 values: both uploads hold the same numbers). */
const weights = (engine: Engine, dtype: 'f32' | 'f16', skip?: string) => golden.weights(engine, dtype, `${PREFIX}.`, skip);

function pixels(engine: Engine, c: Case): Tensor {
  return engine.tensor(hashed(3 * c.height * c.width, c.seed, c.scale), [1, 3, c.height, c.width]);
}

describe.each(['cpu', 'gpu'] as const)('gdino Swin backbone, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    // A first forward makes the engine's shared constants (kernel placeholders), which the leak check below must not count.
    const tensors = weights(engine, 'f32');
    const backbone = SwinBackbone.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    const input = pixels(engine, cases[cases.length - 1]!);
    const maps = backbone.forward(input);
    await engine.sync();
    [input, ...maps, ...tensors.values()].forEach((t) => t.dispose());
    backbone.dispose();
  });

  it.each(['f32', 'f16'] as const)('%s weights: the four normed stage maps of every input size', async (dtype) => {
    const live = engine.memory().liveBytes;
    const tensors = weights(engine, dtype);
    const backbone = SwinBackbone.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    expect(backbone.channels).toEqual([8, 16, 32, 64]);
    const worst: string[] = [];
    for (const c of cases) {
      const input = pixels(engine, c);
      const maps = backbone.forward(input);
      expect(maps.map((m) => m.shape), c.name).toEqual(c.shapes);
      for (const [i, map] of maps.entries()) {
        expect(map.dtype).toBe('f32');
        const all = await map.toArray();
        const index = golden.values(`${c.name}.stage${i + 1}.index`);
        const got = Array.from(index, (k) => all[k]!);
        const err = expectClose(got, golden.values(`${c.name}.stage${i + 1}.values`), { rel: TOL[dtype], label: `${c.name} (${c.height}x${c.width}) stage ${i + 1}` });
        worst.push(`${c.name}.s${i + 1} ${err.toExponential(1)}`);
      }
      [input, ...maps].forEach((t) => t.dispose());
    }
    console.log(`${profile} ${dtype}: ${worst.join(', ')}`);
    backbone.dispose();
    tensors.forEach((t) => t.dispose());
    expect(engine.memory().liveBytes, 'bytes left after dispose').toBe(live);
  });
});

describe('gdino Swin backbone errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('names the checkpoint and the tensor a missing weight would be', () => {
    const missing = `${PREFIX}.encoder.layers.2.blocks.1.attention.self.relative_position_bias_table`;
    const tensors = weights(engine, 'f32', missing);
    expect(() => SwinBackbone.load(Params.of(tensors, SOURCE).at(PREFIX), config)).toThrow(`${SOURCE}: missing weight '${missing}'`);
    tensors.forEach((t) => t.dispose());
  });

  it('names a misshapen weight, a bad head count and a bad input shape', () => {
    const tensors = weights(engine, 'f32');
    const p = Params.of(tensors, SOURCE).at(PREFIX);
    expect(() => SwinBackbone.load(p, { ...config, numHeads: [2, 2, 2, 4] })).toThrow(/relative_position_bias_table \[169, 1\] must be \[169, 2\]/);
    expect(() => SwinBackbone.load(p, { ...config, embedDim: 6, numHeads: [1, 1, 1, 1] })).toThrow(/stage 1 has head dim 6 \/ 1 = 6; the attention kernels need a multiple of 4/);
    const backbone = SwinBackbone.load(p, config);
    for (const shape of [[1, 4, 32, 32], [2, 3, 32, 32], [3, 32, 32], [1, 3, 0, 32]]) {
      const x = engine.empty(shape, 'f32');
      expect(() => backbone.forward(x)).toThrow(`SwinBackbone: pixels [${shape.join(', ')}] must be [1, 3, H, W] with H, W >= 1`);
      x.dispose();
    }
    const half = engine.empty([1, 3, 32, 32], 'f16');
    expect(() => backbone.forward(half)).toThrow('SwinBackbone: pixels [1, 3, 32, 32] are f16; expected f32');
    half.dispose();
    backbone.dispose();
    tensors.forEach((t) => t.dispose());
  });
});
