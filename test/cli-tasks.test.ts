/**
 * The task commands and chat's --out / --json, run as a user runs the built CLI, on the tiny
 * weights (weights/tiny, which has every decoder): pictures in the format --out names at the
 * upright input's size, JSON alone on stdout, and every usage error caught before the model
 * loads. One process per case (a few seconds each).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DecoderOutput } from '../src/decoders/decoder.js';
import { chatPicture } from '../src/cli/pictures.js';
import { ensureBuilt, TEST_DIR, TINY_WEIGHTS } from './helpers.js';

const ROOT = path.resolve(TEST_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
const IMAGES = path.join(TEST_DIR, 'fixtures', 'images');

function cli(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
}

/** A command on the tiny checkpoint, which has every decoder (the default, the miniature, has none yet). */
function tiny(args: string[]): SpawnSyncReturns<string> {
  return cli([...args, '--weights', TINY_WEIGHTS]);
}

/** A run that worked: exit 0, and what it said on stderr when not. */
function ok(run: SpawnSyncReturns<string>): SpawnSyncReturns<string> {
  expect(run.status, run.stderr).toBe(0);
  return run;
}

async function picture(file: string): Promise<{ format?: string; width?: number; height?: number }> {
  const { format, width, height } = await sharp(file).metadata();
  return { format, width, height };
}

