/**
 * The miniature's decoders on ShapesWorld, through the public task API only (detect, segment,
 * ground), against the pictures' exact annotations:
 *   - detection: AP50 and AP50:95 per class (detect() asked for all five classes in every picture,
 *     top 100, no threshold);
 *   - instance masks: the mean mask IoU of segment()'s detections (score >= 0.3) matched one to one to
 *     ground truth of their class at box IoU >= 0.5, and how many objects were matched;
 *   - referring segmentation: the mean IoU of ground()'s mask with the named object's mask (0 when it
 *     finds nothing), for each picture's grounding expression.
 *   - pose: PCK@0.1 of the person's height of pose()'s instances in the pictures with people
 *     (scripts/eval/pose-metrics.ts), where the checkpoint has UniPose.
 * Masks are the objects' visible pixels, as ShapesWorld annotates them. Each part runs where the
 * checkpoint has its decoder.
 */
import fs from 'node:fs';
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { Rle } from '../../src/image/mask.js';
import type { VisionLLM } from '../../src/model/vision-llm.js';
import { classAps, maskIou, matchGreedily, type Box, type ClassAp, type ScoredBox, type TruthBox } from './detection-metrics.js';
import { emptyPck, PCK_FRACTION, scorePose, type PckTally, type Person } from './pose-metrics.js';
import type { WorldTurn } from './scoring.js';

export const WORLD_CLASSES = ['circle', 'square', 'triangle', 'star', 'person'];
export const AP50_GOAL = 0.8;
export const REFERRING_GOAL = 0.75;
export const PCK_GOAL = 0.7;
const MASK_SCORE = 0.3;
const MATCH_IOU = 0.5;
const MASKED_AT_MOST = 20;

export interface WorldObject {
  id: number;
  class: string;
  box: Box;
  mask: Rle;
  /** People only. */
  keypoints?: Person['keypoints'];
  figure_height?: number;
}

/** A grounding turn's expression and the object it names (conversations.py's grounding turns). */
export interface GroundingTurn extends WorldTurn {
  objects: number[];
}

export interface DecoderTally {
  detector: boolean;
  pose?: PckTally;
  detections: ScoredBox[];
  truths: TruthBox[];
  maskIous: number[];
  instances: number;
  referringIous: number[];
}

export function readAnnotation(file: string): WorldObject[] {
  const a = JSON.parse(fs.readFileSync(file, 'utf8')) as { objects: WorldObject[] };
  return a.objects;
}

/** A tally for the decoders the model has (Grounding DINO, UniPose), undefined when it has neither. */
export function emptyTally(model: VisionLLM): DecoderTally | undefined {
  const detector = model.decoderNames.includes('gdino');
  const pose = model.decoderNames.includes('unipose') ? emptyPck() : undefined;
  if (!detector && !pose) return undefined;
  return { detector, pose, detections: [], truths: [], maskIous: [], instances: 0, referringIous: [] };
}

/** Adds one picture's detection, instance-mask, referring and pose results to the tally. */
export async function scorePicture(model: VisionLLM, image: RgbImage, picture: number, objects: WorldObject[],
                                   turns: readonly WorldTurn[], tally: DecoderTally): Promise<void> {
  const people = objects.filter((o) => o.class === 'person') as (WorldObject & Person)[];
  // PCK scores people's keypoints only: a picture without people has nothing to score.
  if (tally.pose && people.length) {
    const posed = await model.pose(image, { classes: ['person'], threshold: 0 });
    scorePose(posed.instances, people, posed.keypointNames, tally.pose);
  }
  if (tally.detector) await scoreDetector(model, image, picture, objects, turns, tally);
}

