/**
 * The task helpers (src/tasks/) on the embedded tiny checkpoint: each asks exactly the official
 * test-mode question and answer (the template strings below are copied from the official datasets'
 * files), returns the decoder's results as the same chat() would, relabelled and filtered, in the
 * upright original pixels of a non-square, EXIF-rotated photo; and every option is checked first.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gdino, Mask, unipose } from '../src/index.js';
import { decodeImage, decodeImageFile } from '../src/image/decode.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { detectionConversation, editingConversation, generationConversation, groundingConversation, poseConversation, preprocessCaption, semanticConversation } from '../src/model/tasks/templates.js';
import { ADE20K_CLASSES, COCO_CLASSES, COCO_KEYPOINTS } from '../src/model/tasks/vocabularies.js';
import { TEST_DIR, TINY_WEIGHTS, testEngine } from './helpers.js';

const ROTATED = path.join(TEST_DIR, 'fixtures', 'images', 'rotated.jpg'); // stored 353 x 517, EXIF orientation 6
const [W, H] = [517, 353]; // upright
const F32 = { matrix: 'f32', vector: 'f32', integer: 'i32' } as const;

describe('the official test-mode templates', () => {
  it('detection: coco_llava.py QUESTIONS[0] and YES[0]', () => {
    expect(detectionConversation(['person', 'traffic light'])).toEqual({
      question: 'Can you analyze the image and identify the person, traffic light present?',
      answer: 'Yes, here are the results for person[DET], traffic light[DET] in the image.',
    });
  });

  it('semantic segmentation: ade20k_llava.py, the question lower-cased', () => {
    expect(semanticConversation(['Wall', 'sky'])).toEqual({
      question: 'Could you aid me in generating unique masks for every category present in wall, sky in this image?',
      answer: 'Yes, here are the results for Wall[SEG], sky[SEG] in the image.',
    });
  });

  it('grounding: refcoco_llava.py', () => {
    expect(groundingConversation('man in red')).toEqual({ question: 'Where can we locate the man in red in the image?', answer: 'Yes, it is [GRD].' });
  });

  it('pose: coco_pose_llava.py, the detection turn then the keypoint turn', () => {
    expect(poseConversation(['person'], ['nose', 'left eye'])).toEqual({
      question: 'Can you analyze the image and identify the person present? Can you examine the image and pinpoint the keypoint locations of the nose, left eye?',
      answer: 'Yes, here are the results for person[DET] in the image. Utilizing keypoints detection, the image analysis reveals the location of nose[POSE], left eye[POSE].',
    });
  });

  it('generation and editing: text2img.py and ip2p.py, their captions preprocessed as there', () => {
    expect(generationConversation('A Cat (sitting)  on a mat.')).toEqual({ question: 'Generate image with caption: a cat sitting on a mat.', answer: 'Here it is [GEN].' });
    expect(preprocessCaption('  "Hello"!!  world~ ')).toBe('hello world');
    expect(editingConversation('  Make it Snowy..  ')).toEqual({ question: 'Edit the image according to the caption: make it snowy.', answer: 'Here it is [EDIT].' });
  });

  it('the default vocabularies', () => {
    expect([COCO_CLASSES.length, ADE20K_CLASSES.length, COCO_KEYPOINTS.length]).toEqual([80, 150, 17]);
    expect([COCO_CLASSES[0], COCO_CLASSES[79], ADE20K_CLASSES[7], COCO_KEYPOINTS[16]]).toEqual(['person', 'toothbrush', 'bed ', 'right ankle']);
  });
});

describe('task helpers on weights/tiny', () => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(TINY_WEIGHTS, { engine: await testEngine({ profile: 'cpu' }), policy: F32, cacheDType: 'f32' });
    return () => model.dispose();
  });

  const inImage = (box: readonly number[]) => box[0]! >= 0 && box[1]! >= 0 && box[2]! <= W && box[3]! <= H && box[0]! <= box[2]! && box[1]! <= box[3]!;

  it('detect: what chat() gives for the official conversation, relabelled, thresholded, in upright pixels', async () => {
    const classes = ['person', 'dog', 'bicycle'];
    const r = await model.detect(ROTATED, { classes, topK: 12, threshold: 0 });
    const conversation = detectionConversation(classes);
    expect([r.task, r.prompt, r.width, r.height]).toEqual(['detect', conversation.question, W, H]);
    expect(r.classes).toEqual(classes);
    expect(r.text).toContain('dog');
    const chat = await model.chat({ image: ROTATED, prompt: conversation.question, answer: conversation.answer, decoders: { gdino: { task: 'detection', topK: 12 } } });
    try {
      // The helper clips the boxes to the image; the decoder keeps the official, unclipped ones.
      const clip = (b: number[]) => [Math.max(b[0]!, 0), Math.max(b[1]!, 0), Math.min(b[2]!, W), Math.min(b[3]!, H)];
      const want = chat.outputsOf(gdino)[0]!.detections;
      expect(r.detections.map((d) => [d.query, d.classIndex, d.score, d.box])).toEqual(want.map((d) => [d.query, d.classIndex, d.score, clip(d.box)]));
    } finally {
      chat.dispose();
    }
    expect(r.detections).toHaveLength(12);
    for (const d of r.detections) {
      expect(d.label).toBe(classes[d.classIndex]);
      expect(inImage(d.box), `box ${d.box}`).toBe(true);
      expect(d.mask).toBeUndefined();
    }
    const scores = r.detections.map((d) => d.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    // A threshold keeps the same best-first prefix.
    const median = scores[6]!;
    const kept = await model.detect(ROTATED, { classes, topK: 12, threshold: median });
    expect(kept.detections).toEqual(r.detections.filter((d) => d.score >= median));
    // Plain data: JSON round-trips what matters.
    expect(JSON.parse(JSON.stringify(r)).detections[0].box).toEqual(r.detections[0]!.box);
  });

  it('segment: instance masks as compact RLE of the upright image, and a semantic map', async () => {
    const inst = await model.segment(ROTATED, { classes: ['person', 'car'], topK: 3, threshold: 0 });
    expect([inst.mode, inst.width, inst.height, inst.detections.length]).toEqual(['instance', W, H, 3]);
    for (const d of inst.detections) {
      expect(d.mask).toBeInstanceOf(Mask);
      expect(d.mask!.size).toEqual([H, W]);
      const bits = d.mask!.toBitmap();
      expect(bits.length).toBe(W * H);
      expect(bits.reduce((a, b) => a + b, 0)).toBe(d.mask!.area);
      expect(JSON.parse(JSON.stringify(d.mask))).toEqual({ size: [H, W], counts: d.mask!.counts });
    }
    const sem = await model.segment(ROTATED, { mode: 'semantic', classes: ['sky', 'tree', 'road'] });
    expect(sem.prompt).toBe(semanticConversation(['sky', 'tree', 'road']).question);
    expect([sem.mode, sem.semantic!.width, sem.semantic!.height, sem.detections.length]).toEqual(['semantic', W, H, 0]);
    expect(sem.semantic!.classes.reduce((a, b) => Math.max(a, b), 0)).toBeLessThan(3);
  });

  it('ground: the phrase labels its best box', async () => {
    const r = await model.ground(ROTATED, 'red car');
    expect(r.prompt).toBe('Where can we locate the red car in the image?');
    expect(r.detections).toHaveLength(1);
    expect(r.detections[0]!.label).toBe('red car');
    expect(inImage(r.detections[0]!.box)).toBe(true);
    expect(r.detections[0]!.mask!.size).toEqual([H, W]);
  });

  it('pose: COCO keypoints by name for each person', async () => {
    const r = await model.pose(ROTATED, { threshold: 0, topK: 4 });
    expect(r.prompt).toBe(poseConversation(['person'], COCO_KEYPOINTS).question);
    expect([r.classes, r.keypointNames, r.instances.length]).toEqual([['person'], COCO_KEYPOINTS, 4]);
    const chat = await model.chat({ image: ROTATED, prompt: r.prompt, answer: poseConversation(['person'], COCO_KEYPOINTS).answer, decoders: { unipose: { topK: 4 } } });
    try {
      const xy = (d: { keypoints: { x: number; y: number }[] }) => d.keypoints.map((k) => [k.x, k.y]);
      expect(r.instances.map(xy)).toEqual(chat.outputsOf(unipose)[0]!.instances.map(xy));
    } finally {
      chat.dispose();
    }
    for (const d of r.instances) {
      expect(d.label).toBe('person');
      expect(d.keypoints.map((k) => k.name)).toEqual(COCO_KEYPOINTS);
      expect(d.keypoints.every((k) => Number.isFinite(k.x) && Number.isFinite(k.y))).toBe(true);
    }
  });

  it('generate and edit: one image each, PNG on demand', async () => {
    const steps: number[] = [];
    const g = await model.generate('a red square', { steps: 2, width: 24, height: 16, seed: 3, onStep: (_, done) => steps.push(done) });
    expect([g.task, g.width, g.height, g.image.data.length]).toEqual(['generate', 24, 16, 24 * 16 * 3]);
    expect(steps.length).toBeGreaterThan(0);
    const png = await decodeImage(await g.image.toPNG());
    expect([png.width, png.height]).toEqual([24, 16]);
    expect(JSON.parse(JSON.stringify(g)).image).toEqual({ width: 24, height: 16 });
    const again = await model.generate('a red square', { steps: 2, width: 24, height: 16, seed: 3 });
    expect(Buffer.from(again.image.data).equals(Buffer.from(g.image.data))).toBe(true);
    const small = await decodeImageFile(path.join(TEST_DIR, 'fixtures', 'images', 'small.jpg')); // 83 x 61
    const e = await model.edit(small, 'make it snowy', { steps: 2, seed: 1 });
    expect([e.task, e.prompt, e.width, e.height]).toEqual(['edit', 'Edit the image according to the caption: make it snowy.', 80, 60]);
  });

  it('generate with the default weight policy: f16 mapper queries give an f32 condition', async () => {
    const f16 = await VisionLLM.load(TINY_WEIGHTS, { engine: model.engine });
    try {
      const g = await f16.generate('a red square', { steps: 2, width: 24, height: 16, seed: 3 });
      const ref = await model.generate('a red square', { steps: 2, width: 24, height: 16, seed: 3 });
      let worst = 0;
      for (let i = 0; i < g.image.data.length; i++) worst = Math.max(worst, Math.abs(g.image.data[i]! - ref.image.data[i]!));
      expect(worst).toBeLessThanOrEqual(8); // f16 weights against f32: a few levels
    } finally {
      await f16.dispose();
    }
  });

  it('options are checked before any work, naming the option', async () => {
    await expect(model.detect(ROTATED, { clases: ['x'] } as never)).rejects.toThrow('detect: unknown option(s) clases');
    await expect(model.detect(ROTATED, { threshold: 2 })).rejects.toThrow('detect: options.threshold must be a number in [0, 1], got 2');
    await expect(model.detect(ROTATED, { topK: 0 })).rejects.toThrow('detect: options.topK must be a positive integer, got 0');
    await expect(model.detect(ROTATED, { classes: [] })).rejects.toThrow('detect: options.classes must be a non-empty array');
    await expect(model.detect(ROTATED, { classes: ['cat, dog'] })).rejects.toThrow(`may not hold ','`);
    await expect(model.segment(ROTATED, { mode: 'panoptic' as never })).rejects.toThrow(`segment: options.mode must be 'instance' or 'semantic'`);
    await expect(model.segment(ROTATED, { mode: 'semantic', topK: 3 })).rejects.toThrow('segment: topK and threshold apply to instances');
    await expect(model.ground(ROTATED, '  ')).rejects.toThrow('ground: the phrase must be a non-empty string');
    await expect(model.pose(ROTATED, { keypoints: ['nose', ''] })).rejects.toThrow('pose: options.keypoints[1] must be a non-empty string');
    await expect(model.generate('')).rejects.toThrow('generate: the prompt must be a non-empty string');
    await expect(model.generate('x', { steps: 0 })).rejects.toThrow(/steps/);
    await expect(model.detect(path.join(TEST_DIR, 'fixtures', 'images', 'missing.png'))).rejects.toThrow('missing.png: cannot read');
  });

  it('a checkpoint without the decoder says so', async () => {
    const llama = await VisionLLM.load(path.join(TEST_DIR, 'fixtures', 'tiny-llama'), { engine: model.engine });
    try {
      await expect(llama.detect(ROTATED)).rejects.toThrow('detect: a plain LLaMA checkpoint has no decoders');
    } finally {
      await llama.dispose();
    }
  });
});
