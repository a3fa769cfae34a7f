import { beforeAll, describe, expect, it } from 'vitest';
import { f32ArrayToF16 } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { parseGdinoConfig, type GdinoConfig } from '../src/decoders/gdino/config.js';
import { GdinoDecoder, inverseSigmoid } from '../src/decoders/gdino/decoder.js';
import { GdinoMaskHead } from '../src/decoders/gdino/mask-head.js';
import { encoderProposals, topK, type GdinoDecoderInputs } from '../src/decoders/gdino/selection.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('gdino_decoder');
const raw = JSON.parse(golden.metadata.config!) as Record<string, number>;
const SHAPES = JSON.parse(golden.metadata.spatial_shapes!) as [number, number][];
const STARTS = JSON.parse(golden.metadata.level_start_index!) as number[];
const MASK_QUERIES = JSON.parse(golden.metadata.mask_queries!) as number[];
const KS = JSON.parse(golden.metadata.ks!) as number[];

function tinyConfig(overrides: Record<string, unknown> = {}): GdinoConfig {
  const { stage1_channels: c1, ...rest } = raw;
  return parseGdinoConfig(new ConfigReader('gdino_decoder golden', { ...rest, backbone_config: { embed_dim: c1 }, ...overrides }));
}
const config = tinyConfig();
const Q = config.numQueries;
const LAYERS = config.decoderLayers;

/** The golden's `gdino.*` weights under their checkpoint names, matrices in `matrix` storage as the default policy. */
function weights(engine: Engine, matrix: 'f32' | 'f16', drop: (name: string) => boolean = () => false): Params {
  const map = new Map<string, Tensor>();
  for (const name of golden.tensors.keys()) {
    if (!name.startsWith('gdino.') || drop(name)) continue;
    const shape = golden.shape(name);
    const values = golden.values(name);
    map.set(name, matrix === 'f16' && shape.length >= 2 ? engine.tensor(f32ArrayToF16(values), shape, 'f16') : engine.tensor(values, shape));
  }
  return Params.of(map, 'golden').at('gdino');
}

function inputs(engine: Engine, K: number): GdinoDecoderInputs {
  const ratios = golden.values('valid_ratios');
  return {
    memory: golden.upload(engine, 'memory'),
    text: golden.upload(engine, `text.k${K}`),
    spatialShapes: SHAPES,
    levelStartIndex: STARTS,
    validRatios: SHAPES.map((_, l) => [ratios[2 * l]!, ratios[2 * l + 1]!] as [number, number]),
    paddingMask: golden.values('padding_mask'),
  };
}

const freeInputs = (x: GdinoDecoderInputs) => [x.memory, x.text].forEach((t) => t.dispose());

describe('gdino selection on the host', () => {
  it('proposals: validity and logit-form boxes as gen_encoder_output_proposals', () => {
    const { logits, valid } = encoderProposals(SHAPES, golden.values('padding_mask'));
    expect(Array.from(valid)).toEqual(Array.from(golden.values('proposals_valid')));
    const expected = golden.values('proposals');
    expect(valid.some((v) => !v)).toBe(true);
    for (let i = 0; i < logits.length; i++) {
      if (!valid[i >> 2]) expect(logits[i]).toBe(Infinity);
      else expect(Math.abs(logits[i]! - expected[i]!)).toBeLessThan(1e-5);
    }
  });

  it('topK: torch.topk order for distinct values, lower index first on ties, NaN last', () => {
    expect(Array.from(topK([0.5, 2, -1, 3, 2, NaN], 4))).toEqual([3, 1, 4, 0]);
    expect(Array.from(topK([1, 1, 1], 2))).toEqual([0, 1]);
    expect(() => topK([1, 2], 3)).toThrow(/k 3/);
  });

  it('inverse_sigmoid clamps as the official one', () => {
    expect(inverseSigmoid(0)).toBeCloseTo(Math.log(1e-5), 4);
    expect(inverseSigmoid(1.5)).toBeCloseTo(-Math.log(1e-5), 4);
    expect(inverseSigmoid(0.5)).toBe(0);
  });
});

