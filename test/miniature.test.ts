/**
 * The embedded default, the miniature trained on ShapesWorld (weights/miniature, docs/miniature.md),
 * end to end through chat(): about the committed ShapesWorld pictures it gives exactly the answers
 * scripts/record-miniature-answers.ts recorded (greedy decoding, each question alone, as
 * `npm run eval:tiny` asks), right or wrong; which of them are right is in the recording. Where it
 * has a detector, detect(), segment() and ground() give the recorded boxes, scores and masks; where
 * it has UniPose, pose() gives the recorded boxes, scores and keypoints; where it has SD and IP2P,
 * generate() and edit() draw the recorded pictures; all within what another CPU's rounding may move them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisionLLM } from '../src/model/vision-llm.js';
import { askAlone, turnRegions } from '../scripts/eval/ask.js';
import { maskIou } from '../scripts/eval/detection-metrics.js';
import { decoderResults, recordedAnswersFile, weightsDigest, type RecordedAnswers, type RecordedDetection, type RecordedImage, type RecordedPose } from '../scripts/eval/recorded-answers.js';
import { isRight } from '../scripts/eval/scoring.js';
import { TEST_DIR, testEngine } from './helpers.js';

const ROOT = path.join(TEST_DIR, '..');
const recorded = JSON.parse(fs.readFileSync(recordedAnswersFile(ROOT), 'utf8')) as RecordedAnswers;
const WEIGHTS = path.join(ROOT, recorded.weights);
const BOX_PIXELS = 0.5;
const SCORE = 2e-3;
const MASK_IOU = 0.98;
// A picture's levels: on average within one, and nearly all within a few (denoising carries rounding along).
const MEAN_LEVELS = 1;
const MOST_LEVELS = 4;
const MOST_SHARE = 0.99;

function expectImage(got: RecordedImage | undefined, want: RecordedImage | undefined, what: string): void {
  expect(got?.text, `${what}: its text`).toBe(want?.text);
  if (!want) return;
  expect([got!.width, got!.height], `${what}: its size`).toEqual([want.width, want.height]);
  const [a, b] = [Buffer.from(got!.rgb, 'base64'), Buffer.from(want.rgb, 'base64')];
  expect(a.length, `${what}: its bytes`).toBe(b.length);
  let sum = 0;
  let most = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d <= MOST_LEVELS) most++;
  }
  expect(sum / a.length, `${what}: mean level difference`).toBeLessThanOrEqual(MEAN_LEVELS);
  expect(most / a.length, `${what}: share within ${MOST_LEVELS} levels`).toBeGreaterThanOrEqual(MOST_SHARE);
}

function expectRecorded(got: (RecordedDetection | RecordedPose)[] = [], want: (RecordedDetection | RecordedPose)[] = [], what: string): void {
  expect(got.map((d) => d.label), what).toEqual(want.map((d) => d.label));
  got.forEach((d, i) => {
    const w = want[i]!;
    expect(Math.abs(d.score - w.score), `${what} ${i}: score ${d.score}, recorded ${w.score}`).toBeLessThanOrEqual(SCORE);
    const off = Math.max(...d.box.map((v, k) => Math.abs(v - w.box[k]!)));
    expect(off, `${what} ${i}: box [${d.box}], recorded [${w.box}]`).toBeLessThanOrEqual(BOX_PIXELS);
    if ('mask' in w && w.mask) expect(maskIou((d as RecordedDetection).mask!, w.mask), `${what} ${i}: mask`).toBeGreaterThanOrEqual(MASK_IOU);
    if ('keypoints' in w) {
      const points = (d as RecordedPose).keypoints;
      expect(points, `${what} ${i}: keypoints`).toHaveLength(w.keypoints.length);
      const moved = Math.max(...points.flatMap((p, k) => p.map((v, j) => Math.abs(v - w.keypoints[k]![j]!))));
      expect(moved, `${what} ${i}: keypoints moved by up to ${moved} pixels`).toBeLessThanOrEqual(BOX_PIXELS);
    }
  });
}

describe(`the miniature (${recorded.weights}) on the committed ShapesWorld pictures`, () => {
  let model: VisionLLM;
  beforeAll(async () => {
    model = await VisionLLM.load(WEIGHTS, { engine: await testEngine() });
  }, 120_000);
  afterAll(() => model?.dispose());

  it('is the checkpoint the answers were recorded from', () => {
    const why = `${recorded.weights} changed since the answers were recorded: run \`npm run record:tiny\` and review the difference`;
    expect(weightsDigest(WEIGHTS), why).toBe(recorded.sha256);
  });

  it('has recorded a question of every type, scored as the evaluation scores them', () => {
    const turns = recorded.pictures.flatMap((p) => p.turns);
    expect(new Set(turns.map((t) => t.type)).size).toBeGreaterThanOrEqual(10);
    expect(turns.map((t) => isRight(t, t.got))).toEqual(turns.map((t) => t.right));
  });

  it.each(recorded.pictures.map((p) => [p.file, p.turns] as const))('%s: the answers are the recorded ones', async (file, turns) => {
    const image = await model.readImage(path.join(TEST_DIR, 'fixtures', 'shapesworld', file));
    const got: string[] = [];
    for (const turn of turns) got.push(await askAlone(model, image, turn.question, turnRegions(turn)));
    expect(got).toEqual(turns.map((t) => t.got));
  }, 60_000);

  const withResults = recorded.pictures.filter((p) => p.results);
  // detect() and segment() keep what scores 0.3 or more, which may be nothing (the committed detector's
  // best scores are about 0.2); ground() always gives its best box and mask.
  it.runIf(withResults.length > 0)('has recorded decoder results for every picture, masks and keypoints among them', () => {
    expect(withResults).toHaveLength(recorded.pictures.length);
    const detections = withResults.flatMap((p) => [...(p.results!.detect ?? []), ...(p.results!.segment ?? []), ...(p.results!.ground?.detections ?? [])]);
    if (model.decoderNames.includes('gdino')) expect(detections.some((d) => d.mask)).toBe(true);
    if (model.decoderNames.includes('unipose')) expect(withResults.every((p) => p.results!.pose?.[0]?.keypoints.length === 17)).toBe(true);
    if (model.decoderNames.includes('sd')) expect(withResults.every((p) => p.results!.generate)).toBe(true);
    if (model.decoderNames.includes('ip2p')) expect(withResults.some((p) => p.results!.edit)).toBe(true);
  });

  it.each(withResults.map((p) => [p.file, p.turns, p.results!] as const))('%s: the task calls give the recorded results', async (file, turns, results) => {
    const image = await model.readImage(path.join(TEST_DIR, 'fixtures', 'shapesworld', file));
    const got = await decoderResults(model, image, turns);
    expectRecorded(got.detect, results.detect, 'detect');
    expectRecorded(got.segment, results.segment, 'segment');
    expect(got.ground?.phrase).toBe(results.ground?.phrase);
    if (results.ground) expectRecorded(got.ground!.detections, results.ground.detections, 'ground');
    expectRecorded(got.pose, results.pose, 'pose');
    expectImage(got.generate, results.generate, 'generate');
    expectImage(got.edit, results.edit, 'edit');
  }, 120_000);
});
