/**
 * UniPose's encoder side and a box-phase decoder layer are Grounding DINO's modules under UniPose's
 * names (src/decoders/unipose/names.ts): GdinoEncoder and GdinoDecoderLayer loaded with UNIPOSE_NAMES
 * against scripts/golden/unipose_encoder.py (UniPose's official classes at a tiny config, float64),
 * on both kernel profiles, with f32 and f16 weights, for K = 1 and 3 object tokens.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { DType } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { ConfigReader } from '../src/io/config-reader.js';
import { Mlp } from '../src/nn/mlp.js';
import { Params } from '../src/nn/params.js';
import { parseGdinoConfig } from '../src/decoders/gdino/config.js';
import { GdinoDecoderLayer } from '../src/decoders/gdino/decoder.js';
import { GdinoEncoder, type GdinoEncoderInputs } from '../src/decoders/gdino/encoder.js';
import { layerScope } from '../src/decoders/gdino/names.js';
import { boxSineValues, type PixelMask } from '../src/decoders/gdino/position.js';
import { UNIPOSE_NAMES } from '../src/decoders/unipose/names.js';
import { TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('unipose_encoder');
const raw = JSON.parse(golden.metadata.config!) as Record<string, number>;
const channels = JSON.parse(golden.metadata.backbone_channels!) as number[];
const image = JSON.parse(golden.metadata.image!) as { height: number; width: number; valid: [number, number] };
const spatialShapes = JSON.parse(golden.metadata.spatial_shapes!) as [number, number][];
const levelStart = JSON.parse(golden.metadata.level_start_index!) as number[];
const textCases = JSON.parse(golden.metadata.text_cases!) as { tag: string; K: number }[];
const DEC_TEXT = golden.metadata.decoder_text!;
const PREFIX = golden.metadata.prefix!;
// UniPoseConfig's keys as GdinoConfig's (decoders.md B.1).
const config = parseGdinoConfig(
  new ConfigReader('unipose_encoder golden', {
    d_model: raw.hidden_dim,
    encoder_layers: raw.enc_layers,
    decoder_layers: raw.dec_layers,
    encoder_attention_heads: raw.nheads,
    decoder_attention_heads: raw.nheads,
    encoder_ffn_dim: raw.dim_feedforward,
    decoder_ffn_dim: raw.dim_feedforward,
    num_feature_levels: raw.num_feature_levels,
    encoder_n_points: raw.enc_n_points,
    decoder_n_points: raw.dec_n_points,
    num_queries: raw.num_queries,
    positional_embedding_temperature: raw.pe_temperatureH,
    backbone_config: { embed_dim: 24 },
  }),
);
const D = config.dModel;
const Q = config.numQueries;
const L = config.numFeatureLevels;
const LAYERS = config.encoderLayers;
const pixelMask: PixelMask = { height: image.height, width: image.width, valid: image.valid };

/** The golden's weights under UniPose's names, uploaded as f32 or f16; the scope `unipose`. */
function weights(engine: Engine, dtype: DType, drop = ''): Params {
  const m = new Map<string, Tensor>();
  for (const [name, t] of golden.tensors) {
    if (name.startsWith(PREFIX) && name !== drop) m.set(name, engine.tensor(golden.values(name), t.shape, dtype));
  }
  return Params.of(m, 'unipose golden').at('unipose');
}

