import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { MultiscaleDeformableAttention, type MsDeformAttnConfig } from '../src/nn/ms-deform-attn.js';
import { Params } from '../src/nn/params.js';
import { msDeformSamplingLocations } from '../src/ops/ms-deform-attn.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';
import { decoderReferenceBoxes, encoderReferencePoints, hashed, paddingMask, pickRows, tokenCount } from './ms-deform-attn-inputs.js';

const golden = loadGolden('ms_deform_attn_module');
const cases = JSON.parse(golden.metadata.cases!);
const small = cases.small as { prefix: string; shapes: [number, number][]; d_model: number; heads: number; points: number };
const pyramid = cases.pyramid as {
  shapes: [number, number][]; module_seed: number; input_seed: number; pos_seed: number; query_seed: number;
  box_seed: number; query_pos_seed: number; decoder_queries: number;
};
const BATCH = Number(golden.metadata.batch);
const D = Number(golden.metadata.d_model);
const HEADS = Number(golden.metadata.heads);
const POINTS = Number(golden.metadata.points);

function dispose(...ts: (Tensor | undefined)[]): void {
  ts.forEach((t) => t?.dispose());
}

/** The small module's parameters, uploaded under their state_dict names. */
function smallWeights(engine: Engine): Map<string, Tensor> {
  const weights = new Map<string, Tensor>();
  for (const name of golden.tensors.keys()) if (name.startsWith(small.prefix)) weights.set(name, golden.upload(engine, name));
  return weights;
}

const smallConfig = (): MsDeformAttnConfig => ({ dModel: small.d_model, heads: small.heads, levels: small.shapes.length, points: small.points });

describe.each([
  ['registers', 'cpu'],
  ['shared', 'gpu'],
] as const)('MSDeformAttn module, %s kernel', (kernel, profile) => {
  let engine: Engine;
  let weights: Map<string, Tensor>;
  beforeAll(async () => {
    engine = await testEngine({ profile });
    weights = smallWeights(engine);
  });

  describe.each(['f32', 'f16'] as const)('%s value storage', (valueDtype) => {
    const tol = TOL[valueDtype];

    it('small module from Grounding DINO parameter names: boxes, points, mask, position embeddings', async () => {
      const attn = MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), smallConfig(), { valueDtype, kernel });
      const up = (name: string) => golden.upload(engine, `small.${name}`);
      const [input, query, pos, boxes, points] = ['input', 'query', 'pos', 'boxes', 'points'].map(up) as Tensor[];
      const mask = golden.values('small.mask');
      const common = { query: query!, input: input!, spatialShapes: small.shapes, queryPos: pos };
      const withBoxes = attn.forward({ ...common, referencePoints: boxes!, paddingMask: mask });
      expect(withBoxes.shape).toEqual(query!.shape);
      expectClose(await withBoxes.toArray(), golden.values('small.out_boxes'), { rel: tol, label: '4-d boxes' });
      const withPoints = attn.forward({ ...common, referencePoints: points!, paddingMask: mask });
      expectClose(await withPoints.toArray(), golden.values('small.out_points'), { rel: tol, label: '2-d points' });
      const unmasked = attn.forward({ ...common, referencePoints: boxes! });
      expectClose(await unmasked.toArray(), golden.values('small.out_unmasked'), { rel: tol, label: 'no mask' });
      // The mask as a GPU tensor, float or integer, and the level start index checked.
      const maskF = engine.tensor(mask, [BATCH, tokenCount(small.shapes)], 'f32');
      const maskI = engine.tensor(mask, [BATCH, tokenCount(small.shapes)], 'i32');
      for (const m of [maskF, maskI]) {
        const out = attn.forward({ ...common, referencePoints: boxes!, paddingMask: m, levelStartIndex: [0, 20, 26] });
        expectClose(await out.toArray(), golden.values('small.out_boxes'), { rel: tol, label: `GPU mask ${m.dtype}` });
        out.dispose();
      }
      dispose(input, query, pos, boxes, points, withBoxes, withPoints, unmasked, maskF, maskI);
    });
  });
});

