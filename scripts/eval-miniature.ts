#!/usr/bin/env node
/**
 * npm run eval:tiny [-- --weights DIR --seed N --count N --out FILE]
 *
 * The miniature's evaluation, through the public chat() only: ShapesWorld pictures of a seed that
 * training never draws (scripts/train/miniature.py uses seed 1000), each question asked alone with
 * greedy decoding. Reports VQA exact-answer accuracy per question type (goal 90 % each) and the
 * share of task prompts answered with the right routing blocks (goal 95 %) in <weights>/EVAL.md,
 * and, where the checkpoint has Grounding DINO, UniPose, SD or IP2P, their detection, mask, pose,
 * generation and editing measures through the task API (scripts/eval/decoder-eval.ts). Where it has a region encoder, region captioning: a mostly
 * visible object's box as the `<region>` of "What is in <region>?" and its paraphrases, right when
 * the answer names the object's colour and class ("I see a red circle."; goal 90 %). Interactive
 * segmentation's region prompts are left out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { VisionLLM } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';
import { askAlone, takesRegions, turnRegions } from './eval/ask.js';
import { decoderReport, emptyTally, readAnnotation, scorePicture, summarise, type DecoderSummary } from './eval/decoder-eval.js';
import { TASK_TYPES, VQA_TYPES, isRight } from './eval/scoring.js';
import { worldSet } from './eval/world-set.js';

const EVAL_SEED = 4100;
const VQA_GOAL = 0.9;
const ROUTING_GOAL = 0.95;
const REGION_GOAL = 0.9;
const MISSES_SHOWN = 3;

interface Tally {
  asked: number;
  right: number;
  misses: { picture: string; question: string; expected: string; got: string }[];
}

async function main(): Promise<void> {
  const root = projectRoot();
  const { values } = parseArgs({
    options: {
      weights: { type: 'string', default: path.join(root, 'weights', 'miniature') },
      seed: { type: 'string', default: String(EVAL_SEED) },
      count: { type: 'string', default: '200' },
      out: { type: 'string' },
    },
  });
  const seed = Number(values.seed);
  const count = Number(values.count);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got '${values.seed}'`);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive integer, got '${values.count}'`);
  const weights = path.resolve(values.weights!);
  const out = values.out ?? path.join(weights, 'EVAL.md');

  const pictures = worldSet(root, path.join(root, 'runs', `eval-${seed}`), seed, count);
  const model = await VisionLLM.load(weights);
  const tallies = new Map<string, Tally>([...VQA_TYPES, ...TASK_TYPES, 'region'].map((t) => [t, { asked: 0, right: 0, misses: [] }]));
  const started = performance.now();
  let asked = 0;
  const decoders = emptyTally(model);
  const regions = takesRegions(model);
  try {
    for (const picture of pictures) {
      const image = await model.readImage(picture.file);
      for (const turn of [...picture.turns, ...(regions ? picture.regions : [])]) {
        const tally = tallies.get(turn.type);
        if (!tally) continue; // interactive segmentation's regions
        const got = await askAlone(model, image, turn.question, turnRegions(turn));
        tally.asked++;
        if (isRight(turn, got)) tally.right++;
        else tally.misses.push({ picture: path.basename(picture.file), question: `${turn.question}${turn.box ? ` (box ${turn.box.join(', ')})` : ''}`, expected: turn.answer, got });
        asked++;
      }
      if (decoders) {
        const objects = readAnnotation(picture.file.replace(/\.png$/, '.json'));
        await scorePicture(model, image, picture.index, objects, picture.turns, decoders);
      }
      const seconds = (performance.now() - started) / 1000;
      process.stderr.write(`\reval: picture ${picture.index + 1}/${pictures.length}, ${asked} questions, ${seconds.toFixed(0)} s`);
    }
  } finally {
    model.dispose();
  }
  process.stderr.write('\n');
  const minutes = (performance.now() - started) / 60000;
  const report = renderReport({ weights: path.relative(root, weights), seed, count, minutes, tallies, decoders: decoders && summarise(decoders), regions });
  fs.writeFileSync(out, report);
  console.log(report);
}

function percent(right: number, asked: number): string {
  return asked ? `${((100 * right) / asked).toFixed(1)} %` : 'n/a';
}

function renderReport(r: { weights: string; seed: number; count: number; minutes: number; tallies: Map<string, Tally>; decoders?: DecoderSummary; regions: boolean }): string {
  const row = (type: string, goal?: number) => {
    const t = r.tallies.get(type)!;
    const met = goal === undefined ? '' : t.asked && t.right / t.asked >= goal ? ' | met' : ' | **missed**';
    return `| ${type} | ${t.asked} | ${t.right} | ${percent(t.right, t.asked)}${met} |`;
  };
  const tasks = TASK_TYPES.map((t) => r.tallies.get(t)!);
  const taskAsked = tasks.reduce((s, t) => s + t.asked, 0);
  const taskRight = tasks.reduce((s, t) => s + t.right, 0);
  const routingMet = taskAsked && taskRight / taskAsked >= ROUTING_GOAL;
  const lines = [
    '# The miniature on ShapesWorld: evaluation',
    '',
    `Generated by \`npm run eval:tiny\` (scripts/eval-miniature.ts) for \`${r.weights}\`: ${r.count} pictures of seed ${r.seed}`,
    '(training draws seed 1000 only), every VQA and task turn of scripts/shapesworld/conversations.py except',
    'interactive segmentation\'s region prompts, each asked alone through `chat()` with greedy decoding, on this machine in',
    `${r.minutes.toFixed(1)} minutes. What is scored: scripts/eval/scoring.ts.`,
    '',
    `## Questions (goal: ${VQA_GOAL * 100} % exact answers per type)`,
    '',
    '| type | asked | right | accuracy | goal |',
    '|---|---:|---:|---:|---|',
    ...VQA_TYPES.map((t) => row(t, VQA_GOAL)),
    '',
    `## Task prompts (goal: ${ROUTING_GOAL * 100} % with the right routing blocks and phrases)`,
    '',
    '| type | asked | right | share |',
    '|---|---:|---:|---:|',
    ...TASK_TYPES.map((t) => row(t)),
    `| **all** | ${taskAsked} | ${taskRight} | ${percent(taskRight, taskAsked)} (${routingMet ? 'met' : '**missed**'}) |`,
    '',
    ...(r.decoders ? decoderReport(r.decoders) : []),
    ...(r.regions
      ? [
          `## Region captioning (goal: ${REGION_GOAL * 100} % name the boxed object's colour and class)`,
          '',
          'A mostly visible object\'s box is the `<region>` of the question (`chat({ regions: [{ box }] })`).',
          '',
          '| type | asked | right | accuracy | goal |',
          '|---|---:|---:|---:|---|',
          row('region', REGION_GOAL),
          '',
        ]
      : []),
    '## Misses (the first few of each type)',
    '',
  ];
  for (const [type, t] of r.tallies) {
    for (const m of t.misses.slice(0, MISSES_SHOWN)) {
      lines.push(`- ${type}, ${m.picture}: "${m.question}" expected "${m.expected}", got "${m.got}"`);
    }
  }
  if (lines[lines.length - 1] === '') lines.push('None.');
  return lines.join('\n') + '\n';
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
