/**
 * The miniature's recorded answers about the committed ShapesWorld pictures
 * (test/fixtures/miniature-answers.json): written by scripts/record-miniature-answers.ts, checked
 * by test/miniature.test.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Rle } from '../../src/image/mask.js';
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { VisionLLM } from '../../src/model/vision-llm.js';
import { DIFFUSION_STEPS, editingInput, turnText } from './decoder-eval.js';
import type { WorldTurn } from './scoring.js';

/** A detection as recorded: boxes in original pixels, masks as RLE where the call gives them. */
export interface RecordedDetection {
  label: string;
  score: number;
  box: number[];
  mask?: Rle;
}

/** A pose instance as recorded: its box and its keypoints' [x, y], in original pixels. */
export interface RecordedPose {
  label: string;
  score: number;
  box: number[];
  keypoints: number[][];
}

/** A generated or edited picture as recorded: its RGB bytes, base64. */
export interface RecordedImage {
  text: string;
  width: number;
  height: number;
  rgb: string;
}

/** What the decoders give for one picture, through the task API, where the checkpoint has them. */
export interface RecordedResults {
  /** detect(image): the checkpoint's classes, threshold 0.3. */
  detect?: RecordedDetection[];
  /** segment(image): the same, with masks. */
  segment?: RecordedDetection[];
  /** ground(image, phrase) for the picture's first grounding expression, when it has one. */
  ground?: { phrase: string; detections: RecordedDetection[] };
  /** pose(image, { topK: POSE_KEPT, threshold: 0 }): the best instances, whatever they score, so keypoints are always recorded. */
  pose?: RecordedPose[];
  /** generate(caption) of the picture's generation turn, seed 0, DIFFUSION_STEPS steps. */
  generate?: RecordedImage;
  /** edit(the picture at the editor's size, instruction) of its editing turn, when it has one; seed 0, DIFFUSION_STEPS steps. */
  edit?: RecordedImage;
}

const POSE_KEPT = 2;

export interface RecordedAnswers {
  /** The checkpoint directory, relative to the project root. */
  weights: string;
  /** weightsDigest() of that checkpoint when the answers were recorded. */
  sha256: string;
  pictures: { file: string; turns: (WorldTurn & { got: string; right: boolean })[]; results?: RecordedResults }[];
}

/** The task API's results about one picture, as recorded and as the test compares them. */
export async function decoderResults(model: VisionLLM, image: RgbImage, turns: readonly WorldTurn[]): Promise<RecordedResults> {
  const plain = (detections: readonly { label: string; score: number; box: readonly number[]; mask?: Rle }[]) =>
    detections.map(({ label, score, box, mask }) => ({ label, score, box: [...box], ...(mask ? { mask: { size: mask.size, counts: mask.counts } } : {}) }));
  const results: RecordedResults = {};
  if (model.decoderNames.includes('gdino')) {
    results.detect = plain((await model.detect(image)).detections);
    results.segment = plain((await model.segment(image)).detections);
    const phrase = turns.find((t) => t.type === 'grounding')?.phrases?.[0];
    if (phrase) results.ground = { phrase, detections: plain((await model.ground(image, phrase)).detections) };
  }
  if (model.decoderNames.includes('unipose')) {
    const posed = await model.pose(image, { topK: POSE_KEPT, threshold: 0 });
    results.pose = posed.instances.map(({ label, score, box, keypoints }) => ({ label, score, box: [...box], keypoints: keypoints.map((k) => [k.x, k.y]) }));
  }
  const recorded = (text: string, { width, height, data }: RgbImage): RecordedImage => ({ text, width, height, rgb: Buffer.from(data).toString('base64') });
  const generation = turns.find((t) => t.type === 'generation');
  if (model.decoderNames.includes('sd') && generation) {
    const caption = turnText(generation);
    results.generate = recorded(caption, (await model.generate(caption, { seed: 0, steps: DIFFUSION_STEPS })).image);
  }
  const editing = turns.find((t) => t.type === 'editing');
  if (model.decoderNames.includes('ip2p') && editing) {
    const instruction = turnText(editing);
    results.edit = recorded(instruction, (await model.edit(await editingInput(image), instruction, { seed: 0, steps: DIFFUSION_STEPS })).image);
  }
  return results;
}

/** Whether the checkpoint has a decoder whose results are recorded. */
export function recordsResults(model: VisionLLM): boolean {
  return model.decoderNames.some((name) => ['gdino', 'unipose', 'sd', 'ip2p'].includes(name));
}

export function recordedAnswersFile(root: string): string {
  return path.join(root, 'test', 'fixtures', 'miniature-answers.json');
}

/** A checkpoint's identity: the digest of its weights file. */
export function weightsDigest(weights: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(path.join(weights, 'model.safetensors'))).digest('hex');
}
