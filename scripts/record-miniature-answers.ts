#!/usr/bin/env node
/**
 * npm run record:tiny [-- --weights DIR]
 *
 * Records what the miniature answers about the committed ShapesWorld pictures
 * (test/fixtures/shapesworld/29-*.png): the first question of each type in each picture's
 * conversation (scripts/shapesworld/conversations.py), asked as the evaluation asks it, with its
 * first region caption where the checkpoint has a region encoder, and what its decoders return about
 * each picture: detect(), segment(), ground(), pose(), generate() and edit() (recorded-answers.ts).
 * test/miniature.test.ts checks that the checkpoint still gives exactly these answers, so run this
 * again after retraining (npm run train:tiny) and review the difference.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { VisionLLM } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';
import { askAlone, takesRegions, turnRegions } from './eval/ask.js';
import { decoderResults, recordedAnswersFile, recordsResults, weightsDigest, type RecordedAnswers } from './eval/recorded-answers.js';
import { TASK_TYPES, VQA_TYPES, isRight } from './eval/scoring.js';
import { worldSet } from './eval/world-set.js';

/** The committed pictures: seed 29, indices 0 to 4 (docs/shapesworld.md). */
const SEED = 29;
const COUNT = 5;

async function main(): Promise<void> {
  const root = projectRoot();
  const { values } = parseArgs({ options: { weights: { type: 'string', default: path.join(root, 'weights', 'miniature') } } });
  const weights = path.resolve(values.weights!);
  const fixtures = path.join(root, 'test', 'fixtures', 'shapesworld');
  const pictures = worldSet(root, path.join(root, 'runs', `world-${SEED}-${COUNT}`), SEED, COUNT);
  const model = await VisionLLM.load(weights);
  const regions = takesRegions(model);
  const recorded: RecordedAnswers = { weights: path.relative(root, weights), sha256: weightsDigest(weights), pictures: [] };
  try {
    for (const picture of pictures) {
      const file = path.basename(picture.file);
      // The conversation belongs to the picture the generator draws today: it must be the committed one.
      if (!fs.readFileSync(picture.file).equals(fs.readFileSync(path.join(fixtures, file)))) {
        throw new Error(`${file}: scripts/shapesworld draws it differently from test/fixtures/shapesworld/${file}`);
      }
      const image = await model.readImage(picture.file);
      const turns = [];
      for (const type of [...VQA_TYPES, ...TASK_TYPES]) {
        const turn = picture.turns.find((t) => t.type === type);
        if (!turn) continue;
        const got = await askAlone(model, image, turn.question);
        turns.push({ ...turn, got, right: isRight(turn, got) });
      }
      const region = regions ? picture.regions[0] : undefined;
      if (region) {
        const got = await askAlone(model, image, region.question, turnRegions(region));
        turns.push({ ...region, got, right: isRight(region, got) });
      }
      const results = recordsResults(model) ? await decoderResults(model, image, picture.turns) : undefined;
      recorded.pictures.push({ file, turns, ...(results ? { results } : {}) });
    }
  } finally {
    model.dispose();
  }
  const out = recordedAnswersFile(root);
  fs.writeFileSync(out, JSON.stringify(recorded, null, 2) + '\n');
  const all = recorded.pictures.flatMap((p) => p.turns);
  console.log(`wrote ${path.relative(root, out)}: ${all.length} answers, ${all.filter((t) => t.right).length} right`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
