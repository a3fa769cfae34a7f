/**
 * Decoder outputs as the server returns them (src/server/decoder-json.ts): a teacher-forced chat on
 * weights/tiny routes "person[DET]" and "person[SEG]" to Grounding DINO, whose output becomes plain
 * JSON (no tensors, masks as RLE); a semantic map becomes one RLE per class and a generated image
 * base64 PNG, both read back here to the same pixels.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toJson } from '../src/cli/write-output.js';
import type { DecoderOutput } from '../src/decoders/decoder.js';
import { decodeImage } from '../src/image/decode.js';
import { expandMask } from '../src/image/mask.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { Picture } from '../src/model/tasks/results.js';
import { decoderResultJson, semanticJson } from '../src/server/decoder-json.js';
import { TEST_DIR, TINY_WEIGHTS } from './helpers.js';

const IMAGE = path.join(TEST_DIR, 'fixtures', 'images', 'wide.png');

let model: VisionLLM;
beforeAll(async () => {
  model = await VisionLLM.load(TINY_WEIGHTS);
});
afterAll(() => model.dispose());

describe('Grounding DINO outputs of a chat', () => {
  it('person[DET]: the plain fields, boxes in pixels, no tensors', async () => {
    const result = await model.chat({ prompt: 'Please detect the person in the image.', image: IMAGE, answer: 'person[DET]' });
    try {
      expect(result.outputs).toHaveLength(1);
      const out = result.outputs[0] as DecoderOutput & { detections: { label: string; score: number; box: number[] }[] };
      const json = await decoderResultJson(out);
      expect(JSON.parse(JSON.stringify(json))).toEqual(json); // plain JSON already
      expect(json).toMatchObject({ decoder: 'gdino', task: 'detection', tokens: ['[DET]'], phrases: ['person'], classes: ['person'] });
      expect(json).not.toHaveProperty('classEmbeddings');
      expect(json).not.toHaveProperty('dispose');
      const detections = json.detections as { label: string; score: number; box: number[] }[];
      expect(detections.length).toBeGreaterThan(0);
      expect(detections).toEqual(out.detections.map((d) => ({ ...d })));
    } finally {
      result.dispose();
    }
  });

  it('person[SEG]: each mask as COCO RLE over the original image', async () => {
    const result = await model.chat({ prompt: 'Please segment the person in the image.', image: IMAGE, answer: 'person[SEG]' });
    try {
      const json = await decoderResultJson(result.outputs[0]!);
      const image = await model.readImage(IMAGE);
      const detections = json.detections as { mask: { size: [number, number]; counts: number[] } }[];
      expect(detections.length).toBeGreaterThan(0);
      for (const { mask } of detections) {
        expect(Object.keys(mask).sort()).toEqual(['counts', 'size']);
        expect(mask.size).toEqual([image.height, image.width]);
        expect(mask.counts.reduce((a, b) => a + b, 0)).toBe(image.width * image.height);
      }
    } finally {
      result.dispose();
    }
  });
});

describe('maps and images', () => {
  it('a semantic map: one RLE per class present, which expands back to the map', () => {
    const [width, height] = [5, 3];
    const classes = Uint32Array.from({ length: width * height }, (_, i) => [0, 2, 2, 7][(i * 7) % 4]!);
    const { segments } = semanticJson({ width, height, classes }, ['sky', 'tree', 'grass']);
    expect(segments.map((s) => [s.classIndex, s.label])).toEqual([[0, 'sky'], [2, 'grass'], [7, '7']]);
    const rebuilt = new Uint32Array(width * height).fill(99);
    for (const s of segments) expandMask(s.mask).forEach((inside, i) => inside && (rebuilt[i] = s.classIndex));
    expect(Array.from(rebuilt)).toEqual(Array.from(classes));
  });

  it('a gdino semantic output: the map as segments, not a number per pixel', async () => {
    const output = { decoder: 'gdino', task: 'semantic', tokens: [], phrases: [], classes: ['a', 'b'], detections: [], semantic: { width: 2, height: 2, classes: Uint32Array.of(0, 1, 1, 1) }, dispose() {} };
    const json = await decoderResultJson(output);
    expect(json.semantic).toEqual({ width: 2, height: 2, segments: [
      { classIndex: 0, label: 'a', mask: { size: [2, 2], counts: [0, 1, 3] } },
      { classIndex: 1, label: 'b', mask: { size: [2, 2], counts: [1, 3] } },
    ] });
  });

  it('generated images as base64 PNG with the same pixels', async () => {
    const data = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const output = { decoder: 'sd', task: 'generation', tokens: ['[GEN]'], phrases: ['a cat'], images: [{ width: 4, height: 3, data }], dispose() {} };
    const json = await decoderResultJson(output);
    const [png] = json.images as { width: number; height: number; png: string }[];
    expect(png).toMatchObject({ width: 4, height: 3 });
    const decoded = await decodeImage(Buffer.from(png!.png, 'base64'));
    expect(Array.from(decoded.data)).toEqual(Array.from(data));
  });

  it("the CLI's --json keeps writing an image as its size and typed arrays as arrays", () => {
    const picture = new Picture(2, 1, new Uint8Array(6));
    expect(JSON.parse(toJson({ image: picture, raw: { width: 1, height: 1, data: new Uint8Array(3) }, map: Uint32Array.of(1, 2), f: () => 1 })))
      .toEqual({ image: { width: 2, height: 1 }, raw: { width: 1, height: 1 }, map: [1, 2] });
  });
});
