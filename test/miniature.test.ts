/**
 * The embedded default, the miniature trained on ShapesWorld (weights/miniature, docs/miniature.md),
 * end to end through chat(): about the committed ShapesWorld pictures it gives exactly the answers
 * scripts/record-miniature-answers.ts recorded (greedy decoding, each question alone, as
 * `npm run eval:tiny` asks), right or wrong; which of them are right is in the recording.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisionLLM } from '../src/model/vision-llm.js';
import { askAlone } from '../scripts/eval/ask.js';
import { recordedAnswersFile, weightsDigest, type RecordedAnswers } from '../scripts/eval/recorded-answers.js';
import { isRight } from '../scripts/eval/scoring.js';
import { TEST_DIR, testEngine } from './helpers.js';

const ROOT = path.join(TEST_DIR, '..');
const recorded = JSON.parse(fs.readFileSync(recordedAnswersFile(ROOT), 'utf8')) as RecordedAnswers;
const WEIGHTS = path.join(ROOT, recorded.weights);

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
    for (const turn of turns) got.push(await askAlone(model, image, turn.question));
    expect(got).toEqual(turns.map((t) => t.got));
  }, 60_000);
});