describe.each(['cpu', 'gpu'] as const)('gdino decoder, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(KS)('K = %i: selection, every layer, logits, boxes and masks (f32)', async (K) => {
    const p = weights(engine, 'f32');
    const decoder = GdinoDecoder.load(p, config);
    const maskHead = GdinoMaskHead.load(p, config);
    expect(p.weights.unused('gdino.').filter((n) => !n.startsWith('gdino.model.mask_embed.'))).toEqual([]);
    const x = inputs(engine, K);
    const out = await decoder.forward(x);
    const tol = TOL.f32;
    // The same top-k, in the same order.
    expect(Array.from(out.selection.indices)).toEqual(Array.from(golden.values(`k${K}.topk`)));
    expectClose(out.selection.scores, golden.values(`k${K}.scores`), { rel: tol, label: 'scores' });
    expectClose(out.selection.reference, golden.values(`k${K}.reference`), { rel: tol, label: 'first reference' });
    expect(out.layers).toHaveLength(LAYERS);
    for (let i = 0; i < LAYERS; i++) {
      expectClose(await out.layers[i]!.hidden.toArray(), golden.values(`k${K}.layer${i}.hidden`), { rel: tol, label: `layer ${i} hidden` });
      expectClose(out.layers[i]!.reference, golden.values(`k${K}.layer${i}.reference`), { rel: tol, label: `layer ${i} reference` });
    }
    const pos = engine.scope(() => decoder.queryPosition(decoder.scaledReference(out.layers[1]!.referenceIn, x.validRatios)));
    expectClose(await pos.toArray(), golden.values(`k${K}.layer1.query_pos`), { rel: tol, label: 'query position' });
    expect(out.logits.shape).toEqual([Q, K]);
    expectClose(await out.logits.toArray(), golden.values(`k${K}.logits`), { rel: tol, label: 'logits' });
    expectClose(out.boxes, golden.values(`k${K}.boxes`), { rel: tol, label: 'boxes' });
    const { features, masks } = engine.scope(() => {
      const features = maskHead.features(golden.upload(engine, 'stage1'), x.memory, SHAPES[0]!);
      return { features, masks: maskHead.masksFor(out.layers[LAYERS - 1]!.hidden, MASK_QUERIES, features) };
    });
    expectClose(await features.toArray(), golden.values('mask_features'), { rel: tol, label: 'mask features' });
    expect(masks.shape).toEqual(golden.shape(`k${K}.masks`));
    expectClose(await masks.toArray(), golden.values(`k${K}.masks`), { rel: tol, label: 'masks' });
    [pos, features, masks].forEach((t) => t.dispose());
    out.dispose();
    decoder.dispose();
    freeInputs(x);
    p.weights.dispose();
  });

  it.each(KS)('K = %i: f16 weights', async (K) => {
    const p = weights(engine, 'f16');
    const decoder = GdinoDecoder.load(p, config, { valueDtype: 'f16' });
    const maskHead = GdinoMaskHead.load(p, config);
    const x = inputs(engine, K);
    const tol = TOL.f16;
    // The same set: the reference's k-th and next scores are apart by more than f16 moves them.
    const selection = await decoder.selection.select(x);
    const sorted = (a: ArrayLike<number>) => Array.from(a).sort((u, v) => u - v);
    expect(sorted(selection.indices)).toEqual(sorted(golden.values(`k${K}.topk`)));
    expectClose(selection.scores, golden.values(`k${K}.scores`), { rel: tol, label: 'scores' });
    // The layers from the reference's order (near-ties inside the top-k may swap in f16).
    const layers = await decoder.decode(x, golden.values(`k${K}.reference`) as Float32Array);
    for (let i = 0; i < LAYERS; i++) {
      expectClose(await layers[i]!.hidden.toArray(), golden.values(`k${K}.layer${i}.hidden`), { rel: tol, label: `layer ${i} hidden` });
      expectClose(layers[i]!.reference, golden.values(`k${K}.layer${i}.reference`), { rel: tol, label: `layer ${i} reference` });
    }
    const last = layers[LAYERS - 1]!;
    const heads = await decoder.heads(last.hidden, x.text, last.referenceIn);
    expectClose(await heads.logits.toArray(), golden.values(`k${K}.logits`), { rel: tol, label: 'logits' });
    expectClose(heads.boxes, golden.values(`k${K}.boxes`), { rel: tol, label: 'boxes' });
    const masks = engine.scope(() => maskHead.masksFor(last.hidden, MASK_QUERIES, maskHead.features(golden.upload(engine, 'stage1'), x.memory, SHAPES[0]!)));
    expectClose(await masks.toArray(), golden.values(`k${K}.masks`), { rel: tol, label: 'masks' });
    [heads.logits, masks, ...layers.map((l) => l.hidden)].forEach((t) => t.dispose());
    decoder.dispose();
    freeInputs(x);
    p.weights.dispose();
  });

  it('errors name what is wrong', async () => {
    const missing = weights(engine, 'f32', (n) => n === 'gdino.model.decoder.layers.1.encoder_attn_text.in_proj_weight');
    expect(() => GdinoDecoder.load(missing, config)).toThrow(/model\.decoder\.layers\.1\.encoder_attn_text\.in_proj_weight/);
    missing.weights.dispose();
    const noMaskFeatures = weights(engine, 'f32', (n) => n.startsWith('gdino.model.mask_features.'));
    expect(() => GdinoMaskHead.load(noMaskFeatures, config)).toThrow(/model\.mask_features\.weight/);
    noMaskFeatures.weights.dispose();
    // An alias whose canonical tensor is absent.
    const noCanonical = weights(engine, 'f32', (n) => n === 'gdino.bbox_embed.0.layers.2.bias');
    expect(() => GdinoDecoder.load(noCanonical, config)).toThrow(/bbox_embed\.0\.layers\.2\.bias/);
    noCanonical.weights.dispose();
    // Wrong sizes in the config name the tensor and both shapes.
    const p = weights(engine, 'f32');
    expect(() => GdinoDecoder.load(p, tinyConfig({ decoder_ffn_dim: 48 }))).toThrow(/fc1\.weight \[64, 32\] must be \[48, 32\]/);
    p.weights.dispose();

    const q = weights(engine, 'f32');
    const decoder = GdinoDecoder.load(q, config);
    const good = inputs(engine, 3);
    const tooMany = engine.tensor(new Float32Array(257 * 32), [257, 32]);
    await expect(decoder.forward({ ...good, text: tooMany })).rejects.toThrow(/257 text tokens exceed max_text_len 256/);
    await expect(decoder.forward({ ...good, paddingMask: new Uint8Array(5) })).rejects.toThrow(/padding mask has 5 values for 256 tokens/);
    await expect(decoder.forward({ ...good, levelStartIndex: [0, 190, 240, 252] })).rejects.toThrow(/level 1 starts at 190/);
    await expect(decoder.forward({ ...good, validRatios: good.validRatios.slice(1) })).rejects.toThrow(/valid ratios/);
    await expect(decoder.decode(good, new Float32Array(8))).rejects.toThrow(/reference has 8 values; expected \[30, 4\]/);
    const short = golden.upload(engine, 'memory');
    const memory = short.rows(0, 100);
    await expect(decoder.forward({ ...good, memory })).rejects.toThrow(/memory \[100, 32\] must be \[256, 32\]/);
    const maskHead = GdinoMaskHead.load(q, config);
    const stage = engine.tensor(new Float32Array(2 * 24 * 4), [1, 2, 24, 4]);
    expect(() => maskHead.features(stage, good.memory, SHAPES[0]!)).toThrow(/stage 1 \[1, 2, 24, 4\] must be \[1, 24, H\/4, W\/4\]/);
    [tooMany, short, memory, stage].forEach((t) => t.dispose());
    decoder.dispose();
    freeInputs(good);
    q.weights.dispose();
  });
});
