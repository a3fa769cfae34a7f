import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { CLIP_MEAN, CLIP_STD } from '../src/image/preprocess.js';
import { promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import { generate } from '../src/model/generate.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS as TINY, expectClose, loadGolden, referenceModel, type Golden } from './helpers.js';

const golden = loadGolden('mllm');
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;
/** The issue's tolerance: max |error| <= 1e-3 of the logits' scale, in f32. */
const LOGIT_TOL = 1e-3;

/** PIL's uint8 tiles [n, 336, 336, 3] -> CLIP-normalised [n, 3, 336, 336] f32, as CLIPImageProcessor does. */
function pixelsFromTiles(engine: Engine, g: Golden, name: string): Tensor {
  const { shape, bytes } = g.entry(`${name}.tiles_u8`);
  const [n, h, w] = shape as [number, number, number, number];
  const out = new Float32Array(n * 3 * h * w);
  for (let t = 0; t < n; t++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < h * w; i++) {
        const v = Math.fround(bytes[(t * h * w + i) * 3 + c]! / 255);
        out[((t * 3 + c) * h * w) + i] = Math.fround(Math.fround(v - CLIP_MEAN[c]!) / CLIP_STD[c]!);
      }
    }
  }
  return engine.tensor(out, [n, 3, h, w]);
}

/** Per row: the 5 largest values (descending), their ids, and log-sum-exp. */
function fingerprint(logits: Float32Array, vocab: number) {
  const rows = logits.length / vocab;
  const top = new Float32Array(rows * 5);
  const ids = new Int32Array(rows * 5);
  const lse = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    const order = [...row.keys()].sort((a, b) => row[b]! - row[a]!).slice(0, 5);
    order.forEach((id, k) => ((top[r * 5 + k] = row[id]!), (ids[r * 5 + k] = id)));
    const m = row[order[0]!]!;
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    lse[r] = m + Math.log(s);
  }
  return { top, ids, lse };
}

describe('VisionLLM v2 (tiny checkpoint) against the PyTorch reference', () => {
  let engine: Engine;
  let model: VisionLLM;
  beforeAll(async () => {
    ({ engine, model } = await referenceModel());
  });

  describe.each(['wide', 'square'])('%s image', (name) => {
    const tiles = golden.shape(`${name}.tiles_u8`)[0]!;

    it(`vision features per tile and projected tokens (${tiles} tile(s))`, async () => {
      const { tower, projector } = model.vision!;
      const pixels = pixelsFromTiles(engine, golden, name);
      const feats = tower.features(pixels, -2);
      expect(feats.shape).toEqual([tiles, 576, 64]);
      const proj = projector.forward(feats);
      const rows = Array.from(golden.values(`${name}.feature_rows`));
      const pick = async (t: Tensor, width: number) => {
        const all = await t.toArray();
        const out: number[] = [];
        for (let tile = 0; tile < tiles; tile++) for (const r of rows) out.push(...all.subarray((tile * 576 + r) * width, (tile * 576 + r + 1) * width));
        return out;
      };
      expectClose(await pick(feats, 64), golden.values(`${name}.features`), { rel: 1e-4, label: 'CLIP features (layer -2)' });
      expectClose(await pick(proj, 128), golden.values(`${name}.projected`), { rel: 1e-4, label: 'vl_bridge tokens' });
      [pixels, feats, proj].forEach((t) => t.dispose());
    });

    it('logits at every prompt position, and 20 greedy tokens', async () => {
      const { tower, projector } = model.vision!;
      const ids = Array.from(golden.values(`${name}.prompt_ids`));
      expect(promptIds(model.tokenizer, vicunaPrompt(`<image>\n${golden.metadata.question}`), tiles * 576)).toEqual(ids);
      const pixels = pixelsFromTiles(engine, golden, name);
      const features = engine.scope(() => projector.forward(tower.features(pixels, -2)).reshape([-1, 128]));
      const embeds = model.llm.embed(ids);
      const first = ids.indexOf(model.tokenizer.tokenToId('<im_patch>')!);
      engine.copyBytes(features, 0, embeds, first * 128 * 4, features.byteLength);

      const cache = model.llm.newCache({ maxLength: ids.length + 32, dtype: 'f32' });
      const logits = engine.scope(() => model.llm.logits(model.llm.forward(embeds, cache)));
      const values = (await logits.toArray()) as Float32Array;
      const vocab = model.config.llm.vocabSize;
      const got = fingerprint(values, vocab);
      const scale = Math.max(...Array.from(golden.values(`${name}.top5_values`)).map(Math.abs));
      expectClose(got.top, golden.values(`${name}.top5_values`), { rel: LOGIT_TOL, label: 'top-5 logits, every position' });
      expectClose(got.lse, golden.values(`${name}.logsumexp`), { rel: (LOGIT_TOL * scale) / Math.max(...Array.from(golden.values(`${name}.logsumexp`)).map(Math.abs)), label: 'log-sum-exp, every position' });
      const sampled = Array.from(golden.values(`${name}.sample_positions`));
      const rowsGot = sampled.flatMap((p) => Array.from(values.subarray(p * vocab, (p + 1) * vocab)));
      expectClose(rowsGot, golden.values(`${name}.sample_logits`), { rel: LOGIT_TOL, label: 'whole logit rows' });
      // Top-1 ids must agree wherever the reference's top two are not within the tolerance.
      const refTop = golden.values(`${name}.top5_values`);
      const refIds = golden.values(`${name}.top5_ids`);
      for (let r = 0; r < ids.length; r++) {
        if (refTop[r * 5]! - refTop[r * 5 + 1]! > 2 * LOGIT_TOL * scale) expect(got.ids[r * 5], `argmax at position ${r}`).toBe(refIds[r * 5]);
      }

      cache.truncate(0);
      const result = await generate(model.llm, cache, embeds, { maxNewTokens: 20 });
      expect(result.tokenIds).toEqual(Array.from(golden.values(`${name}.greedy_ids`)));
      [pixels, features, embeds, logits].forEach((t) => t.dispose());
      cache.dispose();
    });

    it('chat() from the image file gives the reference tokens', async () => {
      const file = path.join(TEST_DIR, 'fixtures', 'images', `${name}.png`);
      const streamed: string[] = [];
      const result = await model.chat({ image: file, prompt: golden.metadata.question!, maxNewTokens: 20, onToken: (t) => streamed.push(t) });
      expect(result.tokenIds).toEqual(Array.from(golden.values(`${name}.greedy_ids`)));
      expect(result.timings.imageTiles).toBe(tiles);
      expect(result.timings.promptTokens).toBe(golden.shape(`${name}.prompt_ids`)[0]);
      expect(streamed.join('').trim()).toBe(result.text);
    });
  });

  it('rejects prompts that do not fit the context, and <image> without an image', async () => {
    const small = await VisionLLM.load(TINY, { engine, policy: F32, contextLength: 600 });
    await expect(small.chat({ prompt: 'hi', image: path.join(TEST_DIR, 'fixtures', 'images', 'square.png') })).rejects.toThrow(/prompt needs 729 positions, and the context holds 600/);
    await expect(small.chat({ prompt: 'what is <image>?' })).rejects.toThrow(/contains <image> but no image was given/);
    small.dispose();
  });
});
