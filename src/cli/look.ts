/**
 * `visionllm look` (what `npm start` runs): the model says what it sees in the picture, then
 * detects the checkpoint's classes in it and finds people's keypoints, prints a line per detection
 * and per person and writes the picture with them drawn, whose path it prints. A checkpoint
 * without a detector or a pose decoder only answers.
 */
import os from 'node:os';
import path from 'node:path';
import { gdino } from '../decoders/gdino/index.js';
import { unipose } from '../decoders/unipose/index.js';
import type { DetectResult, PoseResult } from '../model/tasks/results.js';
import { DEFAULT_THRESHOLD, keptAbove, scoredItems } from '../model/tasks/tasks.js';
import { annotate, type Annotations } from '../image/annotate.js';
import { streamAnswer } from './chat.js';
import { DEFAULT_PROMPT } from './chat-options.js';
import { loadModel } from './load-model.js';
import { commonArgs, COMMON_OPTIONS, FRACTION, imageOption, namesOption, numberOption, parseCommandLine, textOption, UsageError, type CommonArgs } from './options.js';
import { Progress } from './progress.js';
import { summaryLines } from './summary.js';
import { LOOK_USAGE } from './usage.js';
import { writePicture } from './write-output.js';

export interface LookArgs extends CommonArgs {
  image: string;
  prompt: string;
  classes?: string[];
  threshold?: number;
  /** Absolute: --out, else a file in the system's temporary folder. */
  out: string;
}

const OPTIONS = {
  ...COMMON_OPTIONS,
  image: { type: 'string' },
  prompt: { type: 'string' },
  classes: { type: 'string' },
  threshold: { type: 'string' },
} as const;

export function parseLookArgs(argv: string[]): LookArgs | 'help' {
  const values = parseCommandLine(argv, OPTIONS, LOOK_USAGE);
  if (values === 'help') return 'help';
  if (values.json) throw new UsageError('look prints a summary; use chat or detect for --json', LOOK_USAGE);
  const common = commonArgs(values);
  const image = imageOption(values, common.weights);
  if (!image) throw new UsageError(`look needs --image: ${common.weights} has no example.png`);
  return {
    ...common,
    image,
    prompt: textOption(values, 'prompt') ?? DEFAULT_PROMPT,
    classes: namesOption(values, 'classes'),
    threshold: numberOption(values, 'threshold', FRACTION),
    out: common.out ?? path.join(os.tmpdir(), `visionllm-look-${path.parse(image).name}.png`),
  };
}

export async function look(args: LookArgs, stdoutClosed: AbortSignal): Promise<void> {
  const print = (text: string) => {
    if (!stdoutClosed.aborted) process.stdout.write(text);
  };
  const progress = new Progress(args.quiet);
  const model = await loadModel(args, progress);
  try {
    progress.note(`image: ${args.image}`);
    progress.note(`USER: ${args.prompt}`);
    const image = await model.readImage(args.image);
    const answer = await streamAnswer(model, { prompt: args.prompt, image, sampling: { maxNewTokens: 64 }, signal: stdoutClosed }, print, progress);
    answer.dispose();
    const threshold = args.threshold ?? DEFAULT_THRESHOLD;
    const drawn: Annotations[] = [];
    // Every score, so that a picture with nothing above the threshold can say how near the best came.
    if (model.decoderNames.includes(gdino.name)) {
      progress.activity('detecting');
      const scored = await model.detect(image, { classes: args.classes, threshold: 0, signal: stdoutClosed }).finally(() => progress.clear());
      drawn.push(report(scored, `detections (${scored.classes.join(', ')})`));
    }
    if (model.decoderNames.includes(unipose.name)) {
      progress.activity('finding keypoints');
      const posed = await model.pose(image, { threshold: 0, signal: stdoutClosed }).finally(() => progress.clear());
      drawn.push(report(posed, `keypoints (${posed.classes.join(', ')})`));
    }
    if (!drawn.length) {
      progress.note(`${args.weights} has no detector and no pose decoder (use_gdino and use_unipose are false): nothing to draw`);
      return;
    }
    await writePicture(args.out, await annotate(image, drawn));
    print(`wrote ${args.out}\n`);

    function report(scored: DetectResult | PoseResult, title: string): Annotations {
      const found = keptAbove(scored, threshold);
      print(`${title}:\n`);
      summaryLines(found).forEach((line) => print(`  ${line}\n`));
      const best = scoredItems(scored)[0];
      if (!scoredItems(found).length && best) print(`  (the best: ${best.label} ${best.score.toFixed(2)}; --threshold ${threshold} is the bar)\n`);
      return found;
    }
  } finally {
    model.dispose();
  }
}
