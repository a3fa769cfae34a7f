import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseBackboneConfig } from '../src/decoders/gdino/config.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { ResNet, type ResNetConfig } from '../src/nn/resnet.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

// Goldens: scripts/golden/gdino_resnet.py (Hugging Face's ResNetBackbone with frozen batch norms, reference_gdino_resnet.py).
const golden = loadGolden('gdino_resnet');
const SOURCE = 'gdino_resnet.safetensors';
const PREFIX = golden.metadata.prefix!;
interface Case { name: string; height: number; width: number; seed: number; scale: number; shapes: number[][] }
interface Variant { name: string; config: Record<string, unknown>; channels: number[]; cases: Case[] }
const variants = JSON.parse(golden.metadata.variants!) as Variant[];
const configOf = (v: Variant) => parseBackboneConfig(new ConfigReader(SOURCE, v.config, 'backbone_config')) as ResNetConfig;
const weights = (engine: Engine, v: Variant, dtype: 'f32' | 'f16', skip?: string) => golden.weights(engine, dtype, `${v.name}.`, skip);
const load = (tensors: Map<string, Tensor>, v: Variant) => ResNet.load(Params.of(tensors, SOURCE).at(v.name, PREFIX), configOf(v));

function pixels(engine: Engine, c: Case): Tensor {
  return engine.tensor(hashed(3 * c.height * c.width, c.seed, c.scale), [1, 3, c.height, c.width]);
}

describe.each(['cpu', 'gpu'] as const)('gdino ResNet backbone, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    // A first forward makes the engine's shared constants (kernel placeholders), which the leak checks below must not count.
    const v = variants[0]!;
    const tensors = weights(engine, v, 'f32');
    const backbone = load(tensors, v);
    const input = pixels(engine, v.cases[0]!);
    const maps = backbone.forward(input);
    await engine.sync();
    [input, ...maps, ...tensors.values()].forEach((t) => t.dispose());
    backbone.dispose();
  });

  describe.each(variants.map((v) => [v.name, v] as const))('%s layers', (_, v) => {
    it.each(['f32', 'f16'] as const)('%s weights: the stage maps of every input size', async (dtype) => {
      const live = engine.memory().liveBytes;
      const tensors = weights(engine, v, dtype);
      const backbone = load(tensors, v);
      expect(backbone.channels).toEqual(v.channels);
      const worst: string[] = [];
      for (const c of v.cases) {
        const input = pixels(engine, c);
        const maps = backbone.forward(input);
        expect(maps.map((m) => m.shape), c.name).toEqual(c.shapes);
        for (const [i, map] of maps.entries()) {
          const all = await map.toArray();
          const got = Array.from(golden.values(`${v.name}.${c.name}.map${i}.index`), (k) => all[k]!);
          const want = golden.values(`${v.name}.${c.name}.map${i}.values`);
          expect(Math.max(...Array.from(want, Math.abs)), 'the reference is not trivial').toBeGreaterThan(0.1);
          const err = expectClose(got, want, { rel: TOL[dtype], label: `${v.name} ${c.name} (${c.height}x${c.width}) map ${i}` });
          worst.push(`${c.name}.${i} ${err.toExponential(1)}`);
        }
        [input, ...maps].forEach((t) => t.dispose());
      }
      console.log(`${profile} ${v.name} ${dtype}: ${worst.join(', ')}`);
      backbone.dispose();
      tensors.forEach((t) => t.dispose());
      expect(engine.memory().liveBytes, 'bytes left after dispose').toBe(live);
    });
  });
});

describe('gdino ResNet backbone errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });
  const v = variants[0]!;

  it('names the checkpoint and the tensor a missing weight would be, and frees what it folded', () => {
    const missing = `${v.name}.${PREFIX}.encoder.stages.2.layers.1.layer.1.normalization.running_var`;
    const tensors = weights(engine, v, 'f32', missing);
    const live = engine.memory().liveBytes;
    expect(() => load(tensors, v)).toThrow(`${SOURCE}: missing weight '${missing}'`);
    // The layers folded before the failure released their checkpoint tensors and freed their copies.
    expect(engine.memory().liveBytes).toBeLessThan(live);
    tensors.forEach((t) => t.dispose());
  });

  it('names a misshapen weight, a bad bottleneck width and a bad input shape', () => {
    let tensors = weights(engine, v, 'f32');
    expect(() => ResNet.load(Params.of(tensors, SOURCE).at(v.name, PREFIX), { ...configOf(v), hiddenSizes: [8, 12, 16, 24] })).toThrow(
      /encoder\.stages\.3\.layers\.0\.shortcut\.convolution\.weight \[20, 16, 1, 1\] must be \[24, 16, 1, 1\]/,
    );
    tensors.forEach((t) => t.dispose());
    tensors = weights(engine, v, 'f32');
    expect(() => ResNet.load(Params.of(tensors, SOURCE).at(v.name, PREFIX), { ...configOf(v), layerType: 'bottleneck', hiddenSizes: [8, 12, 16, 22] })).toThrow(
      /bottleneck width 22 is not divisible by 4/,
    );
    const backbone = load(tensors, v);
    for (const shape of [[1, 4, 32, 32], [3, 32, 32], [1, 3, 0, 32]]) {
      const x = engine.empty(shape, 'f32');
      expect(() => backbone.forward(x)).toThrow(`ResNet: pixels [${shape.join(', ')}] must be [B, 3, H, W] with H, W >= 1`);
      x.dispose();
    }
    backbone.dispose();
    tensors.forEach((t) => t.dispose());
  });

  it('reads model_type resnet and names what it does not support', () => {
    const parse = (json: Record<string, unknown>) => parseBackboneConfig(new ConfigReader('config.json', json, 'gdino_config.backbone_config'));
    expect(parse({ model_type: 'resnet' })).toMatchObject({ modelType: 'resnet', embeddingSize: 64, hiddenSizes: [256, 512, 1024, 2048], depths: [3, 4, 6, 3], layerType: 'bottleneck', outStages: [1, 2, 3, 4] });
    expect(parse({})).toMatchObject({ modelType: 'swin' });
    expect(() => parse({ model_type: 'convnext' })).toThrow(/gdino_config\.backbone_config\.model_type must be one of swin, resnet, got "convnext"/);
    expect(() => parse({ model_type: 'resnet', hidden_act: 'gelu' })).toThrow(/hidden_act must be one of relu/);
    expect(() => parse({ model_type: 'resnet', downsample_in_bottleneck: true })).toThrow(/downsample_in_bottleneck true is not supported/);
    expect(() => parse({ model_type: 'resnet', depths: [1, 1], hidden_sizes: [8, 8, 8] })).toThrow(/hidden_sizes has 3 entries for 2 stages/);
    expect(() => parse({ model_type: 'resnet', out_features: ['stage5'] })).toThrow(/out_features names 'stage5'; expected stage1\.\.stage4/);
  });
});