describe.each(['cpu', 'gpu'] as const)('Grounding DINO modules under UniPose names, %s profile', (profile) => {
  let engine: Engine;
  let stages: Tensor[];
  beforeAll(async () => {
    engine = await testEngine({ profile });
    stages = channels.map((_, i) => golden.upload(engine, `input.stage${i + 1}`));
  });

  const inputs = (text: Tensor): GdinoEncoderInputs => ({ stages, pixelMask, text });

  it.each([['f32', TOL.f32], ['f16', TOL.f16]] as const)('%s weights: the encoder, every layer, K = 1 and 3', async (dtype, tol) => {
    const p = weights(engine, dtype);
    const encoder = GdinoEncoder.load(p, config, channels, { names: UNIPOSE_NAMES });
    for (const { tag, K } of textCases) {
      const text = golden.upload(engine, `${tag}.text_in`);
      const s = encoder.prepare(inputs(text));
      expect(s.spatialShapes).toEqual(spatialShapes);
      expect(s.levelStartIndex).toEqual(levelStart);
      expect(Array.from(s.paddingMask, (v) => 1 - v)).toEqual(Array.from(golden.values('mask_flatten')));
      if (tag === 'k1') {
        expectClose(s.validRatios.flat(), golden.values('valid_ratios'), { rel: 1e-7, label: 'valid ratios' });
        expectClose(await s.sources.toArray(), golden.values('sources'), { rel: tol, label: 'sources' });
        expectClose(await s.lvlPos.toArray(), golden.values('lvl_pos'), { rel: tol, label: 'lvl_pos' });
      }
      let vision = s.sources;
      let t = text;
      for (let i = 0; i < LAYERS; i++) {
        const next = encoder.layer(i, vision, t, s);
        expectClose(await next.vision.toArray(), golden.values(`${tag}.layer${i}.vision`), { rel: tol, label: `${tag} layer ${i} vision (${dtype})` });
        expectClose(await next.text.toArray(), golden.values(`${tag}.layer${i}.text`), { rel: tol, label: `${tag} layer ${i} text (${dtype})` });
        if (vision !== s.sources) vision.dispose();
        if (t !== text) t.dispose();
        ({ vision, text: t } = next);
      }
      expect(t.shape).toEqual([K, D]);
      [vision, t, s.sources, s.lvlPos, s.referencePoints, s.paddingTensor, s.visionPadBias, s.textPadBias, s.textSelfMask, s.textPos].forEach((x) => x?.dispose());
      text.dispose();
    }
    p.weights.dispose();
  });

  it.each([['f32', TOL.f32], ['f16', TOL.f16]] as const)('%s weights: one box-phase decoder layer (30 queries, also with self and text masks), its query position and norm', async (dtype, tol) => {
    const p = weights(engine, dtype);
    // Everything under unipose.* is read by the encoder, the decoder layer and the decoder's head and norm.
    GdinoEncoder.load(p, config, channels, { names: UNIPOSE_NAMES });
    const layer = GdinoDecoderLayer.load(layerScope(p, UNIPOSE_NAMES.decoder.layer, 0), config, UNIPOSE_NAMES.decoderLayer, { valueDtype: dtype });
    const refPointHead = Mlp.gdino(p.at(UNIPOSE_NAMES.decoder.refPointHead), [2 * D, D, D]);
    const norm = p.layerNorm(UNIPOSE_NAMES.decoder.norm, D, config.layerNormEps);
    expect(p.weights.unused(PREFIX)).toEqual([]);

    const ratios = golden.values('valid_ratios');
    const ref = golden.values('dec.reference');
    const refIn = new Float32Array(Q * L * 4);
    for (let q = 0; q < Q; q++) for (let l = 0; l < L; l++) for (let c = 0; c < 4; c++) refIn[(q * L + l) * 4 + c] = ref[q * 4 + c]! * ratios[2 * l + (c % 2)]!;
    const level0 = new Float32Array(Q * 4);
    for (let q = 0; q < Q; q++) level0.set(refIn.subarray(q * L * 4, q * L * 4 + 4), q * 4);
    const valid = golden.values('mask_flatten');
    const N = valid.length;
    const minusInf = (flags: ArrayLike<number>) => Float32Array.from(flags, (f) => (f ? -Infinity : 0));
    const { pos, out, hidden, masked } = engine.scope(() => {
      const pos = refPointHead.forward(engine.tensor(boxSineValues(level0, D), [Q, 2 * D]));
      const text = golden.upload(engine, `${DEC_TEXT}.layer${LAYERS - 1}.text`);
      const K = text.shape[0]!;
      const x = {
        queryPos: pos,
        referencePoints: engine.tensor(refIn, [1, Q, L, 4]),
        memory: golden.upload(engine, `${DEC_TEXT}.layer${LAYERS - 1}.vision`).reshape([1, N, D]),
        paddingMask: engine.tensor(Float32Array.from(valid, (v) => 1 - v), [1, N]),
        spatialShapes,
        levelStartIndex: levelStart,
        text,
      };
      const out = layer.forward(golden.upload(engine, 'dec.tgt'), x);
      // With a self-attention mask (the pose phase's attn_mask2 kind) and the last text token as padding.
      const masked = layer.forward(golden.upload(engine, 'dec.tgt'), {
        ...x,
        selfAttnMask: engine.tensor(minusInf(golden.values('dec.self_blocked')), [1, 1, Q, Q]),
        textMask: engine.tensor(minusInf(Array.from({ length: K }, (_, k) => Number(k === K - 1))), [1, 1, 1, K]),
      });
      return { pos, out, hidden: norm.forward(out), masked };
    });
    expectClose(await pos.toArray(), golden.values('dec.query_pos'), { rel: tol, label: `query position (${dtype})` });
    expectClose(await out.toArray(), golden.values('dec.out'), { rel: tol, label: `decoder layer 0 (${dtype})` });
    expectClose(await hidden.toArray(), golden.values('dec.hidden'), { rel: tol, label: `decoder norm (${dtype})` });
    expectClose(await masked.toArray(), golden.values('dec.out_masked'), { rel: tol, label: `decoder layer 0 with masks (${dtype})` });
    [pos, out, hidden, masked].forEach((t) => t.dispose());
    p.weights.dispose();
  });

  it("errors name UniPose's tensors", () => {
    const fusion = `${PREFIX}transformer.encoder.fusion_layers.1.attn.values_l_proj.weight`;
    const partial = weights(engine, 'f32', fusion);
    expect(() => GdinoEncoder.load(partial, config, channels, { names: UNIPOSE_NAMES })).toThrow(`missing weight '${fusion}'`);
    partial.weights.dispose();
    const text = `${PREFIX}transformer.encoder.text_layers.0.norm1.bias`;
    const noText = weights(engine, 'f32', text);
    expect(() => GdinoEncoder.load(noText, config, channels, { names: UNIPOSE_NAMES })).toThrow(`missing weight '${text}'`);
    noText.weights.dispose();
    const p = weights(engine, 'f32');
    expect(() => GdinoEncoder.load(p, config, [48, 100, 192], { names: UNIPOSE_NAMES })).toThrow(/unipose\.input_proj\.1\.0\.weight \[32, 96, 1, 1\] must be \[32, 100, 1, 1\]/);
    p.weights.dispose();
    const caText = `${PREFIX}transformer.decoder.layers.0.ca_text.in_proj_weight`;
    const noCaText = weights(engine, 'f32', caText);
    expect(() => GdinoDecoderLayer.load(layerScope(noCaText, UNIPOSE_NAMES.decoder.layer, 0), config, UNIPOSE_NAMES.decoderLayer)).toThrow(`missing weight '${caText}'`);
    noCaText.weights.dispose();
  });
});