/** The pyramid module's parameters rebuilt from the hash under Hugging Face's names. */
function pyramidWeights(engine: Engine): Map<string, Tensor> {
  const L = pyramid.shapes.length;
  const layers: [string, number, number, number][] = [
    ['value_proj', D, 1 / 32, 1 / 8],
    ['sampling_offsets', HEADS * L * POINTS * 2, 3 / 8, 2],
    ['attention_weights', HEADS * L * POINTS, 1 / 4, 1 / 2],
    ['output_proj', D, 1 / 32, 1 / 8],
  ];
  const weights = new Map<string, Tensor>();
  layers.forEach(([name, out, ws, bs], i) => {
    weights.set(`${name}.weight`, engine.tensor(hashed(pyramid.module_seed + 2 * i, out * D, ws), [out, D]));
    weights.set(`${name}.bias`, engine.tensor(hashed(pyramid.module_seed + 2 * i + 1, out, bs), [out]));
  });
  return weights;
}

describe('MSDeformAttn module on the 100x150 .. 13x19 pyramid, batch 2, batch 1 padded', () => {
  const S = tokenCount(pyramid.shapes);
  const L = pyramid.shapes.length;
  const Lq = pyramid.decoder_queries;
  let engine: Engine;
  let weights: Map<string, Tensor>;
  let input: Tensor;
  const mask = paddingMask(pyramid.shapes, BATCH);
  beforeAll(async () => {
    engine = await testEngine();
    weights = pyramidWeights(engine);
    input = engine.tensor(hashed(pyramid.input_seed, BATCH * S * D), [BATCH, S, D]);
  });

  it.each(['f32', 'f16'] as const)('encoder layer: Lq = S, 2-d reference points, %s value', async (valueDtype) => {
    const attn = MultiscaleDeformableAttention.load(Params.of(weights), { dModel: D, heads: HEADS, levels: L, points: POINTS }, { valueDtype });
    const pos = engine.tensor(hashed(pyramid.pos_seed, BATCH * S * D, 1 / 4), [BATCH, S, D]);
    const refs = engine.tensor(encoderReferencePoints(pyramid.shapes, BATCH), [BATCH, S, L, 2]);
    const out = attn.forward({ query: input, input, queryPos: pos, referencePoints: refs, spatialShapes: pyramid.shapes, paddingMask: mask });
    const got = pickRows(await out.toArray(), BATCH, S, D, golden.values('encoder.queries'));
    expectClose(got, golden.values('encoder.out'), { rel: TOL[valueDtype], label: `encoder ${valueDtype}` });
    dispose(pos, refs, out);
  });

  it.each(['f32', 'f16'] as const)('decoder layer: 900 queries, 4-d reference boxes, %s value', async (valueDtype) => {
    const attn = MultiscaleDeformableAttention.load(Params.of(weights), { dModel: D, heads: HEADS, levels: L, points: POINTS }, { valueDtype });
    const query = engine.tensor(hashed(pyramid.query_seed, BATCH * Lq * D), [BATCH, Lq, D]);
    const pos = engine.tensor(hashed(pyramid.query_pos_seed, BATCH * Lq * D, 1 / 4), [BATCH, Lq, D]);
    const boxes = engine.tensor(decoderReferenceBoxes(pyramid.box_seed, BATCH, Lq, L), [BATCH, Lq, L, 4]);
    const before = engine.memory().liveBuffers;
    const out = attn.forward({ query, input, queryPos: pos, referencePoints: boxes, spatialShapes: pyramid.shapes, paddingMask: mask });
    expect(engine.memory().liveBuffers, 'only the output stays allocated').toBe(before + 1);
    const got = pickRows(await out.toArray(), BATCH, Lq, D, golden.values('decoder.queries'));
    expectClose(got, golden.values('decoder.out'), { rel: TOL[valueDtype], label: `decoder ${valueDtype}` });
    dispose(query, pos, boxes, out);
  });
});

