/**
 * UniPose's pose post-processing (decoders.md 2.B, B.4; official eval_pose.py post_process_pose):
 *
 *   p          = sigmoid(logits[:, :K]) flattened; the top min(topk, G·K) (query, class) pairs
 *   box        = cxcywh → xyxy of the query's box, × (W, H) of the original image
 *   keypoints  = the first `names.length` (num_body_points) keypoints' x, y × (W, H), visible = 1
 *
 * No NMS; the official threshold is score > 0, which drops only scores that underflow to 0 (logits
 * below about −103, or −∞ columns). Arithmetic in f32 as torch on f32 outputs.
 */
import { topkScores } from '../gdino/postprocess.js';
import type { PoseOutputs } from './pose-queries.js';

export interface PoseKeypoint {
  name: string;
  /** Original-image pixels. */
  x: number;
  y: number;
  /** Always 1: the official evaluation overwrites the (constant) visibility. */
  visible: number;
}

export interface PoseDetection {
  /** The class's name when labels were given, else its index as text. */
  label: string;
  classIndex: number;
  /** The pose group (0..G-1) it came from. */
  query: number;
  score: number;
  /** [x0, y0, x1, y1] in original pixels. */
  box: [number, number, number, number];
  keypoints: PoseKeypoint[];
}

export interface PoseDetectionOptions {
  /** [h, w] of the original image. */
  oriShape: readonly [number, number];
  /** Names of the prompt's keypoints in order; their count is num_body_points (17 COCO, 14 CrowdPose). */
  keypointNames: readonly string[];
  /** K: the classes in the prompt (default: all logits columns). */
  numClasses?: number;
  /** Kept predictions (default 100). */
  topk?: number;
  /** Names of the K classes. */
  labels?: readonly string[];
}

export function poseDetections(outputs: PoseOutputs, options: PoseDetectionOptions): PoseDetection[] {
  const op = 'unipose poseDetections';
  const G = outputs.boxes.length / 4;
  if (!Number.isInteger(G) || G < 1) throw new RangeError(`${op}: ${outputs.boxes.length} box values are not [G, 4]`);
  const cols = outputs.logits.length / G;
  if (!Number.isInteger(cols) || cols < 1) throw new RangeError(`${op}: ${outputs.logits.length} logits for ${G} queries`);
  const m = outputs.keypoints.length / (3 * G);
  if (!Number.isInteger(m)) throw new RangeError(`${op}: ${outputs.keypoints.length} keypoint values are not [${G}, 3·m]`);
  const names = options.keypointNames;
  if (names.length > m) throw new RangeError(`${op}: ${names.length} keypoint names for ${m} keypoint slots`);
  const K = options.numClasses ?? cols;
  if (options.labels && options.labels.length !== K) throw new RangeError(`${op}: ${options.labels.length} labels for ${K} classes`);
  const [oh, ow] = options.oriShape;
  if (!(Number.isInteger(oh) && Number.isInteger(ow) && oh > 0 && ow > 0)) throw new RangeError(`${op}: oriShape [${oh}, ${ow}] must be [h, w] of positive integers`);
  const f = Math.fround;
  const top = topkScores(outputs.logits, G, cols, K, options.topk ?? 100).filter((t) => t.score > 0);
  return top.map(({ query, classIndex, score }) => {
    const [cx, cy, w, h] = outputs.boxes.subarray(query * 4, query * 4 + 4) as unknown as [number, number, number, number];
    const hw = f(0.5 * w);
    const hh = f(0.5 * h);
    const box: [number, number, number, number] = [f(f(cx - hw) * ow), f(f(cy - hh) * oh), f(f(cx + hw) * ow), f(f(cy + hh) * oh)];
    const row = query * 3 * m;
    const keypoints = names.map((name, j) => ({ name, x: f(outputs.keypoints[row + 2 * j]! * ow), y: f(outputs.keypoints[row + 2 * j + 1]! * oh), visible: 1 }));
    return { label: options.labels?.[classIndex] ?? String(classIndex), classIndex, query, score, box, keypoints };
  });
}
