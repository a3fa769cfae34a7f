/**
 * The task commands' arguments (detect, segment, ground, pose, generate, edit): each command takes
 * the common options and a few of the ones below, checked by options.ts before anything loads.
 */
import { choiceOption, commonArgs, COMMON_OPTIONS, FINITE, FRACTION, imageOption, namesOption, numberOption, parseCommandLine, POSITIVE_INTEGER, SEED, textOption, UsageError, type CommonArgs, type NumberSpec, type OptionTypes } from './options.js';
import { taskUsage, type TaskCommand } from './usage.js';

export interface TaskArgs extends CommonArgs {
  command: TaskCommand;
  /** Absolute, checked to exist; absent only for generate. */
  image?: string;
  /** The text a command needs: ground's phrase, generate's prompt, edit's instruction. */
  text?: string;
  classes?: string[];
  keypoints?: string[];
  mode?: 'instance' | 'semantic';
  threshold?: number;
  topK?: number;
  diffusion: { steps?: number; seed?: number; guidance?: number; imageGuidance?: number; width?: number; height?: number; scheduler?: 'pndm' | 'euler_ancestral' | 'ddim' };
}

const NUMBERS: Record<string, NumberSpec> = {
  threshold: FRACTION,
  'top-k': POSITIVE_INTEGER,
  steps: POSITIVE_INTEGER,
  seed: SEED,
  guidance: FINITE,
  'image-guidance': FINITE,
  width: POSITIVE_INTEGER,
  height: POSITIVE_INTEGER,
};

/** Each command's own options; `text` names the option that gives TaskArgs.text, which it requires. */
const COMMANDS: Record<TaskCommand, { options: string[]; text?: 'phrase' | 'prompt' }> = {
  detect: { options: ['image', 'classes', 'threshold', 'top-k'] },
  segment: { options: ['image', 'classes', 'threshold', 'top-k', 'mode'] },
  ground: { options: ['image', 'phrase'], text: 'phrase' },
  pose: { options: ['image', 'classes', 'keypoints', 'threshold', 'top-k'] },
  generate: { options: ['prompt', 'steps', 'seed', 'guidance', 'width', 'height', 'scheduler'], text: 'prompt' },
  edit: { options: ['image', 'prompt', 'steps', 'seed', 'guidance', 'image-guidance'], text: 'prompt' },
};

/** A task command's arguments, or 'help'. Throws UsageError naming the option and value at fault. */
export function parseTaskArgs(command: TaskCommand, argv: string[]): TaskArgs | 'help' {
  const own = COMMANDS[command];
  const usage = taskUsage(command);
  const types: OptionTypes = { ...COMMON_OPTIONS, ...Object.fromEntries(own.options.map((name) => [name, { type: 'string' }])) };
  const values = parseCommandLine(argv, types, usage);
  if (values === 'help') return 'help';

  const number = (name: string) => numberOption(values, name, NUMBERS[name]!);
  // ground() refuses a phrase with block delimiters, as class names are; a diffusion prompt may hold anything.
  const text = own.text === 'phrase' ? namesOption(values, 'phrase', false)?.[0] : own.text && textOption(values, own.text);
  if (own.text && text === undefined) throw new UsageError(`${command} needs --${own.text} TEXT`, usage);
  const mode = choiceOption(values, 'mode', ['instance', 'semantic'] as const);
  if (mode === 'semantic' && (values.threshold !== undefined || values['top-k'] !== undefined)) {
    throw new UsageError('--threshold and --top-k apply to instances, not to --mode semantic');
  }
  const args: TaskArgs = {
    ...commonArgs(values),
    command,
    text,
    classes: namesOption(values, 'classes'),
    keypoints: namesOption(values, 'keypoints'),
    mode,
    threshold: number('threshold'),
    topK: number('top-k'),
    diffusion: {
      steps: number('steps'),
      seed: number('seed'),
      guidance: number('guidance'),
      imageGuidance: number('image-guidance'),
      width: number('width'),
      height: number('height'),
      scheduler: choiceOption(values, 'scheduler', ['pndm', 'euler_ancestral', 'ddim'] as const),
    },
  };
  if (command === 'generate') return args;
  const image = imageOption(values, args.weights);
  if (!image) throw new UsageError(`${command} needs --image FILE (only the tiny weights have a default picture)`, usage);
  return { ...args, image };
}
