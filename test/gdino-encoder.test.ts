/**
 * Grounding DINO's encoder side against scripts/golden/gdino_encoder.py (the official modules at a
 * tiny config, float64): position embeddings, masks, valid ratios and reference points on the
 * host; input projections, flattening and every encoder layer on both kernel profiles, with f32
 * and f16 weights, for K = 1, 3 and 7 text tokens (and 7 with 5 valid).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Params } from '../src/nn/params.js';
import { parseGdinoConfig } from '../src/decoders/gdino/config.js';
import { GdinoEncoder, referencePointValues, type GdinoEncoderInputs } from '../src/decoders/gdino/encoder.js';
import { boxSineEmbedding, boxSineValues, levelMask, maskSineEmbedding, textSineValues, validRatio, type PixelMask } from '../src/decoders/gdino/position.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('gdino_encoder');
const raw = JSON.parse(golden.metadata.config!) as Record<string, number> & { stage_channels: number[] };
const image = JSON.parse(golden.metadata.image!) as { height: number; width: number; valid: [number, number] };
const stageSizes = JSON.parse(golden.metadata.stage_sizes!) as [number, number][];
const spatialShapes = JSON.parse(golden.metadata.spatial_shapes!) as [number, number][];
const levelStart = JSON.parse(golden.metadata.level_start_index!) as number[];
const textCases = JSON.parse(golden.metadata.text_cases!) as { tag: string; K: number; valid: number }[];
const PREFIX = golden.metadata.prefix!;
const stageChannels = raw.stage_channels;
const { stage_channels: _, ...gdinoJson } = raw;
const config = parseGdinoConfig(new ConfigReader('gdino_encoder golden', { ...gdinoJson, backbone_config: { embed_dim: stageChannels[0] } }));
const D = config.dModel;
const pixelMask: PixelMask = { height: image.height, width: image.width, valid: image.valid };
const LAYERS = config.encoderLayers;

describe('position embeddings, masks and reference points (host)', () => {
  const masks = spatialShapes.map(([h, w]) => levelMask(pixelMask, h, w));

  it('level masks, valid ratios and 2-D sine embeddings of every level', () => {
    const flat = golden.values('mask_flatten');
    masks.forEach((m, l) => {
      const want = flat.subarray(levelStart[l]!, levelStart[l]! + m.height * m.width);
      expect(Array.from(m.valid), `level ${l} mask`).toEqual(Array.from(want));
      expectClose(maskSineEmbedding(m, D / 2, config.positionalEmbeddingTemperature), golden.values(`pos.level${l}`), { rel: 1e-5, label: `pos level ${l}` });
    });
    expectClose(masks.flatMap(validRatio), golden.values('valid_ratios'), { rel: 1e-7, label: 'valid ratios' });
    // A mask given as data equals the same rectangle.
    const data = new Uint8Array(image.height * image.width);
    for (let i = 0; i < image.valid[0]; i++) data.fill(1, i * image.width, i * image.width + image.valid[1]);
    const [h, w] = spatialShapes[3]!;
    expect(levelMask({ height: image.height, width: image.width, data }, h, w).valid).toEqual(masks[3]!.valid);
  });

  it('reference points', () => {
    let start = 0;
    const levels = masks.map((m) => ({ height: m.height, width: m.width, start: (start += m.height * m.width) - m.height * m.width, validHeight: 0, validWidth: 0 }));
    const geometry = { levels, spatialShapes, levelStartIndex: levelStart, tokens: start, validRatios: masks.map(validRatio), paddingMask: new Uint8Array(start), padded: true };
    expectClose(referencePointValues(geometry), golden.values('reference_points'), { rel: 1e-6, label: 'reference points' });
  });

  it('text positions (get_sine_pos_embed) and the decoder box embedding (y, x, w, h)', () => {
    // The reference's text case k7v5: ids 0..4 then 0, 0 for padding; cross-checked in Python against a loop.
    const ids = [0, 1, 2, 3, 4, 0, 0];
    const values = textSineValues(ids, D);
    expect(values.length).toBe(7 * D);
    expect(values.subarray(5 * D, 6 * D)).toEqual(values.subarray(0, D));
    // id 0: sin 0 = 0, cos 0 = 1; id 1, channel 0: sin(2π) ≈ 0, channel 1 cos(2π) = 1.
    expect(Array.from(values.subarray(0, 4))).toEqual([0, 1, 0, 1]);
    expect(Math.abs(values[D]!)).toBeLessThan(1e-6);
    const boxes = golden.values('box.boxes');
    expectClose(boxSineValues(boxes, D), golden.values('box.embedding'), { rel: 1e-5, label: 'box sine' });
    expect(() => boxSineValues([1, 2, 3], D)).toThrow(/not whole boxes of 4/);
  });
});

/** The golden's weights under their checkpoint names, uploaded as f32 or f16. */
function uploadWeights(engine: Engine, dtype: DType): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [name, t] of golden.tensors) {
    if (name.startsWith(PREFIX)) m.set(name, engine.tensor(golden.values(name), t.shape, dtype));
  }
  return m;
}

