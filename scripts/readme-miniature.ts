/**
 * npm run pictures (after the task table) [-- --weights DIR]
 *
 * The picture the README opens with, made from the committed miniature (weights/miniature): its
 * example picture, with what segment() and pose() find above the default threshold drawn over it
 * (boxes, labels, masks, keypoints) where the checkpoint has those decoders; under it what generate()
 * draws and what edit() makes of the picture (at the miniature's 64 pixels, shown enlarged pixel
 * for pixel) where it has SD and IP2P, then the question `npm start` asks with the model's answer.
 * Writes docs/images/miniature.png and the README block between `<!-- miniature:begin -->` and
 * `<!-- miniature:end -->`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { annotate } from '../src/image/annotate.js';
import { loadSharp } from '../src/image/decode.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import type { PoseResult, SegmentResult } from '../src/model/tasks/results.js';
import { DEFAULT_THRESHOLD, keptAbove, scoredItems } from '../src/model/tasks/tasks.js';
import { VisionLLM } from '../src/model/vision-llm.js';
import { projectRoot } from '../src/paths.js';
import { editingInput } from './eval/decoder-eval.js';
import { replaceBlock } from './readme-blocks.js';

const QUESTION = 'What is in the picture?';
/** Detections named in the caption (all are drawn). */
const LISTED = 4;
const LINE_HEIGHT = 22;
/** Wide enough for the widest characters of a 15-pixel sans-serif. */
const CHAR_WIDTH = 9;
const FONT = 'font-family="DejaVu Sans, Arial, sans-serif" font-size="15"';
const GENERATE_CAPTION = 'a yellow star';
/** The example picture's red star is its only one. */
const EDIT_INSTRUCTION = 'make the red star blue';
/** The generated and edited pictures' side as drawn. */
const PANEL = 192;