let tmp: string;
beforeAll(() => {
  ensureBuilt([CLI]);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'visionllm-cli-tasks-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('visionllm task commands: usage errors before loading', () => {
  const cases: [string[], RegExp][] = [
    [['detekt'], /^unknown command 'detekt'$/m],
    [['detect', '--threshold', '2'], /^--threshold must be a number in \[0, 1\], got '2'$/m],
    [['detect', '--classes', ''], /^--classes must be comma-separated names, none empty, got ''$/m],
    [['pose', '--keypoints', 'nose,,left eye'], /^--keypoints must be comma-separated names, none empty, got 'nose,,left eye'$/m],
    [['detect', '--out', 'x.gif'], /^--out 'x\.gif': the extension must name a picture format \(\.png, \.jpg, \.jpeg, \.webp\)$/m],
    [['detect', '--out', 'nowhere/x.png'], /^--out 'nowhere\/x\.png' cannot be written: no folder nowhere$/m],
    [['generate', '--steps', '2'], /^generate needs --prompt TEXT$/m],
    [['ground', '--phrase', 'red car, blue car'], /^--phrase 'red car, blue car' may not hold ','/m],
    [['segment', '--mode', 'panoptic'], /^--mode must be one of instance, semantic, got 'panoptic'$/m],
    [['segment', '--mode', 'semantic', '--top-k', '5'], /^--threshold and --top-k apply to instances, not to --mode semantic$/m],
    [['generate', '--prompt', 'x', '--scheduler', 'lms'], /^--scheduler must be one of pndm, euler_ancestral, ddim, got 'lms'$/m],
    [['edit', '--prompt', 'x', '--width', '64'], /^unknown option --width$/m],
    [['look', '--json'], /^look prints a summary; use chat or detect for --json$/m],
    [['look', '--threshold', '-1'], /^--threshold must be a number in \[0, 1\], got '-1'$/m],
  ];

  it.each(cases)('%j: exit 2, nothing on stdout', (args, message) => {
    const run = cli(args);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(/loaded|Warning/); // neither the model nor the GPU was touched
    expect([run.status, run.stdout]).toEqual([2, '']);
  });

  it('asks for --image when the weights have no default picture', () => {
    const weights = path.join(tmp, 'other-weights');
    fs.mkdirSync(weights);
    const run = cli(['detect', '--weights', weights, '--out', path.join(tmp, 'never.png')]);
    expect(run.stderr).toMatch(/^detect needs --image FILE/m);
    expect([run.status, run.stdout]).toEqual([2, '']);
  });

  it('lists the commands, and shows each one with examples', () => {
    const all = ok(cli(['--help']));
    for (const command of ['chat', 'look', 'detect', 'segment', 'ground', 'pose', 'generate', 'edit', 'info']) expect(all.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    const detect = ok(cli(['detect', '--help']));
    expect(detect.stdout).toMatch(/^usage: visionllm detect/);
    expect(detect.stdout).toMatch(/^examples:\n  visionllm detect /m);
  });
});

describe('visionllm detect, segment, ground, pose', () => {
  it('detect --out --json: the upright picture with boxes, and JSON alone on stdout', async () => {
    const input = path.join(IMAGES, 'rotated.jpg'); // stored 353x517, EXIF orientation 6
    const out = path.join(tmp, 'boxes.png');
    const run = ok(tiny(['detect', '--image', input, '--classes', 'person,dog', '--threshold', '0', '--out', out, '--json']));
    const result = JSON.parse(run.stdout);
    expect(result).toMatchObject({ task: 'detect', classes: ['person', 'dog'], width: 517, height: 353 });
    expect(result.detections.length).toBeGreaterThan(0);
    for (const d of result.detections) expect(d.box).toHaveLength(4);
    expect(run.stdout).not.toMatch(/classEmbeddings/);

    expect(await picture(out)).toEqual({ format: 'png', width: 517, height: 353 });
    const plain = await sharp(input).rotate().removeAlpha().raw().toBuffer();
    const drawn = await sharp(out).removeAlpha().raw().toBuffer();
    expect(drawn.length).toBe(plain.length);
    expect(drawn.equals(plain)).toBe(false);
  });

  it('segment --mode semantic --out x.jpg: a JPEG of the default picture', async () => {
    const out = path.join(tmp, 'map.jpg');
    const run = ok(tiny(['segment', '--mode', 'semantic', '--classes', 'sky,tree', '--out', out]));
    expect(run.stdout).toMatch(/^(sky|tree) \d+\.\d%$/m);
    expect(await picture(out)).toEqual({ format: 'jpeg', width: 520, height: 260 });
  });

  it('ground --phrase --json: the phrase labels the box', () => {
    const run = ok(tiny(['ground', '--phrase', 'red car', '--json']));
    const result = JSON.parse(run.stdout);
    expect(result).toMatchObject({ task: 'ground', phrase: 'red car' });
    expect(result.detections).toHaveLength(1);
    expect(result.detections[0].label).toBe('red car');
    expect(result.detections[0].mask.size).toEqual([260, 520]); // the RLE, not the pixels
  });

  it('pose --out: a picture, and a summary line per instance', async () => {
    const out = path.join(tmp, 'pose.png');
    const run = ok(tiny(['pose', '--threshold', '0', '--top-k', '3', '--out', out]));
    expect(run.stdout.trim().split('\n')).toHaveLength(3);
    expect(run.stdout).toMatch(/^person \d\.\d\d \[\d+, \d+, \d+, \d+\] 17 keypoints$/m);
    expect(await picture(out)).toEqual({ format: 'png', width: 520, height: 260 });
  });
});

describe('visionllm look', () => {
  it('answers, then prints the detections, the people\'s keypoints and the path of the picture it drew them on', async () => {
    const out = path.join(tmp, 'look.png');
    const run = ok(tiny(['look', '--classes', 'person,dog', '--threshold', '0', '--out', out]));
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ASSISTANT: \S/);
    expect(lines[1]).toBe('detections (person, dog):');
    expect(lines[2]).toMatch(/^  (person|dog) \d\.\d\d \[\d+, \d+, \d+, \d+\]$/);
    const posed = lines.indexOf('keypoints (person):');
    expect(posed).toBeGreaterThan(2);
    expect(lines[posed + 1]).toMatch(/^  person \d\.\d\d \[\d+, \d+, \d+, \d+\] 17 keypoints$/);
    expect(lines.at(-1)).toBe(`wrote ${out}`);
    expect(await picture(out)).toEqual({ format: 'png', width: 520, height: 260 });
  });

  it('with nothing above the threshold, says how near the best detection came', () => {
    const run = ok(tiny(['look', '--classes', 'person,dog', '--threshold', '1', '--out', path.join(tmp, 'look-none.png')]));
    const lines = run.stdout.trim().split('\n');
    expect(lines[2]).toBe('  no detection above the threshold');
    expect(lines[3]).toMatch(/^  \(the best: (person|dog) \d\.\d\d; --threshold 1 is the bar\)$/);
  });
});

