/**
 * The miniature's evaluation scoring (scripts/eval/scoring.ts): exact VQA answers, describe answers
 * order-free, task answers by their routing blocks. Each rule is checked to reject what it should.
 */
import { describe, expect, it } from 'vitest';
import { describedThings, isRight, routingBlocks, type WorldTurn } from '../scripts/eval/scoring.js';

const turn = (type: string, answer: string, phrases?: string[]): WorldTurn => ({ type, question: '?', answer, ...(phrases ? { phrases } : {}) });

describe('eval scoring', () => {
  it('reads a describe answer as one name per object, whatever the order', () => {
    expect(describedThings('I see a red star, two green circles and an orange person.')).toEqual(['green circle', 'green circle', 'orange person', 'red star']);
    expect(describedThings('I see three white people.')).toEqual(['white person', 'white person', 'white person']);
    const describe = turn('describe', 'I see a red star and two green circles.');
    expect(isRight(describe, 'I see two green circles and a red star.')).toBe(true);
    expect(isRight(describe, 'I see a green circle and a red star.')).toBe(false);
    expect(isRight(describe, 'I see a red star and two green squares.')).toBe(false);
    expect(isRight(describe, 'I see a red star, two green circles')).toBe(false);
    expect(describedThings('There are two stars.')).toBeUndefined();
    expect(describedThings('I see one red star.')).toBeUndefined(); // "one" is never the canonical form
  });

  it('scores the other questions by exact answer', () => {
    const count = turn('count', 'There are 2 stars.');
    expect(isRight(count, ' There are 2 stars.')).toBe(true);
    expect(isRight(count, 'There are 3 stars.')).toBe(false);
    expect(isRight(count, 'There are 2 stars')).toBe(false);
  });

  it('scores task answers by routing tokens and phrases, in order', () => {
    const detection = turn('detection', 'Yes, here are the results for circle[DET], star[DET] in the image.', ['circle', 'star']);
    expect(routingBlocks(detection.answer)).toEqual([
      { token: '[DET]', phrase: 'Yes, here are the results for circle' },
      { token: '[DET]', phrase: 'star' },
    ]);
    expect(isRight(detection, 'Yes, here are the results for circle[DET], star[DET] in this image!')).toBe(true);
    expect(isRight(detection, 'Yes, here are the results for star[DET], circle[DET] in the image.')).toBe(false);
    expect(isRight(detection, 'Yes, here are the results for circle[SEG], star[SEG] in the image.')).toBe(false);
    expect(isRight(detection, 'Yes, here are the results for circle[DET] in the image.')).toBe(false);
    const generation = turn('generation', 'Here it is [GEN].', []);
    expect(isRight(generation, 'Here it is [GEN].')).toBe(true);
    expect(isRight(generation, 'Here it is [EDIT].')).toBe(false);
    expect(isRight(generation, 'Here it is.')).toBe(false);
  });
});
