/**
 * Scoring a ShapesWorld turn (scripts/shapesworld/conversations.py) against the model's answer.
 *
 * VQA answers are canonical sentences, scored by exact match; a describe answer lists its objects
 * in an order no one can check by eye, so it is scored order-free (describedThings, the port of
 * conversations.py's described_things). A task answer is right when it has the expected routing
 * blocks: the same routing tokens in the same order, each after the same phrase, as the super link
 * reads them (the text since the previous block, separators trimmed).
 */

import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';

/** A turn as conversations.py writes it (the fields scoring needs). */
export interface WorldTurn {
  type: string;
  question: string;
  answer: string;
  phrases?: string[];
  /** Region captioning: the box its question's `<region>` stands for. */
  box?: [number, number, number, number];
}

export const VQA_TYPES = ['describe', 'count', 'colour', 'exists', 'where', 'largest'] as const;
export const TASK_TYPES = ['detection', 'semantic', 'grounding', 'pose', 'generation', 'editing'] as const;

const NUMBER_WORDS = ['no', 'one', 'two', 'three', 'four', 'five', 'six'];
const SINGULARS: Record<string, string> = { circles: 'circle', squares: 'square', triangles: 'triangle', stars: 'star', people: 'person' };
const ROUTING = /\[(DET|SEG|GRD|POSE|GEN|EDIT)\]/g;

/** The answer as the model said it: chat()'s `text` leaves the routing tokens out, as special tokens. */
export function spokenAnswer(tokenizer: Tokenizer, tokenIds: readonly number[]): string {
  return tokenizer.decode(tokenIds.filter((id) => id !== tokenizer.eosId), { skipSpecialTokens: false });
}

function isTask(turn: WorldTurn): boolean {
  return turn.phrases !== undefined;
}

/** The sorted 'colour class' names a describe answer gives, one per object; undefined when it is not one. */
export function describedThings(answer: string): string[] | undefined {
  if (!answer.startsWith('I see ') || !answer.endsWith('.')) return undefined;
  const things: string[] = [];
  for (const part of answer.slice('I see '.length, -1).split(/, | and /)) {
    const words = part.split(' ');
    if (words.length === 3 && (words[0] === 'a' || words[0] === 'an')) {
      things.push(`${words[1]} ${words[2]}`);
    } else if (words.length === 3 && NUMBER_WORDS.indexOf(words[0]!) > 1 && SINGULARS[words[2]!]) {
      for (let n = 0; n < NUMBER_WORDS.indexOf(words[0]!); n++) things.push(`${words[1]} ${SINGULARS[words[2]!]}`);
    } else return undefined;
  }
  return things.sort();
}

/** The routing blocks of an answer: each routing token with the phrase before it. */
export function routingBlocks(answer: string): { token: string; phrase: string }[] {
  const blocks: { token: string; phrase: string }[] = [];
  let start = 0;
  for (const m of answer.matchAll(ROUTING)) {
    const phrase = answer.slice(start, m.index).trim().replace(/^[\s,.;:]+/, '').trim();
    blocks.push({ token: m[0], phrase });
    start = m.index! + m[0].length;
  }
  return blocks;
}

/** Whether the model's answer is right for the turn (see the header for what right means). */
export function isRight(turn: WorldTurn, answer: string): boolean {
  const got = answer.trim();
  if (isTask(turn)) return JSON.stringify(routingBlocks(got)) === JSON.stringify(routingBlocks(turn.answer));
  if (turn.type === 'describe') {
    const things = describedThings(got);
    return things !== undefined && JSON.stringify(things) === JSON.stringify(describedThings(turn.answer));
  }
  return got === turn.answer;
}
