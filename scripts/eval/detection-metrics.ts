/**
 * Detection and mask metrics as pycocotools' COCOeval computes them for bounding boxes (area range
 * all, 100 detections an image): per class and IoU threshold, detections of every image in score
 * order each take the unmatched ground truth they overlap most (IoU at least the threshold); the
 * precision envelope is read at 101 recall points and averaged. AP50 is the 0.5 threshold, AP50:95
 * the mean over 0.50, 0.55, ..., 0.95. Boxes are [x0, y0, x1, y1] in continuous pixels.
 */
import { expandMask, type Rle } from '../../src/image/mask.js';

export type Box = readonly [number, number, number, number];

export interface ScoredBox {
  image: number;
  classIndex: number;
  score: number;
  box: Box;
}

export interface TruthBox {
  image: number;
  classIndex: number;
  box: Box;
}

export const IOU_THRESHOLDS = Array.from({ length: 10 }, (_, i) => 0.5 + 0.05 * i);
const RECALL_POINTS = Array.from({ length: 101 }, (_, i) => i / 100);
const MAX_DETECTIONS = 100;

export function boxIou(a: Box, b: Box): number {
  const iw = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/**
 * One-to-one matching as the evaluation matches masks and poses: each found item, in order (best
 * first), takes the unmatched truth its box overlaps most at box IoU >= `minIou` (`fits` rules
 * pairs out, as a class that differs). Returns [found, truth] index pairs, in the found items' order.
 */
export function matchGreedily(found: readonly { box: Box }[], truths: readonly { box: Box }[], minIou: number,
                              fits: (found: number, truth: number) => boolean = () => true): [number, number][] {
  const taken = new Set<number>();
  const pairs: [number, number][] = [];
  found.forEach((f, k) => {
    let best = -1;
    let bestIou = minIou;
    truths.forEach((t, i) => {
      if (taken.has(i) || !fits(k, i)) return;
      const iou = boxIou(f.box, t.box);
      if (iou >= bestIou) {
        bestIou = iou;
        best = i;
      }
    });
    if (best < 0) return;
    taken.add(best);
    pairs.push([k, best]);
  });
  return pairs;
}

/** Average precision of one class at one IoU threshold; NaN when the class has no ground truth. */
export function averagePrecision(detections: readonly ScoredBox[], truths: readonly TruthBox[], threshold: number): number {
  if (truths.length === 0) return NaN;
  const byImage = new Map<number, { box: Box; taken: boolean }[]>();
  for (const t of truths) {
    const list = byImage.get(t.image) ?? [];
    list.push({ box: t.box, taken: false });
    byImage.set(t.image, list);
  }
  const kept = keepBest(detections);
  const hits = kept.map((d) => {
    let best = -1;
    let bestIou = Math.min(threshold, 1 - 1e-10);
    const candidates = byImage.get(d.image) ?? [];
    candidates.forEach((t, i) => {
      if (t.taken) return;
      const iou = boxIou(d.box, t.box);
      if (iou >= bestIou) {
        bestIou = iou;
        best = i;
      }
    });
    if (best >= 0) candidates[best]!.taken = true;
    return best >= 0;
  });
  const precision: number[] = [];
  const recall: number[] = [];
  let tp = 0;
  hits.forEach((hit, i) => {
    if (hit) tp++;
    precision.push(tp / (i + 1));
    recall.push(tp / truths.length);
  });
  for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
  let sum = 0;
  for (const r of RECALL_POINTS) {
    const at = recall.findIndex((v) => v >= r);
    sum += at >= 0 ? precision[at]! : 0;
  }
  return sum / RECALL_POINTS.length;
}

/** The best MAX_DETECTIONS of each image, then all in descending score (stable, as COCOeval's mergesort). */
function keepBest(detections: readonly ScoredBox[]): ScoredBox[] {
  const byImage = new Map<number, ScoredBox[]>();
  for (const d of detections) byImage.set(d.image, [...(byImage.get(d.image) ?? []), d]);
  const kept = [...byImage.values()].flatMap((list) => stableDescending(list).slice(0, MAX_DETECTIONS));
  return stableDescending(kept);
}

function stableDescending(list: readonly ScoredBox[]): ScoredBox[] {
  return list.map((d, i) => ({ d, i })).sort((a, b) => b.d.score - a.d.score || a.i - b.i).map((x) => x.d);
}

export interface ClassAp {
  ap50: number;
  ap5095: number;
  truths: number;
}

/** AP50 and AP50:95 of each class index in 0..classes-1. */
export function classAps(detections: readonly ScoredBox[], truths: readonly TruthBox[], classes: number): ClassAp[] {
  return Array.from({ length: classes }, (_, c) => {
    const d = detections.filter((x) => x.classIndex === c);
    const t = truths.filter((x) => x.classIndex === c);
    const aps = IOU_THRESHOLDS.map((th) => averagePrecision(d, t, th));
    return { ap50: aps[0]!, ap5095: aps.reduce((a, b) => a + b, 0) / aps.length, truths: t.length };
  });
}

/** Intersection over union of two masks of the same size (0 when both are empty). */
export function maskIou(a: Rle, b: Rle): number {
  if (a.size[0] !== b.size[0] || a.size[1] !== b.size[1]) {
    throw new RangeError(`maskIou: masks of ${a.size.join('x')} and ${b.size.join('x')} differ in size`);
  }
  const x = expandMask(a);
  const y = expandMask(b);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < x.length; i++) {
    inter += x[i]! & y[i]!;
    union += x[i]! | y[i]!;
  }
  return union ? inter / union : 0;
}
