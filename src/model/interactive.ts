/**
 * Interactive segmentation (visual prompts): the user marks objects with regions, and Grounding DINO
 * segments every object that looks like each, one class per region. The prompt and answer are the
 * test-mode templates of the official data (datasets/coco_interactive.py: QUESTIONS[0], YES[0]):
 *
 *   question  Can you examine the image and segment the corresponding objects denoted as
 *             <reg>region1<region></reg>, <reg>region2<region></reg>?
 *   answer    Sure, these objects are region1[DET], region2[DET].
 *
 * Each `<region>` takes its region's embedding; each `[DET]` block is a class for the detector
 * (eval_visual_prompt.py: instance segmentation of the top-k over queries × classes).
 */
import type { Region } from './regions.js';

const QUESTION = 'Can you examine the image and segment the corresponding objects denoted as <regions>?';
const ANSWER = 'Sure, these objects are <regions>.';

/** The official question for `count` regions. */
export function interactiveQuestion(count: number): string {
  return QUESTION.replace('<regions>', names(count).map((n) => `<reg>${n}<region></reg>`).join(', '));
}

/** The official answer for `count` regions (the super link adds each [DET]'s query tokens). */
export function interactiveAnswer(count: number): string {
  return ANSWER.replace('<regions>', names(count).map((n) => `${n}[DET]`).join(', '));
}

export interface SegmentRegionsOptions {
  /** What each region marks, in original-image pixels. */
  regions: Region[];
  /** Instances kept (default 300, as the interactive evaluation). */
  topK?: number;
  /**
   * 'template' (default): the official answer is given (teacher-forced), so there is exactly one
   * class per region; 'generate': the model writes the answer, as the official evaluation runs it.
   */
  answer?: 'template' | 'generate';
}

function names(count: number): string[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`segment: regions must hold at least one region, got ${count}`);
  return Array.from({ length: count }, (_, i) => `region${i + 1}`);
}
