/**
 * Interactive segmentation end to end on the embedded tiny checkpoint (model.segment, interactive.ts)
 * against scripts/golden/interactive_tiny.py: two box regions on a fixture image, the official
 * coco_interactive.py question and answer, the regions' embeddings spliced over their `<region>`
 * tokens, the answer's two [DET] blocks as Grounding DINO's classes, and its instance segmentation
 * (the reference's top-10, masks exact except at pixels within 1e-3 of the threshold).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gdino } from '../src/index.js';
import { regionsConversation } from '../src/model/tasks/templates.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('interactive_tiny');
const info = JSON.parse(golden.metadata.image!) as { ori: [number, number] };
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'scene.png');
const BOXES = Object.values(JSON.parse(golden.metadata.boxes!) as Record<string, [number, number, number, number]>);
const TOPK = Number(golden.metadata.topk);
const [H, W] = info.ori;
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

/** Bit i of numpy's packbits (most significant bit first). */
const packedBit = (b: Uint8Array, i: number) => (b[i >> 3]! >> (7 - (i & 7))) & 1;

describe('the official interactive templates', () => {
  it('question and answer for two regions', () => {
    expect(regionsConversation(2)).toEqual({ question: golden.metadata.question, answer: golden.metadata.answer });
  });
});

describe.each(['cpu', 'gpu'] as const)('model.segment with regions on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  // The GPU profile's chat path is the same as segment()'s below, which checks it; once is enough for the embeddings.
  it.skipIf(profile === 'gpu')('two box regions: the reference class embeddings (the official prompt through chat)', async () => {
    const regions = BOXES.map((box) => ({ box }));
    const { question, answer } = regionsConversation(2);
    const r = await model.chat({ image: IMAGE, prompt: question, answer, regions, decoders: { gdino: { task: 'segmentation', topK: TOPK } } });
    try {
      const [out] = r.outputsOf(gdino);
      expect(out!.task).toBe('segmentation');
      expectClose(await out!.classEmbeddings.toArray(), golden.values('class_embeddings'), { rel: TOL.f32, label: 'class embeddings (with the regions spliced)' });
    } finally {
      r.dispose();
    }
  });

  it('segment({ regions }): the reference top-10 instances and masks, named region1, region2', async () => {
    const r = await model.segment(IMAGE, { regions: BOXES.map((box) => ({ box })), topK: TOPK });
    expect(r.mode).toBe('regions');
    expect(r.classes).toEqual(['region1', 'region2']);
    expect(r.prompt).toBe(regionsConversation(2).question);
    const d = r.detections;
    expect(d.map((x) => x.query)).toEqual(Array.from(golden.values('queries')));
    expect(d.map((x) => x.label)).toEqual(Array.from(golden.values('labels'), (k) => `region${k + 1}`));
    expectClose(d.map((x) => x.score), golden.values('scores'), { rel: TOL.f32, label: 'scores' });
    // The helpers clip boxes to the image; the reference keeps the official, unclipped ones.
    const clipped = Array.from(golden.values('det_boxes'), (v, i) => Math.min(Math.max(v, 0), i % 2 ? H : W));
    expectClose(d.flatMap((x) => x.box), clipped, { rel: TOL.f32, label: 'boxes' });
    const bits = golden.entry('masks').bytes;
    const near = new Set(golden.values('near'));
    let wrong = 0;
    d.forEach((x, i) => {
      const ours = x.mask!.toBitmap();
      for (let p = 0; p < H * W; p++) if (!near.has(i * H * W + p) && ours[p] !== packedBit(bits, i * H * W + p)) wrong += 1;
    });
    expect(wrong).toBe(0);
  });

  it('segment() checks its options', async () => {
    await expect(model.segment(IMAGE, { regions: [] })).rejects.toThrow('segment: options.regions must be a non-empty array');
    await expect(model.segment(IMAGE, { regions: [{ box: BOXES[0]! }], answer: 'maybe' as never })).rejects.toThrow("segment: options.answer must be 'template' or 'generate'");
  });
});
