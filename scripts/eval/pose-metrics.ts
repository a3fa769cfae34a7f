/**
 * Pose on ShapesWorld: PCK@0.1 of the person's height. Each picture's pose instances (best first)
 * are matched one to one to its people, greedily as the instance masks are (matchGreedily): each
 * instance takes the unmatched person its box overlaps most at box IoU >= 0.5. A matched person's
 * keypoint is right when the instance's keypoint of the same name lies within a tenth of the
 * person's nominal height (ShapesWorld's figure_height) of it; every keypoint of an unmatched person
 * is wrong.
 */
import { matchGreedily, type Box } from './detection-metrics.js';

export const PCK_FRACTION = 0.1;
const MATCH_IOU = 0.5;

export interface Person {
  box: Box;
  /** [x, y, visibility] in COCO order, original pixels. */
  keypoints: [number, number, number][];
  figure_height: number;
}

export interface PoseInstance {
  box: Box;
  keypoints: { name: string; x: number; y: number }[];
}

export interface PckTally {
  /** Keypoints of every person scored, and how many were right. */
  keypoints: number;
  right: number;
  people: number;
  matched: number;
}

export function emptyPck(): PckTally {
  return { keypoints: 0, right: 0, people: 0, matched: 0 };
}

/** Adds one picture's people to the tally; `names` are the keypoints' names in the annotation's order. */
export function scorePose(instances: readonly PoseInstance[], people: readonly Person[], names: readonly string[], tally: PckTally): void {
  const owner = new Map(matchGreedily(instances, people, MATCH_IOU).map(([k, i]) => [i, instances[k]!]));
  people.forEach((person, i) => {
    if (person.keypoints.length !== names.length) throw new Error(`pose eval: a person has ${person.keypoints.length} keypoints, expected ${names.length}`);
    tally.people++;
    tally.keypoints += names.length;
    const instance = owner.get(i);
    if (!instance) return;
    tally.matched++;
    names.forEach((name, k) => {
      const found = instance.keypoints.find((p) => p.name === name);
      const [x, y] = person.keypoints[k]!;
      if (found && Math.hypot(found.x - x, found.y - y) <= PCK_FRACTION * person.figure_height) tally.right++;
    });
  });
}
