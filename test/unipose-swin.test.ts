import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { MicrosoftSwin, uniposeSwinConfig, type UniposeSwinConfig } from '../src/decoders/unipose/swin.js';
import { Params } from '../src/nn/params.js';
import { hashed } from './hashed.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

// Goldens: scripts/golden/unipose_swin.py (Microsoft's Swin as UniPose ships it, reference_unipose_swin.py).
const golden = loadGolden('unipose_swin');
const SOURCE = 'unipose_swin.safetensors';
const meta = JSON.parse(golden.metadata.config!) as { embed_dim: number; depths: number[]; num_heads: number[]; window_size: number; patch_size: number; out_indices: number[] };
const config: UniposeSwinConfig = {
  embedDim: meta.embed_dim, depths: meta.depths, numHeads: meta.num_heads, windowSize: meta.window_size, patchSize: meta.patch_size,
  numChannels: 3, mlpRatio: 4, qkvBias: true, returnIntermIndices: meta.out_indices,
};
const PREFIX = golden.metadata.prefix!;
interface Case { name: string; height: number; width: number; seed: number; scale: number; shapes: number[][] }
const cases = JSON.parse(golden.metadata.cases!) as Case[];

/** The backbone's weights under their checkpoint names (f16 values, so both uploads hold the same numbers); index buffers as i32. */
function weights(engine: Engine, dtype: 'f32' | 'f16', skip?: string): Map<string, Tensor> {
  return golden.weights(engine, dtype, `${PREFIX}.`, skip);
}

function pixels(engine: Engine, c: Case): Tensor {
  return engine.tensor(hashed(3 * c.height * c.width, c.seed, c.scale), [1, 3, c.height, c.width]);
}

describe.each(['cpu', 'gpu'] as const)('UniPose Microsoft Swin, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    // A first forward makes the engine's shared constants (kernel placeholders), which the leak check below must not count.
    const tensors = weights(engine, 'f32');
    const backbone = MicrosoftSwin.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    const input = pixels(engine, cases[cases.length - 1]!);
    const maps = backbone.forward(input);
    await engine.sync();
    [input, ...maps, ...tensors.values()].forEach((t) => t.dispose());
    backbone.dispose();
  });

  it.each(['f32', 'f16'] as const)('%s weights: the normed out maps of every input size', async (dtype) => {
    const live = engine.memory().liveBytes;
    const tensors = weights(engine, dtype);
    const backbone = MicrosoftSwin.load(Params.of(tensors, SOURCE).at(PREFIX), config);
    expect(backbone.channels).toEqual([16, 32, 64]);
    const worst: string[] = [];
    for (const c of cases) {
      const input = pixels(engine, c);
      const maps = backbone.forward(input);
      expect(maps.map((m) => m.shape), c.name).toEqual(c.shapes);
      for (const [k, map] of maps.entries()) {
        const i = config.returnIntermIndices[k]!;
        expect(map.dtype).toBe('f32');
        const all = await map.toArray();
        const got = Array.from(golden.values(`${c.name}.out${i}.index`), (j) => all[j]!);
        const err = expectClose(got, golden.values(`${c.name}.out${i}.values`), { rel: TOL[dtype], label: `${c.name} (${c.height}x${c.width}) out ${i}` });
        worst.push(`${c.name}.out${i} ${err.toExponential(1)}`);
      }
      [input, ...maps].forEach((t) => t.dispose());
    }
    console.log(`${profile} ${dtype}: ${worst.join(', ')}`);
    backbone.dispose();
    tensors.forEach((t) => t.dispose());
    expect(engine.memory().liveBytes, 'bytes left after dispose').toBe(live);
  });
});

describe('UniPose Microsoft Swin config and errors', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it('knows build_swin_transformer\'s backbones', () => {
    expect(uniposeSwinConfig('swin_T_224_1k')).toEqual({
      embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], windowSize: 7, patchSize: 4, numChannels: 3, mlpRatio: 4, qkvBias: true,
      returnIntermIndices: [1, 2, 3],
    });
    expect(uniposeSwinConfig('swin_L_384_22k', [3]).windowSize).toBe(12);
    expect(() => uniposeSwinConfig('swin_X' as never)).toThrow(/unknown backbone 'swin_X'; expected one of swin_T_224_1k/);
  });

  it('names the checkpoint and the tensor a missing weight would be', () => {
    for (const missing of [`${PREFIX}.layers.2.blocks.1.attn.qkv.weight`, `${PREFIX}.norm3.bias`]) {
      const tensors = weights(engine, 'f32', missing);
      expect(() => MicrosoftSwin.load(Params.of(tensors, SOURCE).at(PREFIX), config)).toThrow(`${SOURCE}: missing weight '${missing}'`);
      tensors.forEach((t) => t.dispose());
    }
  });

  it('names a misshapen weight, a bad head count, bad indices and a bad input', () => {
    const tensors = weights(engine, 'f32');
    const p = Params.of(tensors, SOURCE).at(PREFIX);
    expect(() => MicrosoftSwin.load(p, { ...config, numHeads: [2, 2, 2, 4] })).toThrow(/relative_position_bias_table \[169, 1\] must be \[169, 2\]/);
    // A load that fails late frees the qkv views it made: they would keep the weights' storage alive.
    const live = engine.memory().liveBytes;
    const fresh = weights(engine, 'f32');
    expect(() => MicrosoftSwin.load(Params.of(fresh, SOURCE).at(PREFIX), { ...config, numHeads: [1, 2, 2, 2] }))
      .toThrow(/layers\.3\.blocks\.0\.attn\.relative_position_bias_table \[169, 4\] must be \[169, 2\]/);
    fresh.forEach((t) => t.dispose());
    expect(engine.memory().liveBytes, 'bytes left after a failed load and its weights disposed').toBe(live);
    expect(() => MicrosoftSwin.load(p, { ...config, embedDim: 6, numHeads: [1, 1, 1, 1] })).toThrow(/stage 0 has head dim 6 \/ 1 = 6; the attention kernels need a multiple of 4/);
    expect(() => MicrosoftSwin.load(p, { ...config, returnIntermIndices: [1, 4] })).toThrow(`${PREFIX}: return_interm_indices [1, 4] must be distinct stages 0..3`);
    expect(() => MicrosoftSwin.load(p, { ...config, returnIntermIndices: [0, 1, 2, 3] })).toThrow(`${SOURCE}: missing weight '${PREFIX}.norm0.weight'`);
    const backbone = MicrosoftSwin.load(p, config);
    for (const shape of [[1, 4, 32, 32], [2, 3, 32, 32], [3, 32, 32], [1, 3, 0, 32]]) {
      const x = engine.empty(shape, 'f32');
      expect(() => backbone.forward(x)).toThrow(`MicrosoftSwin: pixels [${shape.join(', ')}] must be [1, 3, H, W] with H, W >= 1`);
      x.dispose();
    }
    const half = engine.empty([1, 3, 32, 32], 'f16');
    expect(() => backbone.forward(half)).toThrow('MicrosoftSwin: pixels [1, 3, 32, 32] are f16; expected f32');
    half.dispose();
    backbone.dispose();
    tensors.forEach((t) => t.dispose());
  });
});
