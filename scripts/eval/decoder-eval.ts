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
 *     (scripts/eval/pose-metrics.ts), where the checkpoint has UniPose;
 *   - generation: generate("a <colour> <class>") of each picture's largest object, right when the
 *     largest foreground component has that colour and the model's own detect() names its shape;
 *   - editing: edit() of the picture at IMAGE_SIDE pixels with its editing turn's instruction, right
 *     when the object takes the asked colour and the other pixels stay (scripts/eval/image-metrics.ts).
 * Masks are the objects' visible pixels, as ShapesWorld annotates them. Each part runs where the
 * checkpoint has its decoder.
 */
import fs from 'node:fs';
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { Rle } from '../../src/image/mask.js';
import type { VisionLLM } from '../../src/model/vision-llm.js';
import { loadSharp } from '../../src/image/decode.js';
import { expandMask, maskArea } from '../../src/image/mask.js';
import { boxIou, classAps, maskIou, matchGreedily, type Box, type ClassAp, type ScoredBox, type TruthBox } from './detection-metrics.js';
import { KEPT_SHARE, largestComponent, resampleMask, scoreEdit } from './image-metrics.js';
import { emptyPck, PCK_FRACTION, scorePose, type PckTally, type Person } from './pose-metrics.js';
import type { WorldTurn } from './scoring.js';

export const WORLD_CLASSES = ['circle', 'square', 'triangle', 'star', 'person'];
export const AP50_GOAL = 0.8;
export const REFERRING_GOAL = 0.75;
export const PCK_GOAL = 0.7;
export const GENERATION_GOAL = 0.7;
export const EDITING_GOAL = 0.6;
/** The miniature's diffusion decoders draw and edit pictures of this side (scripts/train/diffusion.py SIDE). */
export const IMAGE_SIDE = 64;
/** Denoising steps of generate() and edit() here (their defaults, 50 and 100, take 2 and 4 times as long). */
export const DIFFUSION_STEPS = 25;
const GENERATE_PREFIX = 'Generate image with caption: ';
const EDIT_PREFIX = 'Edit the image according to the caption: ';

/** A world picture as the miniature's editor takes it: IMAGE_SIDE pixels square (sharp's default Lanczos, aspect not kept). */
export async function editingInput(image: RgbImage): Promise<RgbImage> {
  const sharp = await loadSharp();
  const raw = { width: image.width, height: image.height, channels: 3 as const };
  const resized = await sharp(Buffer.from(image.data), { raw }).resize(IMAGE_SIDE, IMAGE_SIDE, { fit: 'fill' }).raw().toBuffer();
  return { width: IMAGE_SIDE, height: IMAGE_SIDE, data: new Uint8Array(resized) };
}

/** The caption of a generation turn and the instruction of an editing turn, as generate() and edit() take them. */
export function turnText(turn: WorldTurn): string {
  const prefix = turn.type === 'generation' ? GENERATE_PREFIX : EDIT_PREFIX;
  if (!turn.question.startsWith(prefix)) throw new Error(`eval: a ${turn.type} turn's question does not start with '${prefix}': ${turn.question}`);
  return turn.question.slice(prefix.length).replace(/\.$/, '');
}
const MASK_SCORE = 0.3;
const MATCH_IOU = 0.5;
const MASKED_AT_MOST = 20;

