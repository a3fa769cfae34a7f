/**
 * `visionllm detect|segment|ground|pose|generate|edit`: one runner for every task command. Each
 * command is a call of the model's task helper with its arguments; loading, progress, the
 * picture, the JSON and the summary are the same for all.
 */
import type { RgbImage } from '../image/gpu-image.js';
import type { TaskResult } from '../model/tasks/results.js';
import type { VisionLLM } from '../model/vision-llm.js';
import { loadModel } from './load-model.js';
import { taskPicture } from './pictures.js';
import { Progress } from './progress.js';
import { summaryLines } from './summary.js';
import type { TaskArgs } from './task-options.js';
import type { TaskCommand } from './usage.js';
import { toJson, writePicture } from './write-output.js';

type Call = (model: VisionLLM, a: TaskArgs, image: RgbImage | undefined, onStep: Progress['onStep']) => Promise<TaskResult>;

/** The diffusion options are checked for keys the decoder does not take, even undefined ones: only given values go in. */
function given<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const CALLS: Record<TaskCommand, Call> = {
  detect: (m, a, image) => m.detect(image!, given({ classes: a.classes, threshold: a.threshold, topK: a.topK })),
  segment: (m, a, image) => m.segment(image!, given({ classes: a.classes, threshold: a.threshold, topK: a.topK, mode: a.mode })),
  ground: (m, a, image) => m.ground(image!, a.text!),
  pose: (m, a, image) => m.pose(image!, given({ classes: a.classes, keypoints: a.keypoints, threshold: a.threshold, topK: a.topK })),
  generate: (m, a, _image, onStep) => m.generate(a.text!, given({ ...a.diffusion, onStep })),
  edit: (m, a, image, onStep) => m.edit(image!, a.text!, given({ ...a.diffusion, onStep })),
};

/** `stdoutClosed` fires when the reader went away (`| head`): nothing more is written there. */
export async function runTask(args: TaskArgs, stdoutClosed: AbortSignal): Promise<void> {
  const print = (line: string) => {
    if (!stdoutClosed.aborted) process.stdout.write(`${line}\n`);
  };
  const progress = new Progress(args.quiet);
  const model = await loadModel(args, progress);
  try {
    const image = args.image === undefined ? undefined : await model.readImage(args.image);
    progress.activity('running the model');
    let result: TaskResult;
    try {
      result = await CALLS[args.command](model, args, image, progress.onStep);
    } finally {
      progress.clear();
    }
    if (args.out) {
      const picture = await taskPicture(image, result);
      await writePicture(args.out, picture);
      progress.note(`wrote ${args.out} (${picture.width}x${picture.height})`);
    }
    if (args.json) return print(toJson(result));
    summaryLines(result).forEach(print);
    if (!args.out) progress.note(`(--out FILE writes the ${args.command === 'generate' || args.command === 'edit' ? 'image' : 'picture with the results drawn'})`);
  } finally {
    model.dispose();
  }
}
