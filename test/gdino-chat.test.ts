/**
 * Grounding DINO end to end through chat() on the embedded tiny checkpoint (weights/tiny, whose
 * detector scripts/golden/tiny_detector.py adds): a teacher-forced "person[DET], dog[DET]" on a
 * fixture image returns the detections the reference pipeline computes (the tiny MLLM, the super
 * link and the composed detector, in float64), in original pixels; "[SEG]" adds their masks.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandMask, gdino, type GdinoOutput } from '../src/index.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('gdino_tiny');
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'wide.png');
const QUESTION = golden.metadata.question!;
const CASES = JSON.parse(golden.metadata.cases!) as Record<string, { answer: string; topk: number }>;
const [ORI_H, ORI_W] = JSON.parse(golden.metadata.image!).ori as [number, number];

/** Bit i of numpy's packbits (most significant bit first). */
const packedBit = (b: Uint8Array, i: number) => (b[i >> 3]! >> (7 - (i & 7))) & 1;

const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

async function detect(model: VisionLLM, name: string): Promise<{ out: GdinoOutput; dispose: () => void }> {
  const { answer, topk } = CASES[name]!;
  const r = await model.chat({ prompt: QUESTION, image: IMAGE, answer, decoders: { gdino: { topK: topk } } });
  const outs = r.outputsOf(gdino);
  expect(outs).toHaveLength(1);
  return { out: outs[0]!, dispose: () => r.dispose() };
}

describe.each(['cpu', 'gpu'] as const)('Grounding DINO through chat() on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  it('detection: person[DET], dog[DET] gives the reference top-10 in original pixels', async () => {
    const { out, dispose } = await detect(model, 'det');
    try {
      expect(out.task).toBe('detection');
      expect(out.classes).toEqual(['person', 'dog']);
      expectClose(await out.classEmbeddings.toArray(), golden.values('det.class_embeddings'), { rel: TOL.f32, label: 'class embeddings' });
      expect(out.detections.map((d) => d.query)).toEqual(Array.from(golden.values('det.queries')));
      expect(out.detections.map((d) => d.classIndex)).toEqual(Array.from(golden.values('det.labels')));
      expect(out.detections.map((d) => d.label)).toEqual(Array.from(golden.values('det.labels'), (k) => out.classes[k]));
      expectClose(out.detections.map((d) => d.score), golden.values('det.scores'), { rel: TOL.f32, label: 'scores' });
      expectClose(out.detections.flatMap((d) => d.box), golden.values('det.det_boxes'), { rel: TOL.f32, label: 'boxes' });
      expect(out.detections.every((d) => d.mask === undefined)).toBe(true);
      expect(out.timings.encoderMs).toBeGreaterThan(0);
    } finally {
      dispose();
    }
  });

  it('segmentation: person[SEG], dog[SEG] adds the reference masks', async () => {
    const { out, dispose } = await detect(model, 'seg');
    try {
      expect(out.task).toBe('segmentation');
      expect(out.detections.map((d) => d.query)).toEqual(Array.from(golden.values('seg.queries')));
      expectClose(out.detections.flatMap((d) => d.box), golden.values('seg.det_boxes'), { rel: TOL.f32, label: 'boxes' });
      const bits = golden.entry('seg.masks').bytes;
      const near = new Set(golden.values('seg.near'));
      let wrong = 0;
      let area = 0;
      out.detections.forEach((d, i) => {
        expect(d.mask!.size).toEqual([ORI_H, ORI_W]);
        const ours = expandMask(d.mask!);
        for (let p = 0; p < ORI_H * ORI_W; p++) {
          area += ours[p]!;
          if (!near.has(i * ORI_H * ORI_W + p) && ours[p] !== packedBit(bits, i * ORI_H * ORI_W + p)) wrong += 1;
        }
      });
      expect(area, 'the masks are not empty').toBeGreaterThan(0);
      expect(wrong).toBe(0);
    } finally {
      dispose();
    }
  });

  it('without an image there is nothing to detect: no detections, the class embeddings only', async () => {
    const r = await model.chat({ prompt: QUESTION, answer: CASES.det!.answer });
    try {
      const [out] = r.outputsOf(gdino);
      expect(out!.detections).toEqual([]);
      expect(out!.classEmbeddings.shape).toEqual([2, 256]);
    } finally {
      r.dispose();
    }
  });

  it('a bad option is refused by name', async () => {
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, answer: 'dog[DET]', decoders: { gdino: { topK: 0 } } })).rejects.toThrow('chat: decoders.gdino.topK must be a positive integer, got 0');
  });
});

