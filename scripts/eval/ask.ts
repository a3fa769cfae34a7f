/** A question put to a model as the miniature's evaluation puts it: alone, greedy, the answer as spoken. */
import type { RgbImage } from '../../src/image/gpu-image.js';
import type { VisionLLM } from '../../src/model/vision-llm.js';
import { spokenAnswer } from './scoring.js';

export async function askAlone(model: VisionLLM, image: RgbImage, question: string): Promise<string> {
  const result = await model.chat({ image, prompt: question, temperature: 0, maxNewTokens: 200 });
  try {
    return spokenAnswer(model.tokenizer, result.tokenIds);
  } finally {
    result.dispose();
  }
}
