/**
 * An evaluation set of ShapesWorld pictures and their conversations, drawn by the Python generator
 * (scripts/shapesworld, numpy and Pillow only) into a folder, once per seed and count.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { WorldTurn } from './scoring.js';

/** A region-captioning turn: its `<region>` is the box of the object it names. */
export type RegionTurn = WorldTurn & Required<Pick<WorldTurn, 'box'>>;

export interface WorldPicture {
  index: number;
  file: string;
  turns: WorldTurn[];
  regions: RegionTurn[];
}

/** Bumped when conversations.py's output changes, so a cached set is drawn again. */
const FORMAT = 2;

/** A python3 that imports numpy and PIL: the one on PATH, else the system one. */
function python(): string {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(candidate, ['-c', 'import numpy, PIL'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next
    }
  }
  throw new Error('eval: no python3 with numpy and Pillow found (Debian: apt-get install python3-numpy python3-pil); the pictures come from scripts/shapesworld');
}

export function worldSet(root: string, folder: string, seed: number, count: number): WorldPicture[] {
  const conversations = path.join(folder, 'conversations.jsonl');
  const done = path.join(folder, 'done.json');
  const wanted = JSON.stringify({ seed, count, format: FORMAT });
  if (!fs.existsSync(done) || fs.readFileSync(done, 'utf8') !== wanted) {
    fs.rmSync(folder, { recursive: true, force: true });
    fs.mkdirSync(folder, { recursive: true });
    const py = python();
    const run = (script: string, out: string) =>
      execFileSync(py, ['-P', path.join(root, 'scripts', 'shapesworld', script), '--seed', String(seed), '--count', String(count), '--out', out], { stdio: 'ignore' });
    run('render.py', folder);
    run('conversations.py', conversations);
    fs.writeFileSync(done, wanted);
  }
  return fs.readFileSync(conversations, 'utf8').trim().split('\n').map((line) => {
    const { index, turns, regions } = JSON.parse(line) as { index: number; turns: WorldTurn[]; regions: RegionTurn[] };
    return { index, file: path.join(folder, `${seed}-${index}.png`), turns, regions };
  });
}