async function scoreDetector(model: VisionLLM, image: RgbImage, picture: number, objects: WorldObject[],
                             turns: readonly WorldTurn[], tally: DecoderTally): Promise<void> {
  for (const o of objects) tally.truths.push({ image: picture, classIndex: WORLD_CLASSES.indexOf(o.class), box: o.box });
  tally.instances += objects.length;

  const found = await model.detect(image, { classes: WORLD_CLASSES, topK: 100, threshold: 0 });
  for (const d of found.detections) tally.detections.push({ image: picture, classIndex: d.classIndex, score: d.score, box: d.box });
  // Masks only for what scores MASK_SCORE or more: the same detector, so the same boxes and scores.
  const segmented = await model.segment(image, { classes: WORLD_CLASSES, topK: MASKED_AT_MOST, threshold: MASK_SCORE });
  const detections = segmented.detections;
  const sameClass = (d: number, o: number) => WORLD_CLASSES.indexOf(objects[o]!.class) === detections[d]!.classIndex;
  for (const [d, o] of matchGreedily(detections, objects, MATCH_IOU, sameClass)) tally.maskIous.push(maskIou(detections[d]!.mask!, objects[o]!.mask));

  for (const turn of turns.filter((t): t is GroundingTurn => t.type === 'grounding')) {
    const target = objects.find((o) => o.id === turn.objects[0])!;
    const grounded = await model.ground(image, turn.phrases![0]!);
    const mask = grounded.detections[0]?.mask;
    tally.referringIous.push(mask ? maskIou(mask, target.mask) : 0);
  }
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const fixed = (x: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(3));

export interface DecoderSummary {
  aps: ClassAp[];
  meanAp50: number;
  meanAp5095: number;
  maskIou: number;
  matched: number;
  instances: number;
  referringIou: number;
  referrings: number;
  detector: boolean;
  pose?: PckTally;
}

export function summarise(t: DecoderTally): DecoderSummary {
  const aps = classAps(t.detections, t.truths, WORLD_CLASSES.length);
  return {
    aps,
    meanAp50: mean(aps.map((a) => a.ap50).filter((x) => !Number.isNaN(x))),
    meanAp5095: mean(aps.map((a) => a.ap5095).filter((x) => !Number.isNaN(x))),
    maskIou: mean(t.maskIous),
    matched: t.maskIous.length,
    instances: t.instances,
    referringIou: mean(t.referringIous),
    referrings: t.referringIous.length,
    detector: t.detector,
    pose: t.pose,
  };
}

/** The report's decoder section (markdown lines). */
export function decoderReport(s: DecoderSummary): string[] {
  return [...(s.detector ? detectorReport(s) : []), ...(s.pose ? poseReport(s.pose) : [])];
}

const met = (ok: boolean) => (ok ? 'met' : '**missed**');

function poseReport(p: PckTally): string[] {
  const pck = p.keypoints ? p.right / p.keypoints : NaN;
  return [
    `## Pose (goal: PCK@${PCK_FRACTION} >= ${PCK_GOAL})`,
    '',
    '`pose()` asks for the person\'s 17 COCO keypoints in every picture with people (no threshold); its instances are matched one to one',
    'to the people at box IoU >= 0.5, and a keypoint is right within a tenth of the person\'s height (scripts/eval/pose-metrics.ts).',
    '',
    '| measure | value | goal |',
    '|---|---:|---|',
    `| PCK@${PCK_FRACTION} over the ${p.keypoints} keypoints of ${p.people} people | ${fixed(pck)} | ${PCK_GOAL}: ${met(pck >= PCK_GOAL)} |`,
    `| people matched by an instance | ${p.matched} of ${p.people} | |`,
    '',
  ];
}

function detectorReport(s: DecoderSummary): string[] {
  return [
    `## Detection (goal: AP50 >= ${AP50_GOAL} per class)`,
    '',
    '`detect()` asks for all five classes in every picture (top 100, no threshold); COCO-style AP',
    '(scripts/eval/detection-metrics.ts).',
    '',
    '| class | objects | AP50 | AP50:95 | goal |',
    '|---|---:|---:|---:|---|',
    ...s.aps.map((a, i) => `| ${WORLD_CLASSES[i]} | ${a.truths} | ${fixed(a.ap50)} | ${fixed(a.ap5095)} | ${Number.isNaN(a.ap50) ? 'no objects' : met(a.ap50 >= AP50_GOAL)} |`),
    `| **mean** | ${s.aps.reduce((n, a) => n + a.truths, 0)} | ${fixed(s.meanAp50)} | ${fixed(s.meanAp5095)} | |`,
    '',
    '## Masks',
    '',
    '| measure | value | goal |',
    '|---|---:|---|',
    `| instance masks: mean IoU of the ${s.matched} objects (of ${s.instances}) matched by a detection scoring >= ${MASK_SCORE} at box IoU >= ${MATCH_IOU} | ${fixed(s.maskIou)} | |`,
    `| referring segmentation: mean mask IoU of \`ground()\` over ${s.referrings} expressions | ${fixed(s.referringIou)} | ${REFERRING_GOAL}: ${met(s.referringIou >= REFERRING_GOAL)} |`,
    '',
  ];
}
