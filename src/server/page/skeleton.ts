/**
 * COCO's person skeleton as pairs of keypoint names (the same limbs as src/model/tasks/vocabularies.ts,
 * which the browser code cannot import): head, arms, legs, and the torso joining them.
 */
const COCO_LIMBS: readonly (readonly [string, string])[] = [
  ['nose', 'left eye'], ['nose', 'right eye'], ['left eye', 'right eye'], ['left eye', 'left ear'], ['right eye', 'right ear'],
  ['left ear', 'left shoulder'], ['right ear', 'right shoulder'],
  ['left shoulder', 'left elbow'], ['left elbow', 'left wrist'], ['right shoulder', 'right elbow'], ['right elbow', 'right wrist'],
  ['left shoulder', 'right shoulder'], ['left shoulder', 'left hip'], ['right shoulder', 'right hip'], ['left hip', 'right hip'],
  ['left hip', 'left knee'], ['left knee', 'left ankle'], ['right hip', 'right knee'], ['right knee', 'right ankle'],
];

/** 'left_shoulder', 'Left Shoulder' and 'left shoulder' are one keypoint. */
export function keypointKey(name: string): string {
  return name.toLowerCase().replace(/[_-]/g, ' ').trim();
}

/** The limbs whose two ends are both among `names`. */
export function limbsBetween(names: Iterable<string>): (readonly [string, string])[] {
  const present = new Set([...names].map(keypointKey));
  return COCO_LIMBS.filter(([a, b]) => present.has(a) && present.has(b));
}
