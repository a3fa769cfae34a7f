/** A question put to a model as the miniature's evaluation puts it: alone, greedy, the answer as spoken. */
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { Region } from '../../src/model/regions.js';
import type { VisionLLM } from '../../src/model/vision-llm.js';
import { spokenAnswer, type WorldTurn } from './scoring.js';

/** Only the answer is scored: the diffusion decoders take their queries (as in any chat) but draw nothing. */
const ANSWER_ONLY = { sd: { draw: false }, ip2p: { draw: false } };

/** `regions`: what the question's `<region>` tokens point at, in order (chat's option). */
export async function askAlone(model: VisionLLM, image: RgbImage, question: string, regions?: Region[]): Promise<string> {
  const result = await model.chat({ image, prompt: question, temperature: 0, maxNewTokens: 200, decoders: ANSWER_ONLY, ...(regions && { regions }) });
  try {
    return spokenAnswer(model.tokenizer, result.tokenIds);
  } finally {
    result.dispose();
  }
}

/** Whether the checkpoint has a region encoder, so that `<region>` tokens take regions. */
export function takesRegions(model: VisionLLM): boolean {
  return 'regionEncoder' in model.config && model.config.regionEncoder !== undefined;
}

/** A turn's `<region>`s as chat() takes them: a region-captioning turn's box. */
export function turnRegions(turn: WorldTurn): Region[] | undefined {
  return turn.box && [{ box: turn.box }];
}