describe('MSDeformAttn module checks', () => {
  let engine: Engine;
  let weights: Map<string, Tensor>;
  beforeAll(async () => {
    engine = await testEngine();
    weights = smallWeights(engine);
  });

  it('names missing and misshapen parameters', () => {
    const partial = new Map([...weights].filter(([k]) => !k.endsWith('attention_weights.weight')));
    expect(() => MultiscaleDeformableAttention.load(Params.of(partial).at(small.prefix), smallConfig()))
      .toThrow(`missing weight '${small.prefix}attention_weights.weight'`);
    expect(() => MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), { ...smallConfig(), points: 3 }))
      .toThrow(`${small.prefix}sampling_offsets.weight [48, 32] must be [72, 32]`);
    expect(() => MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), { ...smallConfig(), heads: 5 }))
      .toThrow('dModel 32 is not divisible by 5 heads');
  });

  it('names bad configs, biases, dtypes and value storage', () => {
    const cfg = smallConfig();
    expect(() => MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), { ...cfg, points: 1.5 })).toThrow('config.points must be a positive integer, got 1.5');
    const wrongBias = new Map(weights);
    wrongBias.set(`${small.prefix}output_proj.bias`, weights.get(`${small.prefix}attention_weights.bias`)!);
    expect(() => MultiscaleDeformableAttention.load(Params.of(wrongBias).at(small.prefix), cfg)).toThrow(`${small.prefix}output_proj.bias [24] must be [32]`);
    const intWeight = new Map(weights);
    const ints = engine.tensor(new Int32Array(32 * 32), [32, 32], 'i32');
    intWeight.set(`${small.prefix}value_proj.weight`, ints);
    expect(() => MultiscaleDeformableAttention.load(Params.of(intWeight).at(small.prefix), cfg)).toThrow(`${small.prefix}value_proj.weight has dtype i32; expected f32 or f16`);
    expect(() => MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), cfg, { valueDtype: 'u32' })).toThrow('valueDtype u32; expected f32 or f16');
    ints.dispose();
  });

  it('names inputs that do not fit the module', () => {
    const attn = MultiscaleDeformableAttention.load(Params.of(weights).at(small.prefix), smallConfig());
    const S = tokenCount(small.shapes);
    const query = engine.tensor(new Float32Array(2 * 6 * 32), [2, 6, 32]);
    const input = engine.tensor(new Float32Array(2 * S * 32), [2, S, 32]);
    const boxes = golden.upload(engine, 'small.boxes');
    const refs3 = engine.tensor(new Float32Array(2 * 6 * 3 * 3), [2, 6, 3, 3]);
    const before = engine.memory().liveBuffers;
    const base = { query, input, referencePoints: boxes, spatialShapes: small.shapes };
    expect(() => attn.forward({ ...base, spatialShapes: [[4, 5], [2, 3], [1, 2]] })).toThrow('spatial shapes hold 28 tokens but input [2, 27, 32] has 27');
    expect(() => attn.forward({ ...base, spatialShapes: [[4, 5], [2, 3]] })).toThrow('2 spatial shapes given for a module of 3 levels');
    expect(() => attn.forward({ ...base, referencePoints: refs3 })).toThrow('reference points [2, 6, 3, 3] must be [2, 6, 3, 2] or [2, 6, 3, 4]');
    expect(() => attn.forward({ ...base, paddingMask: new Uint8Array(S) })).toThrow(`padding mask has ${S} values; expected [2, ${S}]`);
    expect(() => attn.forward({ ...base, query: refs3 })).toThrow('query [2, 6, 3, 3] must be [batch, queries, 32]');
    expect(() => attn.forward({ ...base, input: query })).toThrow(`spatial shapes hold ${S} tokens but input [2, 6, 32] has 6`);
    expect(() => attn.forward({ ...base, input: refs3 })).toThrow('input [2, 6, 3, 3] must be [2, tokens, 32] for query [2, 6, 32]');
    expect(() => attn.forward({ ...base, queryPos: input })).toThrow(`query position embeddings [2, ${S}, 32] must match query [2, 6, 32]`);
    expect(() => attn.forward({ ...base, query: input })).toThrow(`reference points [2, 6, 3, 4] must be [2, ${S}, 3, 2] or [2, ${S}, 3, 4]`);
    expect(engine.memory().liveBuffers, 'nothing left allocated').toBe(before);
    dispose(query, input, boxes, refs3);
  });

  it('sampling locations name mismatched offsets', () => {
    const refs = engine.tensor(new Float32Array(2 * 6 * 3 * 2), [2, 6, 3, 2]);
    const offsets = engine.tensor(new Float32Array(2 * 6 * 4 * 2 * 2 * 2), [2, 6, 4, 2, 2, 2]);
    expect(() => msDeformSamplingLocations(refs, offsets, small.shapes)).toThrow('sampling offsets [2, 6, 4, 2, 2, 2] must be [2, 6, heads, 3, points, 2]');
    dispose(refs, offsets);
  });
});
