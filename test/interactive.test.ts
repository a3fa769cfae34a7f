/**
 * Interactive segmentation end to end on the embedded tiny checkpoint (model.segment, interactive.ts)
 * against scripts/golden/interactive_tiny.py: two box regions on a fixture image, the official
 * coco_interactive.py question and answer, the regions' embeddings spliced over their `<region>`
 * tokens, the answer's two [DET] blocks as Grounding DINO's classes, and its instance segmentation
 * (the reference's top-10, masks exact except at pixels within 1e-3 of the threshold).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandMask, gdino } from '../src/index.js';
import { interactiveAnswer, interactiveQuestion } from '../src/model/interactive.js';
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
    expect(interactiveQuestion(2)).toBe(golden.metadata.question);
    expect(interactiveAnswer(2)).toBe(golden.metadata.answer);
  });
});

describe.each(['cpu', 'gpu'] as const)('model.segment with regions on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  it('two box regions: the reference classes, top-10 instances and masks', async () => {
    const r = await model.segment(IMAGE, { regions: BOXES.map((box) => ({ box })), topK: TOPK });
    try {
      const [out] = r.outputsOf(gdino);
      expect(out!.task).toBe('segmentation');
      expect(out!.classes).toEqual(['region1', 'region2']);
      expectClose(await out!.classEmbeddings.toArray(), golden.values('class_embeddings'), { rel: TOL.f32, label: 'class embeddings (with the regions spliced)' });
      const d = out!.detections;
      expect(d.map((x) => x.query)).toEqual(Array.from(golden.values('queries')));
      expect(d.map((x) => x.label)).toEqual(Array.from(golden.values('labels'), (k) => `region${k + 1}`));
      expectClose(d.map((x) => x.score), golden.values('scores'), { rel: TOL.f32, label: 'scores' });
      expectClose(d.flatMap((x) => x.box), golden.values('det_boxes'), { rel: TOL.f32, label: 'boxes' });
      const bits = golden.entry('masks').bytes;
      const near = new Set(golden.values('near'));
      let wrong = 0;
      d.forEach((x, i) => {
        const ours = expandMask(x.mask!);
        for (let p = 0; p < H * W; p++) if (!near.has(i * H * W + p) && ours[p] !== packedBit(bits, i * H * W + p)) wrong += 1;
      });
      expect(wrong).toBe(0);
    } finally {
      r.dispose();
    }
  });

  it('segment() checks its options', async () => {
    await expect(model.segment(IMAGE, { regions: [] })).rejects.toThrow('segment: options.regions must be a non-empty array');
    await expect(model.segment(IMAGE, { regions: [{ box: BOXES[0]! }], answer: 'maybe' as never })).rejects.toThrow("segment: options.answer must be 'template' or 'generate'");
  });
});
