/**
 * The evaluation's detection metrics (scripts/eval/detection-metrics.ts) on cases small enough to
 * work out by hand, following pycocotools' COCOeval: greedy matching in score order, the precision
 * envelope read at 101 recall points.
 */
import { describe, expect, it } from 'vitest';
import { averagePrecision, boxIou, classAps, maskIou, matchGreedily, type Box } from '../scripts/eval/detection-metrics.js';
import { Mask } from '../src/image/mask.js';

const det = (image: number, score: number, box: Box, classIndex = 0) => ({ image, score, box, classIndex });
const truth = (image: number, box: Box, classIndex = 0) => ({ image, box, classIndex });

describe('detection metrics', () => {
  it('measures box overlap in continuous pixels', () => {
    expect(boxIou([0, 0, 10, 10], [0, 0, 10, 10])).toBe(1);
    expect(boxIou([0, 0, 10, 10], [5, 0, 15, 10])).toBeCloseTo(50 / 150, 12);
    expect(boxIou([0, 0, 10, 10], [10, 0, 20, 10])).toBe(0);
  });

  it('matches one to one, best first, each to the free truth it overlaps most, where the pair fits', () => {
    const truths = [{ box: [0, 0, 10, 10] as Box }, { box: [2, 0, 12, 10] as Box }, { box: [50, 50, 60, 60] as Box }];
    // The first takes truth 1 (IoU 1 against 2/3); the second then takes truth 0; the third overlaps nothing at 0.5.
    const found = [{ box: [2, 0, 12, 10] as Box }, { box: [2, 0, 12, 10] as Box }, { box: [55, 50, 65, 60] as Box }];
    expect(matchGreedily(found, truths, 0.5)).toEqual([[0, 1], [1, 0]]);
    // Ruling truth 1 out for the first: it takes truth 0, and the second takes truth 1.
    expect(matchGreedily(found, truths, 0.5, (f, t) => !(f === 0 && t === 1))).toEqual([[0, 0], [1, 1]]);
  });

  it('gives 1 to perfect detections and NaN to a class without ground truth', () => {
    const truths = [truth(0, [0, 0, 10, 10]), truth(1, [5, 5, 20, 20])];
    expect(averagePrecision([det(0, 0.9, [0, 0, 10, 10]), det(1, 0.8, [5, 5, 20, 20])], truths, 0.5)).toBe(1);
    expect(averagePrecision([det(0, 0.9, [0, 0, 10, 10])], [], 0.5)).toBeNaN();
  });

  it('reads the precision envelope at 101 recall points', () => {
    const truths = [truth(0, [0, 0, 10, 10]), truth(0, [20, 20, 30, 30])];
    // One of two found at precision 1: recall points 0 .. 0.5 (51 of 101) score 1.
    expect(averagePrecision([det(0, 0.9, [0, 0, 10, 10]), det(0, 0.8, [50, 50, 60, 60])], truths, 0.5)).toBeCloseTo(51 / 101, 12);
    // A false positive above the only hit: precision 1/2 everywhere.
    expect(averagePrecision([det(0, 0.9, [50, 50, 60, 60]), det(0, 0.8, [0, 0, 10, 10])], [truths[0]!], 0.5)).toBeCloseTo(0.5, 12);
  });

  it('matches each truth once, and only at the threshold or above', () => {
    const truths = [truth(0, [0, 0, 10, 10])];
    // A duplicate of the hit is a false positive after it: precision stays 1 up to recall 1.
    expect(averagePrecision([det(0, 0.9, [0, 0, 10, 10]), det(0, 0.8, [0, 0, 10, 10])], truths, 0.5)).toBe(1);
    const half = det(0, 0.9, [0, 0, 10, 5]); // IoU exactly 0.5
    expect(averagePrecision([half], truths, 0.5)).toBe(1);
    expect(averagePrecision([half], truths, 0.55)).toBe(0);
    // Detections in another image never match.
    expect(averagePrecision([det(1, 0.9, [0, 0, 10, 10])], truths, 0.5)).toBe(0);
  });

  it('averages AP50:95 over ten thresholds, per class', () => {
    const truths = [truth(0, [0, 0, 10, 10]), truth(0, [0, 0, 10, 10], 1)];
    const aps = classAps([det(0, 0.9, [0, 0, 10, 7]), det(0, 0.9, [0, 0, 10, 10], 1)], truths, 3); // IoU 0.7 for class 0
    expect(aps[0]!.ap50).toBe(1);
    expect(aps[0]!.ap5095).toBeCloseTo(5 / 10, 12); // thresholds 0.50 .. 0.70 (5 of 10) pass
    expect(aps[1]!.ap5095).toBe(1);
    expect(aps[2]!.ap50).toBeNaN();
  });

  it('measures mask overlap on RLE masks and refuses different sizes', () => {
    const a = Mask.fromBitmap([1, 1, 0, 0, 1, 1], 3, 2);
    const b = Mask.fromBitmap([1, 0, 0, 0, 1, 1], 3, 2);
    expect(maskIou(a, b)).toBeCloseTo(3 / 4, 12);
    expect(maskIou(a, a)).toBe(1);
    expect(() => maskIou(a, Mask.fromBitmap([1, 1], 2, 1))).toThrow(/differ in size/);
  });
});