export interface WorldObject {
  id: number;
  class: string;
  colour: string;
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

/** An editing turn: the object it recolours and the new colour. */
export interface EditingTurn extends WorldTurn {
  objects: number[];
  colour: string;
}

export interface ImageTally {
  asked: number;
  /** Generation: the colour right; editing: the object's colour right. */
  colour: number;
  /** Generation: the detector names the asked shape; editing: the other pixels kept. */
  other: number;
  right: number;
}

export interface DecoderTally {
  detector: boolean;
  pose?: PckTally;
  detections: ScoredBox[];
  truths: TruthBox[];
  maskIous: number[];
  instances: number;
  referringIous: number[];
  generation?: ImageTally;
  editing?: ImageTally;
}

export function readAnnotation(file: string): WorldObject[] {
  const a = JSON.parse(fs.readFileSync(file, 'utf8')) as { objects: WorldObject[] };
  return a.objects;
}

/** A tally for the decoders the model has (Grounding DINO, UniPose, SD, IP2P), undefined when it has none. */
export function emptyTally(model: VisionLLM): DecoderTally | undefined {
  const has = (name: string) => model.decoderNames.includes(name);
  const images = (): ImageTally => ({ asked: 0, colour: 0, other: 0, right: 0 });
  const detector = has('gdino');
  const pose = has('unipose') ? emptyPck() : undefined;
  // Generation is judged by the model's own detector: without one there is no judge.
  const generation = has('sd') && detector ? images() : undefined;
  const editing = has('ip2p') ? images() : undefined;
  if (!detector && !pose && !generation && !editing) return undefined;
  return { detector, pose, generation, editing, detections: [], truths: [], maskIous: [], instances: 0, referringIous: [] };
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
  if (tally.generation) await scoreGeneration(model, picture, objects, tally.generation);
  if (tally.editing) await scoreEditing(model, image, objects, turns, tally.editing);
}

async function scoreGeneration(model: VisionLLM, picture: number, objects: WorldObject[], tally: ImageTally): Promise<void> {
  if (!objects.length) return;
  const asked = objects.reduce((a, b) => (maskArea(b.mask) > maskArea(a.mask) ? b : a));
  const generated = await model.generate(`a ${asked.colour} ${asked.class}`, { seed: picture, steps: DIFFUSION_STEPS });
  const component = largestComponent(generated.image);
  tally.asked++;
  if (!component) return;
  const colourRight = component.colour === asked.colour;
  const found = await model.detect(generated.image, { classes: WORLD_CLASSES, topK: 10, threshold: 0 });
  const judged = found.detections.find((d) => boxIou(d.box, component.box) >= MATCH_IOU);
  const shapeRight = judged?.classIndex === WORLD_CLASSES.indexOf(asked.class);
  count(tally, colourRight, shapeRight);
}

async function scoreEditing(model: VisionLLM, image: RgbImage, objects: WorldObject[], turns: readonly WorldTurn[], tally: ImageTally): Promise<void> {
  const turn = turns.find((t): t is EditingTurn => t.type === 'editing');
  if (!turn) return;
  const input = await editingInput(image);
  const edited = await model.edit(input, turnText(turn), { seed: tally.asked, steps: DIFFUSION_STEPS });
  const target = objects.find((o) => o.id === turn.objects[0])!;
  const [h, w] = target.mask.size;
  const score = scoreEdit(input, edited.image, resampleMask(expandMask(target.mask), w, h, IMAGE_SIDE, IMAGE_SIDE));
  const colourRight = score.colour === turn.colour;
  const kept = score.kept >= KEPT_SHARE;
  tally.asked++;
  count(tally, colourRight, kept);
}

/** One generation's or edit's outcome, already counted as asked. */
function count(tally: ImageTally, colourRight: boolean, otherRight: boolean): void {
  tally.colour += Number(colourRight);
  tally.other += Number(otherRight);
  tally.right += Number(colourRight && otherRight);
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
  generation?: ImageTally;
  editing?: ImageTally;
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
    generation: t.generation,
    editing: t.editing,
  };
}

/** The report's decoder section (markdown lines). */
export function decoderReport(s: DecoderSummary): string[] {
  return [...(s.detector ? detectorReport(s) : []), ...(s.pose ? poseReport(s.pose) : []), ...imagesReport(s)];
}

function imagesReport(s: DecoderSummary): string[] {
  if (!s.generation && !s.editing) return [];
  const share = (n: number, t: ImageTally) => (t.asked ? `${fixed(n / t.asked)} (${n} of ${t.asked})` : 'n/a');
  const g = s.generation;
  const e = s.editing;
  return [
    `## Generation and editing (goals: ${GENERATION_GOAL} and ${EDITING_GOAL} right)`,
    '',
    `\`generate("a <colour> <class>")\` asks for each picture's largest object (seed: the picture's index; ${IMAGE_SIDE} x ${IMAGE_SIDE} pixels,`,
    `${DIFFUSION_STEPS} steps, the default guidance); right when the largest foreground component has that colour (the nearest of the palette) and the best`,
    `detection of \`detect()\` on the generated picture at box IoU >= ${MATCH_IOU} with the component names its shape. \`edit()\` gets each picture's`,
    `editing turn on the picture resized to ${IMAGE_SIDE} x ${IMAGE_SIDE} (${DIFFUSION_STEPS} steps, the default guidance); right when the object's pixels take`,
    `the asked colour and at least ${KEPT_SHARE * 100} % of the pixels more than a pixel away from it stay within 20 levels (scripts/eval/image-metrics.ts).`,
    '',
    '| measure | value | goal |',
    '|---|---:|---|',
    ...(g
      ? [
          `| generation: the asked colour | ${share(g.colour, g)} | |`,
          `| generation: the asked shape, as detect() judges | ${share(g.other, g)} | |`,
          `| **generation: both** | ${share(g.right, g)} | ${GENERATION_GOAL}: ${met(g.asked > 0 && g.right / g.asked >= GENERATION_GOAL)} |`,
        ]
      : []),
    ...(e
      ? [
          `| editing: the object in the asked colour | ${share(e.colour, e)} | |`,
          `| editing: the other pixels kept | ${share(e.other, e)} | |`,
          `| **editing: both** | ${share(e.right, e)} | ${EDITING_GOAL}: ${met(e.asked > 0 && e.right / e.asked >= EDITING_GOAL)} |`,
        ]
      : []),
    '',
  ];
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
