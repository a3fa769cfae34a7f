/** The chat command's arguments (the shared checks are options.ts's). */
import type { SamplingSettings } from '../model/generate.js';
import { commonArgs, COMMON_OPTIONS, imageOption, numberOption, parseCommandLine, POSITIVE_INTEGER, SEED, type CommonArgs, type NumberSpec } from './options.js';
import { CHAT_USAGE } from './usage.js';

export interface ChatArgs extends CommonArgs {
  /** Absolute, checked to exist. */
  image?: string;
  prompt: string;
  sampling: SamplingSettings;
  stats: boolean;
}

/** What chat and look ask when given no --prompt. */
export const DEFAULT_PROMPT = 'What is in the picture?';

const OPTIONS = {
  ...COMMON_OPTIONS,
  image: { type: 'string' },
  prompt: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  stats: { type: 'boolean' },
} as const;

/**
 * The sampling options: what each accepts, as generate() and sampleTokens() would check it later.
 * --max-new-tokens 0 would load the model to print nothing.
 */
const SAMPLING: Record<string, { key: keyof SamplingSettings; spec: NumberSpec }> = {
  'max-new-tokens': { key: 'maxNewTokens', spec: POSITIVE_INTEGER },
  temperature: { key: 'temperature', spec: { integer: false, ok: (n) => n >= 0, want: 'a finite number >= 0' } },
  'top-p': { key: 'topP', spec: { integer: false, ok: (n) => n > 0 && n <= 1, want: 'a number in (0, 1]' } },
  'top-k': { key: 'topK', spec: { integer: true, ok: (n) => n >= 0, want: 'a non-negative integer (0: off)' } },
  seed: { key: 'seed', spec: SEED },
};

/** The chat command's arguments, or 'help'. Throws UsageError naming the option and value at fault. */
export function parseChatArgs(argv: string[]): ChatArgs | 'help' {
  const values = parseCommandLine(argv, OPTIONS, CHAT_USAGE);
  if (values === 'help') return 'help';
  const sampling: SamplingSettings = { maxNewTokens: 64 };
  for (const [name, { key, spec }] of Object.entries(SAMPLING)) {
    const n = numberOption(values, name, spec);
    if (n !== undefined) sampling[key] = n;
  }
  const common = commonArgs(values);
  return {
    ...common,
    image: imageOption(values, common.weights),
    prompt: (values.prompt as string | undefined) ?? DEFAULT_PROMPT,
    sampling,
    stats: values.stats === true,
  };
}