describe('visionllm generate and edit', () => {
  it('generate --out g.png: the size asked for', async () => {
    const out = path.join(tmp, 'g.png');
    ok(tiny(['generate', '--prompt', 'a red square', '--steps', '2', '--width', '24', '--height', '16', '--out', out]));
    expect(await picture(out)).toEqual({ format: 'png', width: 24, height: 16 });
  });

  it('generate without --out: the size on stdout, and a hint on stderr', () => {
    const run = ok(tiny(['generate', '--prompt', 'a red square', '--steps', '1', '--width', '8', '--height', '8', '--scheduler', 'euler_ancestral']));
    expect(run.stdout).toBe('image 8x8\n');
    expect(run.stderr).toMatch(/--out FILE writes the image/);
  });

  it('edit --out e.webp: the image floored to the VAE factor (83x61 -> 80x60)', async () => {
    const out = path.join(tmp, 'e.webp');
    ok(tiny(['edit', '--image', path.join(IMAGES, 'small.jpg'), '--prompt', 'make it snowy', '--steps', '2', '--out', out]));
    expect(await picture(out)).toEqual({ format: 'webp', width: 80, height: 60 });
  });
});

describe('visionllm chat --out, --json', () => {
  it('--out: the picture when the answer routed to a decoder, else a note and exit 0', async () => {
    // The tiny model answers freely; it usually routes nothing, and either way is a valid run.
    const out = path.join(tmp, 'chat.png');
    const run = ok(tiny(['chat', '--prompt', 'Please detect the person in the image.', '--max-new-tokens', '12', '--out', out]));
    expect(run.stdout).toMatch(/^ASSISTANT: /);
    if (fs.existsSync(out)) expect((await picture(out)).width).toBeGreaterThan(0);
    else expect(run.stderr).toMatch(/^the answer has no decoder results; nothing written to .*chat\.png$/m);
  });

  it('--json: JSON alone on stdout, the answer streamed on stderr', () => {
    const run = ok(tiny(['chat', '--max-new-tokens', '4', '--json']));
    const result = JSON.parse(run.stdout);
    expect(result).toMatchObject({ text: expect.any(String), finishReason: expect.any(String), outputs: expect.any(Array) });
    expect(run.stderr).toContain(`ASSISTANT: ${result.text}`);
  });
});

describe("chat --out's picture (src/cli/pictures.ts), for answers the tiny model does not give freely", () => {
  const image = { width: 32, height: 24, data: new Uint8Array(32 * 24 * 3).fill(128) };
  const output = (fields: object) => ({ tokens: [], phrases: [], dispose() {}, ...fields }) as unknown as DecoderOutput;

  it('draws detections over the image, takes a generated image as it is, and says why there is none', async () => {
    const detection = { label: 'dog', classIndex: 0, query: 0, score: 0.9, box: [4, 4, 20, 16] };
    const drawn = await chatPicture(image, [output({ decoder: 'gdino', task: 'detection', classes: ['dog'], detections: [detection] })]);
    expect('data' in drawn && [drawn.width, drawn.height, Buffer.from(drawn.data).equals(Buffer.from(image.data))]).toEqual([32, 24, false]);
    const made = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) };
    expect(await chatPicture(image, [output({ decoder: 'sd', task: 'generation', images: [made] })])).toBe(made);
    expect(await chatPicture(image, [])).toEqual({ none: 'the answer has no decoder results' });
    expect(await chatPicture(image, [output({ decoder: 'gdino', task: 'detection', classes: ['dog'], detections: [] })])).toEqual({ none: "no decoder of the answer (gdino) gave anything to draw" });
  });

  it('reads outputs by field: a pose, and a decoder it has never heard of', async () => {
    const keypoints = [{ name: 'left shoulder', x: 8, y: 8, visible: 1 }, { name: 'left elbow', x: 20, y: 16, visible: 1 }];
    const pose = await chatPicture(image, [output({ decoder: 'unipose', task: 'pose', keypointNames: ['left shoulder', 'left elbow'], instances: [{ label: 'person', classIndex: 0, query: 0, score: 0.8, box: [2, 2, 28, 20], keypoints }] })]);
    expect('data' in pose && Buffer.from(pose.data).equals(Buffer.from(image.data))).toBe(false);
    const custom = await chatPicture(image, [output({ decoder: 'my-detector', task: 'detection', detections: [{ label: 'cat', classIndex: 2, query: 0, score: 1, box: [1, 1, 9, 9] }] })]);
    expect('data' in custom && Buffer.from(custom.data).equals(Buffer.from(image.data))).toBe(false);
  });
});