function stageTensors(engine: Engine): Tensor[] {
  return stageChannels.map((c, i) => {
    if (i === 0) return engine.tensor(new Float32Array(c * stageSizes[0]![0] * stageSizes[0]![1]), [1, c, ...stageSizes[0]!]); // unused by the encoder
    return golden.upload(engine, `input.stage${i + 1}`);
  });
}

describe.each(['cpu', 'gpu'] as const)('GdinoEncoder, %s profile', (profile) => {
  let engine: Engine;
  let stages: Tensor[];
  beforeAll(async () => {
    engine = await testEngine({ profile });
    stages = stageTensors(engine);
  });

  const inputs = (text: Tensor, textValid: number): GdinoEncoderInputs => ({ stages, pixelMask, text, textValid });

  it('f32 weights: projections, flattening, level positions and every layer for K = 1, 3, 7 (and 7 with 5 valid)', async () => {
    const weights = uploadWeights(engine, 'f32');
    const encoder = GdinoEncoder.load(Params.of(weights).at('gdino.model'), config, stageChannels);
    for (const { tag, K, valid } of textCases) {
      const text = golden.upload(engine, `${tag}.text_in`);
      expect(text.shape).toEqual([K, D]);
      const s = encoder.prepare(inputs(text, valid));
      expect(s.spatialShapes).toEqual(spatialShapes);
      expect(s.levelStartIndex).toEqual(levelStart);
      expect(s.padded).toBe(true);
      if (tag === 'k1') {
        expectClose(await s.sources.toArray(), golden.values('sources'), { rel: TOL.f32, label: 'sources' });
        expectClose(await s.lvlPos.toArray(), golden.values('lvl_pos'), { rel: TOL.f32, label: 'lvl_pos' });
        expectClose(await s.referencePoints.toArray(), golden.values('reference_points'), { rel: 1e-6, label: 'reference points' });
      }
      let vision = s.sources;
      let t = text;
      for (let i = 0; i < LAYERS; i++) {
        const next = encoder.layer(i, vision, t, s);
        expectClose(await next.vision.toArray(), golden.values(`${tag}.layer${i}.vision`), { rel: TOL.f32, label: `${tag} layer ${i} vision` });
        expectClose(await next.text.toArray(), golden.values(`${tag}.layer${i}.text`), { rel: TOL.f32, label: `${tag} layer ${i} text` });
        if (vision !== s.sources) vision.dispose();
        if (t !== text) t.dispose();
        ({ vision, text: t } = next);
      }
      vision.dispose();
      t.dispose();
      [s.sources, s.lvlPos, s.referencePoints, s.paddingTensor, s.visionPadBias, s.textPadBias, s.textSelfMask, s.textPos].forEach((x) => x?.dispose());
      // The whole forward gives the last layer's outputs.
      const out = encoder.forward(inputs(text, valid));
      expect(out.memory.shape).toEqual([s.tokens, D]);
      expect(out.text.shape).toEqual([K, D]);
      expect(out.textValid).toBe(valid);
      expect(out.textPadBias === undefined).toBe(valid === K);
      expectClose(await out.memory.toArray(), golden.values(`${tag}.layer${LAYERS - 1}.vision`), { rel: TOL.f32, label: `${tag} memory` });
      expectClose(await out.text.toArray(), golden.values(`${tag}.layer${LAYERS - 1}.text`), { rel: TOL.f32, label: `${tag} text` });
      out.dispose();
      text.dispose();
    }
    weights.forEach((w) => w.dispose());
  });

  it('f16 weights within 1e-2', async () => {
    const weights = uploadWeights(engine, 'f16');
    const encoder = GdinoEncoder.load(Params.of(weights).at('gdino.model'), config, stageChannels);
    for (const { tag, valid } of textCases.filter((c) => c.tag !== 'k3')) {
      const text = golden.upload(engine, `${tag}.text_in`);
      const out = encoder.forward(inputs(text, valid));
      expect(out.memory.dtype).toBe('f32');
      expectClose(await out.memory.toArray(), golden.values(`${tag}.layer${LAYERS - 1}.vision`), { rel: TOL.f16, label: `${tag} memory (f16 weights)` });
      expectClose(await out.text.toArray(), golden.values(`${tag}.layer${LAYERS - 1}.text`), { rel: TOL.f16, label: `${tag} text (f16 weights)` });
      out.dispose();
      text.dispose();
    }
    weights.forEach((w) => w.dispose());
  });

  it('errors name the missing weight, a wrong text width and wrong stages', () => {
    const weights = uploadWeights(engine, 'f32');
    const missing = `${PREFIX}encoder.layers.1.fusion_layer.attn.values_text_proj.weight`;
    const partial = new Map(weights);
    partial.delete(missing);
    expect(() => GdinoEncoder.load(Params.of(partial).at('gdino.model'), config, stageChannels)).toThrow(`missing weight '${missing}'`);
    expect(() => GdinoEncoder.load(Params.of(weights).at('gdino.model'), config, [24, 48, 96, 100])).toThrow(/input_proj_vision\.2\.0\.weight \[32, 192, 1, 1\] must be \[32, 100, 1, 1\]/);
    const encoder = GdinoEncoder.load(Params.of(weights).at('gdino.model'), config, stageChannels);
    const wide = engine.tensor(new Float32Array(3 * (D + 1)), [3, D + 1]);
    expect(() => encoder.forward(inputs(wide, 3))).toThrow(`text [3, ${D + 1}] must be [tokens, ${D}] (d_model ${D})`);
    const text = engine.tensor(new Float32Array(3 * D), [3, D]);
    expect(() => encoder.forward(inputs(text, 4))).toThrow(/textValid 4 must be an integer in \[1, 3\]/);
    expect(() => encoder.forward({ ...inputs(text, 3), stages: stages.slice(1) })).toThrow(/3 stage maps given for a backbone of 4 stages/);
    expect(() => encoder.forward({ ...inputs(text, 3), pixelMask: { height: 10, width: 10, valid: [11, 5] } })).toThrow(/valid region 11x5 must lie inside the 10x10 input/);
    [wide, text].forEach((t) => t.dispose());
    weights.forEach((w) => w.dispose());
  });

  it('boxSineEmbedding reads the boxes back and uploads the embedding', async () => {
    const boxes = golden.upload(engine, 'box.boxes');
    const emb = await boxSineEmbedding(engine, boxes, D);
    expect(emb.shape).toEqual([boxes.shape[0], 2 * D]);
    expectClose(await emb.toArray(), golden.values('box.embedding'), { rel: 1e-5, label: 'box sine (GPU tensor)' });
    [boxes, emb].forEach((t) => t.dispose());
  });
});
