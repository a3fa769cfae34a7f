/** Loading the checkpoint for any command: a bar on a terminal, then one line saying what loaded. */
import { VisionLLM } from '../model/vision-llm.js';
import type { CommonArgs } from './options.js';
import type { Progress } from './progress.js';

export async function loadModel(args: CommonArgs, progress: Progress): Promise<VisionLLM> {
  const t0 = performance.now();
  const bar = progress.bar();
  const model = await VisionLLM.load(args.weights, {
    policy: args.f32 ? { matrix: 'f32', vector: 'f32', integer: 'i32' } : undefined,
    onProgress: (p) => bar?.update(p.bytesDone, p.bytesTotal),
  });
  bar?.finish();
  progress.note(`loaded ${args.weights} (${model.config.kind}, ${(model.weights.byteLength / 1e6).toFixed(1)} MB on the GPU) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return model;
}
