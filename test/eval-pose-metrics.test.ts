/**
 * The evaluation's pose measure (scripts/eval/pose-metrics.ts): PCK@0.1 of the person's height, on
 * cases worked out by hand.
 */
import { describe, expect, it } from 'vitest';
import type { Box } from '../scripts/eval/detection-metrics.js';
import { emptyPck, scorePose, type Person } from '../scripts/eval/pose-metrics.js';

const NAMES = ['nose', 'left eye', 'right eye'];

function person(box: Box, height: number, points: [number, number][]): Person {
  return { box, figure_height: height, keypoints: points.map(([x, y]) => [x, y, 2] as [number, number, number]) };
}

function instance(box: Box, points: [number, number][], names = NAMES) {
  return { box, keypoints: points.map(([x, y], i) => ({ name: names[i]!, x, y })) };
}

describe('pose PCK', () => {
  it('counts a keypoint right within a tenth of the height, wrong beyond it', () => {
    const tally = emptyPck();
    // Height 100: the threshold is 10 pixels. Off by 6-8 (distance 10): right; off by 11: wrong; exact: right.
    scorePose([instance([0, 0, 50, 100], [[16, 18], [30, 20], [40, 40]])], [person([0, 0, 50, 100], 100, [[10, 10], [30, 31], [40, 40]])], NAMES, tally);
    expect(tally).toEqual({ keypoints: 3, right: 2, people: 1, matched: 1 });
  });

  it('matches instances one to one, best first, at box IoU >= 0.5', () => {
    const tally = emptyPck();
    const a = person([0, 0, 50, 100], 100, [[10, 10], [20, 10], [30, 10]]);
    const b = person([200, 0, 250, 100], 100, [[210, 10], [220, 10], [230, 10]]);
    // The first instance takes a (the only one it overlaps); the second overlaps a too but a is taken; the third
    // overlaps b at IoU 1/3 only, so b is unmatched and its keypoints all count as wrong.
    scorePose([
      instance([0, 0, 50, 100], [[10, 10], [20, 10], [30, 10]]),
      instance([0, 0, 50, 100], [[210, 10], [220, 10], [230, 10]]),
      instance([225, 0, 275, 100], [[210, 10], [220, 10], [230, 10]]),
    ], [a, b], NAMES, tally);
    expect(tally).toEqual({ keypoints: 6, right: 3, people: 2, matched: 1 });
  });

  it('finds keypoints by name and scores a picture without people as nothing', () => {
    const tally = emptyPck();
    const shuffled = instance([0, 0, 50, 100], [[30, 10], [10, 10], [20, 10]], ['right eye', 'nose', 'left eye']);
    scorePose([shuffled], [person([0, 0, 50, 100], 100, [[10, 10], [20, 10], [30, 10]])], NAMES, tally);
    scorePose([shuffled], [], NAMES, tally);
    expect(tally).toEqual({ keypoints: 3, right: 3, people: 1, matched: 1 });
  });

  it('names a person whose keypoints do not match the names', () => {
    expect(() => scorePose([], [person([0, 0, 1, 1], 1, [[0, 0]])], NAMES, emptyPck())).toThrow(/1 keypoints, expected 3/);
  });
});
