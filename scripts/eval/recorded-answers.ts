/**
 * The miniature's recorded answers about the committed ShapesWorld pictures
 * (test/fixtures/miniature-answers.json): written by scripts/record-miniature-answers.ts, checked
 * by test/miniature.test.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { WorldTurn } from './scoring.js';

export interface RecordedAnswers {
  /** The checkpoint directory, relative to the project root. */
  weights: string;
  /** weightsDigest() of that checkpoint when the answers were recorded. */
  sha256: string;
  pictures: { file: string; turns: (WorldTurn & { got: string; right: boolean })[] }[];
}

export function recordedAnswersFile(root: string): string {
  return path.join(root, 'test', 'fixtures', 'miniature-answers.json');
}

/** A checkpoint's identity: the digest of its weights file. */
export function weightsDigest(weights: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(path.join(weights, 'model.safetensors'))).digest('hex');
}
