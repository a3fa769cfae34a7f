/**
 * `visionllm chat`: loads the checkpoint, streams the answer to stdout and everything else
 * (progress, the prompt, --stats) to stderr, so `visionllm chat > answer.txt` holds the answer only.
 */
import { VisionLLM } from '../model/vision-llm.js';
import { ProgressBar } from '../progress-bar.js';
import type { ChatArgs } from './options.js';

/** `stdoutClosed` fires when the reader went away (`| head`): generation stops and nothing more is written. */
export async function chat(args: ChatArgs, stdoutClosed: AbortSignal): Promise<void> {
  const out = (text: string) => {
    if (!stdoutClosed.aborted) process.stdout.write(text);
  };
  const t0 = performance.now();
  // Off a terminal (a log, a pipe) the bar would add twenty lines for a 3 MB checkpoint.
  const bar = process.stderr.isTTY ? new ProgressBar(process.stderr) : null;
  const model = await VisionLLM.load(args.weights, {
    policy: args.f32 ? { matrix: 'f32', vector: 'f32', integer: 'i32' } : undefined,
    onProgress: (p) => bar?.update(p.bytesDone, p.bytesTotal),
  });
  bar?.finish();
  console.error(`loaded ${args.weights} (${model.config.kind}, ${(model.weights.byteLength / 1e6).toFixed(1)} MB on the GPU) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    if (args.image) console.error(`image: ${args.image}`);
    console.error(`USER: ${args.prompt}`);
    out('ASSISTANT: ');
    const result = await model.chat({
      prompt: args.prompt,
      image: args.image,
      ...args.sampling,
      signal: stdoutClosed,
      onToken: out,
    });
    out('\n');
    if (!args.stats) return;
    const t = result.timings;
    const m = model.engine.memory();
    console.error(
      [
        `finish: ${result.finishReason}, ${result.tokenIds.length} tokens`,
        `image: ${t.imageTiles} tile(s), ${t.visionMs.toFixed(0)} ms`,
        `prefill: ${t.promptTokens} tokens in ${t.prefillMs.toFixed(0)} ms (${((t.promptTokens / t.prefillMs) * 1000).toFixed(1)} tokens/s)`,
        `decode: ${t.decodeTokens} tokens in ${t.decodeMs.toFixed(0)} ms (${t.decodeTokens ? ((t.decodeTokens / t.decodeMs) * 1000).toFixed(1) : '-'} tokens/s), ` +
          `${t.dispatchesPerToken.toFixed(0)} dispatches and ${t.submitsPerToken.toFixed(1)} submits per token, ${t.recordMsPerToken.toFixed(2)} ms recording`,
        `GPU memory: ${(m.peakBytes / 1e6).toFixed(1)} MB peak`,
      ].join('\n'),
    );
  } finally {
    model.dispose();
  }
}
