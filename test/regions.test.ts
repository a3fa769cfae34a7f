/**
 * `<region>` prompts through chat() on the embedded tiny checkpoint (weights/tiny, whose region
 * encoder scripts/golden/tiny_region.py adds) against scripts/golden/tiny_region.py: a box on a
 * fixture image becomes the official box mask over the global CLIP tile, the region encoder's
 * embedding replaces the `<region>` token's, and the teacher-forced logits at that position and at
 * the last one match the reference (which also shows the splice changed them). The region rules of
 * src/model/regions.ts, and the errors.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { VisionLLM } from '../src/model/vision-llm.js';
import { regionMask } from '../src/model/regions.js';
import { TEST_DIR, TINY_WEIGHTS, TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('region_tiny');
const image = JSON.parse(golden.metadata.image!) as { file: string; ori: [number, number]; tile: [number, number] };
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', image.file);
const QUESTION = golden.metadata.question!;
const BOX = (JSON.parse(golden.metadata.box!) as { xyxy: [number, number, number, number] }).xyxy;
const [H, W] = image.ori;
const S = image.tile[0];
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

describe('region masks over the global tile', () => {
  it('a box: the official refcoco rule (scaled, clamped, truncated, inclusive)', () => {
    const mask = regionMask({ box: BOX }, { width: W, height: H }, S);
    expect(Array.from(mask.data)).toEqual(Array.from(golden.values('mask')));
  });

  it('a box past the image clamps to the tile; a point marks one pixel; a mask is resized bilinearly', () => {
    const all = regionMask({ box: [-10, -10, W + 10, H + 10] }, { width: W, height: H }, S);
    expect(all.data.every((v) => v === 1)).toBe(true);
    const point = regionMask({ points: [[W / 2, H / 2]] }, { width: W, height: H }, S);
    expect(point.data.reduce((a, b) => a + b, 0)).toBe(1);
    expect(point.data[168 * S + 168]).toBe(1);
    const half = regionMask({ mask: { width: 4, height: 2, data: [1, 1, 0, 0, 1, 1, 0, 0] } }, { width: 4, height: 2 }, 8);
    // Bilinear from 4 to 8 columns: columns 0..4 touch the inside (column 4 reads 0.25 of pixel 1), 5..7 do not.
    expect(Array.from(half.data.subarray(0, 8))).toEqual([1, 1, 1, 1, 1, 0, 0, 0]);
  });
});

describe.each(['cpu', 'gpu'] as const)('<region> prompts through chat() on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  it('a box region: its embedding replaces <region>, and the logits match the reference', async () => {
    const { ids, embeds } = await model.promptEmbeddings({ prompt: QUESTION, image: IMAGE, regions: [{ box: BOX }] });
    expect(ids).toEqual(Array.from(golden.values('prompt_ids')));
    const at = golden.values('region_position')[0]!;
    const engine = model.engine;
    const cache = model.llm.newCache({ maxLength: ids.length, dtype: 'f32' });
    const logits = engine.scope(() => {
      const hidden = model.llm.forward(embeds, cache);
      return [model.llm.logits(hidden.rows(at, at + 1)), model.llm.logits(hidden.rows(ids.length - 1, ids.length))];
    });
    const [atRegion, last] = await Promise.all(logits.map(async (t) => (await t.toArray()) as Float32Array));
    [embeds, cache, ...logits].forEach((t) => t.dispose());
    const want = golden.values('logits_region');
    const raw = golden.values('raw.logits_region');
    expectClose(atRegion!, want, { rel: TOL.f32, label: 'logits at <region>' });
    expectClose(last!, golden.values('logits_last'), { rel: TOL.f32, label: 'logits at the last prompt position' });
    let moved = 0;
    for (let i = 0; i < want.length; i++) moved = Math.max(moved, Math.abs(want[i]! - raw[i]!));
    expect(moved, 'the splice moves the logits at <region> far beyond the tolerance').toBeGreaterThan(100 * TOL.f32 * Math.max(...Array.from(want, Math.abs)));
  });

  it('a chat with a region answers', async () => {
    const r = await model.chat({ prompt: QUESTION, image: IMAGE, regions: [{ box: BOX }], maxNewTokens: 4 });
    expect(r.tokenIds.length).toBeGreaterThan(0);
    r.dispose();
  });

  it('errors: a count mismatch, no image, a malformed region', async () => {
    await expect(model.chat({ prompt: QUESTION, image: IMAGE })).rejects.toThrow('chat: 0 regions for 1 <region> token in the prompt; give one region per <region>, in order');
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, regions: [{ box: BOX }, { box: BOX }] })).rejects.toThrow('chat: 2 regions for 1 <region> token');
    await expect(model.chat({ prompt: QUESTION, regions: [{ box: BOX }] })).rejects.toThrow('chat: regions point into an image, and no image was given');
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, regions: [{ box: [5, 5, 1, 1] }] })).rejects.toThrow('chat: regions[0].box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1');
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, regions: [{ circle: 1 } as never] })).rejects.toThrow('chat: regions[0] must be one of { box');
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, regions: [{ mask: { width: 2, height: 2, data: [1, 0, 0, 1] } }] })).rejects.toThrow(`chat: regions[0].mask is 2x2; the image is ${W}x${H}`);
  });
});

