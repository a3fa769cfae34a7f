/**
 * UniPose end to end through chat() on the embedded tiny checkpoint (weights/tiny, whose pose decoder
 * scripts/golden/tiny_pose.py adds): a teacher-forced official-format pose answer (the person as a
 * [DET] block, the 17 COCO keypoints as [POSE] blocks) on a fixture image returns the instances the
 * reference pipeline computes (the tiny MLLM, the super link and the composed UniPose, in float64),
 * with boxes and named keypoints in original pixels.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { unipose } from '../src/index.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { TEST_DIR, TINY_WEIGHTS, TOL, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('unipose_tiny');
const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', JSON.parse(golden.metadata.image!).file as string);
const QUESTION = golden.metadata.question!;
const ANSWER = golden.metadata.answer!;
const KEYPOINTS = JSON.parse(golden.metadata.keypoint_names!) as string[];
const TOPK = Number(golden.metadata.topk);
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

describe.each(['cpu', 'gpu'] as const)('UniPose through chat() on weights/tiny, %s kernels', (profile) => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  it('a pose answer gives the reference instances: boxes and named keypoints in original pixels', async () => {
    const r = await model.chat({ prompt: QUESTION, image: IMAGE, answer: ANSWER, decoders: { unipose: { topK: TOPK } } });
    try {
      const outs = r.outputsOf(unipose);
      expect(outs).toHaveLength(1);
      const out = outs[0]!;
      expect(out.task).toBe('pose');
      expect(out.objects).toEqual(['There is person']);
      expect(out.keypointNames.map((n) => n.replace(/^.* of /, ''))).toEqual(KEYPOINTS);
      expectClose(await out.objectEmbeddings.toArray(), golden.values('objects'), { rel: TOL.f32, label: 'objects' });
      expectClose(await out.keypointEmbeddings.toArray(), golden.values('keypoint_text').subarray(0, KEYPOINTS.length * 256), { rel: TOL.f32, label: 'keypoints' });
      const instances = out.instances;
      expect(instances.map((d) => d.query)).toEqual(Array.from(golden.values('queries')));
      expect(instances.map((d) => d.label)).toEqual(Array.from(golden.values('labels'), (k) => out.objects[k]));
      expectClose(instances.map((d) => d.score), golden.values('scores'), { rel: TOL.f32, label: 'scores' });
      expectClose(instances.flatMap((d) => d.box), golden.values('det_boxes'), { rel: TOL.f32, label: 'boxes' });
      expectClose(instances.flatMap((d) => d.keypoints.flatMap((k) => [k.x, k.y, k.visible])), golden.values('det_keypoints'), { rel: TOL.f32, label: 'keypoints' });
      expect(instances[0]!.keypoints.map((k) => k.name)).toEqual(out.keypointNames);
      expect(out.timings.posePhaseMs).toBeGreaterThan(0);
    } finally {
      r.dispose();
    }
  });

  it('without an image there is nothing to find: no instances, the projected text only', async () => {
    const r = await model.chat({ prompt: QUESTION, answer: ANSWER });
    try {
      const [out] = r.outputsOf(unipose);
      expect(out!.instances).toEqual([]);
      expect(out!.objectEmbeddings.shape).toEqual([1, 256]);
      expect(out!.keypointEmbeddings.shape).toEqual([KEYPOINTS.length, 256]);
    } finally {
      r.dispose();
    }
  });

  it('a bad option is refused by name', async () => {
    await expect(model.chat({ prompt: QUESTION, image: IMAGE, answer: ANSWER, decoders: { unipose: { topK: 1.5 } } })).rejects.toThrow('chat: decoders.unipose.topK must be a positive integer, got 1.5');
  });
});
