/**
 * `visionllm chat`: loads the checkpoint, streams the answer to stdout and everything else
 * (progress, the prompt, --stats) to stderr, so `visionllm chat > answer.txt` holds the answer only.
 * With --json stdout holds the JSON only, and the answer streams to stderr.
 */
import type { RgbImage } from '../image/gpu-image.js';
import type { SamplingSettings } from '../model/generate.js';
import type { ChatResult, VisionLLM } from '../model/vision-llm.js';
import type { ChatArgs } from './chat-options.js';
import { loadModel } from './load-model.js';
import { chatPicture } from './pictures.js';
import { Progress } from './progress.js';
import { toJson, writePicture } from './write-output.js';

/** `stdoutClosed` fires when the reader went away (`| head`): generation stops and nothing more is written. */
export async function chat(args: ChatArgs, stdoutClosed: AbortSignal): Promise<void> {
  const stdout = (text: string) => {
    if (!stdoutClosed.aborted) process.stdout.write(text);
  };
  const toStderr = (text: string) => {
    if (!args.quiet) process.stderr.write(text);
  };
  // With --json, stdout is for the JSON alone: the answer still streams, where the user sees it.
  const answer = args.json ? toStderr : stdout;
  const progress = new Progress(args.quiet);
  const model = await loadModel(args, progress);
  try {
    if (args.image) progress.note(`image: ${args.image}`);
    progress.note(`USER: ${args.prompt}`);
    const image = args.image === undefined ? undefined : await model.readImage(args.image);
    const result = await streamAnswer(model, { prompt: args.prompt, image, sampling: args.sampling, signal: stdoutClosed }, answer, progress);
    for (const u of result.unrouted) progress.note(`${u.token} went to no decoder: ${u.reason}`);
    try {
      if (args.out) await writeChatPicture(args.out, image, result, progress);
      if (args.json) stdout(`${toJson({ text: result.text, finishReason: result.finishReason, outputs: result.outputs, unrouted: result.unrouted })}\n`);
      if (args.stats) console.error(stats(model, result));
    } finally {
      result.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** An answer without decoder results is no failure of the chat: the note says nothing was written, and the exit status stays 0. */
async function writeChatPicture(file: string, image: RgbImage | undefined, result: ChatResult, progress: Progress): Promise<void> {
  const picture = await chatPicture(image, result.outputs);
  if ('none' in picture) {
    // Not a --quiet note: the file asked for is missing, which a script should hear about.
    console.error(`${picture.none}; nothing written to ${file}`);
    return;
  }
  await writePicture(file, picture);
  progress.note(`wrote ${file} (${picture.width}x${picture.height})`);
}

/**
 * Runs the chat, streaming the answer through `write` after "ASSISTANT: " (written with the first
 * token: until then the activity line has the terminal's line to itself), and a newline at the end.
 */
export async function streamAnswer(model: VisionLLM, ask: { prompt: string; image?: RgbImage; sampling: SamplingSettings; signal: AbortSignal },
                                   write: (text: string) => void, progress: Progress): Promise<ChatResult> {
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    progress.clear();
    write('ASSISTANT: ');
  };
  progress.activity('running the model');
  let result: ChatResult;
  try {
    result = await model.chat({
      prompt: ask.prompt,
      image: ask.image,
      ...ask.sampling,
      signal: ask.signal,
      onToken: (text) => (start(), write(text)),
      decoders: { sd: { onStep: progress.onStep }, ip2p: { onStep: progress.onStep } },
    });
  } finally {
    progress.clear();
  }
  start();
  write('\n');
  return result;
}

function stats(model: VisionLLM, result: ChatResult): string {
  const t = result.timings;
  const m = model.engine.memory();
  return [
    `finish: ${result.finishReason}, ${result.tokenIds.length} tokens`,
    `image: ${t.imageTiles} tile(s), ${t.visionMs.toFixed(0)} ms`,
    `prefill: ${t.promptTokens} tokens in ${t.prefillMs.toFixed(0)} ms (${((t.promptTokens / t.prefillMs) * 1000).toFixed(1)} tokens/s)`,
    `decode: ${t.decodeTokens} tokens in ${t.decodeMs.toFixed(0)} ms (${t.decodeTokens ? ((t.decodeTokens / t.decodeMs) * 1000).toFixed(1) : '-'} tokens/s), ` +
      `${t.dispatchesPerToken.toFixed(0)} dispatches and ${t.submitsPerToken.toFixed(1)} submits per token, ${t.recordMsPerToken.toFixed(2)} ms recording`,
    `GPU memory: ${(m.peakBytes / 1e6).toFixed(1)} MB peak`,
  ].join('\n');
}
