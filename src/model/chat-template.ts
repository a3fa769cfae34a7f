/**
 * The Vicuna v1 conversation template and the prompt ids VisionLLM v2's official code builds:
 *
 *   "<system> USER: <image>\n<question> ASSISTANT: <answer></s>USER: ... ASSISTANT:"
 *
 * The text is split at <image> and each piece tokenized on its own (LLaVA's tokenizer_image_token:
 * <s> once at the start), and <image> becomes 576 <im_patch> ids per image tile; the vision
 * features later overwrite those positions in order.
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export const VICUNA_SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

export const IMAGE_TOKEN = '<image>';
/** Marks a region of the image the user points at (chat's `regions`, in order). */
export const REGION_TOKEN = '<region>';
export const IMAGE_PATCH_TOKEN = '<im_patch>';

export interface ChatTurn {
  user: string;
  assistant: string;
}

/** The prompt text for a new question after `history`, ending with "ASSISTANT:". */
export function vicunaPrompt(question: string, history: readonly ChatTurn[] = [], system = VICUNA_SYSTEM): string {
  let text = `${system} `;
  for (const turn of history) text += `USER: ${turn.user} ASSISTANT: ${turn.assistant}</s>`;
  return `${text}USER: ${question} ASSISTANT:`;
}

/**
 * Token ids for a prompt text: pieces around each <image> tokenized separately (<s> only before
 * the first), each <image> replaced by `imageTokens` <im_patch> ids.
 */
export function promptIds(tokenizer: Tokenizer, prompt: string, imageTokens: number): number[] {
  const pieces = prompt.split(IMAGE_TOKEN);
  if (pieces.length > 2) throw new Error('chat: one <image> per prompt is supported');
  const patch = tokenizer.tokenToId(IMAGE_PATCH_TOKEN);
  if (pieces.length === 2 && patch === undefined) throw new Error(`chat: the tokenizer has no ${IMAGE_PATCH_TOKEN} token`);
  const ids: number[] = [];
  pieces.forEach((piece, i) => {
    if (i > 0) for (let n = 0; n < imageTokens; n++) ids.push(patch!);
    // An empty piece still marks where <s> goes, as tokenizer_image_token does.
    const encoded = piece.length ? tokenizer.encode(piece, { addBos: false }) : [];
    if (i === 0) ids.push(tokenizer.bosId);
    for (const id of encoded) ids.push(id); // not push(...encoded): so many arguments overflow the call stack
  });
  return ids;
}
