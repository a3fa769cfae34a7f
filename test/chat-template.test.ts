import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { promptIds, vicunaPrompt } from '../src/model/chat-template.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { TEST_DIR, loadGolden } from './helpers.js';

const mllm = loadGolden('mllm');
const text = loadGolden('tiny_llama');
const tokenizer = Tokenizer.fromDirectory(path.join(TEST_DIR, '..', 'weights', 'tiny'));

describe('Vicuna v1 prompts', () => {
  it('builds the official image prompt ids (chunked around <image>, 576 <im_patch> per tile)', () => {
    const question = mllm.metadata.question!;
    for (const [name, tiles] of [['wide', 3], ['square', 1]] as const) {
      const ids = promptIds(tokenizer, vicunaPrompt(`<image>\n${question}`), 576 * tiles);
      expect(ids).toEqual(Array.from(mllm.values(`${name}.prompt_ids`)));
    }
  });

  it('builds text-only prompt ids and multi-turn history', () => {
    expect(promptIds(tokenizer, text.metadata.prompt!, 0)).toEqual(Array.from(text.values('prompt_ids')));
    expect(vicunaPrompt('b?', [{ user: 'a?', assistant: 'yes' }])).toMatch(/ USER: a\? ASSISTANT: yes<\/s>USER: b\? ASSISTANT:$/);
  });

  it('refuses two images in one prompt', () => {
    expect(() => promptIds(tokenizer, '<image> and <image>', 576)).toThrow(/one <image> per prompt/);
  });
});