interface Panel {
  label: string;
  image: RgbImage;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { weights: { type: 'string' } } });
  const root = projectRoot();
  const weights = path.resolve(values.weights ?? path.join(root, 'weights', 'miniature'));
  const model = await VisionLLM.load(weights);
  let answer: string;
  let drawn: RgbImage;
  let scored: SegmentResult | undefined;
  let posed: PoseResult | undefined;
  const panels: Panel[] = [];
  try {
    const image = await model.readImage(path.join(weights, 'example.png'));
    const chat = await model.chat({ prompt: QUESTION, image, maxNewTokens: 64 });
    answer = chat.text.trim();
    chat.dispose();
    // Every score, so that the caption can say how near the best came when none passes the threshold.
    scored = model.decoderNames.includes('gdino') ? await model.segment(image, { threshold: 0 }) : undefined;
    posed = model.decoderNames.includes('unipose') ? await model.pose(image, { threshold: 0 }) : undefined;
    const found = [scored && keptAbove(scored), posed && keptAbove(posed)].filter((r) => r !== undefined);
    drawn = found.length ? await annotate(image, found) : image;
    if (model.decoderNames.includes('sd')) panels.push({ label: `generate("${GENERATE_CAPTION}")`, image: (await model.generate(GENERATE_CAPTION, { seed: 0 })).image });
    if (model.decoderNames.includes('ip2p')) {
      const edited = await model.edit(await editingInput(image), EDIT_INSTRUCTION, { seed: 0 });
      panels.push({ label: `edit(picture, "${EDIT_INSTRUCTION}")`, image: edited.image });
    }
  } finally {
    model.dispose();
  }
  const sharp = await loadSharp();
  const { width, height, data } = drawn;
  const columns = Math.floor((width - 20) / CHAR_WIDTH);
  const lines = [...wrap(`USER: ${QUESTION}`, columns).map((t) => ({ t, fill: '#444' })), ...wrap(`ASSISTANT: ${answer}`, columns).map((t) => ({ t, fill: 'black' }))];
  const captionHeight = LINE_HEIGHT * lines.length + 12;
  const rowHeight = panels.length ? PANEL + LINE_HEIGHT + 16 : 0;
  const slot = Math.floor(width / Math.max(1, panels.length));
  const row = await Promise.all(panels.map(async ({ image }, i) => ({
    input: await sharp(Buffer.from(image.data), { raw: { width: image.width, height: image.height, channels: 3 } }).resize(PANEL, PANEL, { kernel: 'nearest' }).png().toBuffer(),
    top: height + LINE_HEIGHT + 8,
    left: i * slot + Math.floor((slot - PANEL) / 2),
  })));
  const labels = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${LINE_HEIGHT + 8}">` +
      `<rect width="100%" height="100%" fill="white"/>` +
      panels.map(({ label }, i) => `<text x="${i * slot + slot / 2}" y="${LINE_HEIGHT}" text-anchor="middle" ${FONT} fill="#444">${escape(label)}</text>`).join('') +
      `</svg>`,
  );
  const caption = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${captionHeight}">` +
      `<rect width="100%" height="100%" fill="white"/>` +
      lines.map(({ t, fill }, i) => `<text x="10" y="${LINE_HEIGHT * (i + 1)}" ${FONT} fill="${fill}">${escape(t)}</text>`).join('') +
      `</svg>`,
  );
  const file = path.join(root, 'docs', 'images', 'miniature.png');
  await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
    .extend({ bottom: rowHeight + captionHeight, background: 'white' })
    .composite([...(panels.length ? [{ input: labels, top: height, left: 0 }, ...row] : []), { input: caption, top: height + rowHeight, left: 0 }])
    .png({ palette: true, compressionLevel: 9 })
    .toFile(file);
  const listed = [scored && `\`model.segment()\` finds ${listFound(scored)}`, posed && `\`model.pose()\` finds ${listFound(posed)}`].filter(Boolean);
  const calls = [scored && 'segment()', posed && 'pose()'].filter(Boolean);
  const drawnBelow = panels.map((p) => p.label.replace(/\(.*/, '()'));
  const block = [
    `<!-- generated by \`npm run pictures\` (scripts/readme-miniature.ts) from ${path.relative(root, weights)}: edit the script, not this block -->`,
    `![The miniature's example picture${calls.length ? ` with ${calls.join(' and ')} drawn` : ''}${drawnBelow.length ? `, what ${drawnBelow.join(' and ')} make` : ''}, and its answer](docs/images/miniature.png)`,
    '',
    `*\`npm start\`'s picture: the embedded miniature answers "${QUESTION}"${listed.length ? `; ${listed.join('; ')}` : ''}${
      panels.length ? `; below, \`${panels.map((p) => p.label).join('` and `')}\` at 64 pixels` : ''}.*`,
    '',
  ].join('\n');
  const readmeFile = path.join(root, 'README.md');
  fs.writeFileSync(readmeFile, replaceBlock(fs.readFileSync(readmeFile, 'utf8'), 'miniature', block));
  console.error(`wrote ${path.relative(root, file)} (${width}x${height + rowHeight + captionHeight}) and the README block`);
}

/** The best few detections (or pose instances) above the threshold with their scores and how many more were drawn, or how near the best came. */
function listFound(scored: SegmentResult | PoseResult): string {
  const drawn = scoredItems(keptAbove(scored));
  const named = drawn.slice(0, LISTED).map((d) => `${d.label} ${d.score.toFixed(2)}`);
  const more = drawn.length - named.length;
  if (named.length) return `${named.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
  const best = scoredItems(scored)[0];
  return `nothing above ${DEFAULT_THRESHOLD}${best ? ` (the best: ${best.label} ${best.score.toFixed(2)})` : ''}`;
}

/** Words into lines of at most `columns` characters. */
function wrap(text: string, columns: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.length ? lines[lines.length - 1]! : undefined;
    if (last !== undefined && last.length + 1 + word.length <= columns) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
