/**
 * The built CLI (dist/src/cli.js) as a user runs it: usage errors caught before the model loads,
 * the tiny weights' default picture however their folder is named, and a reader that stops early.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, TEST_DIR } from './helpers.js';

const ROOT = path.resolve(TEST_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

function cli(args: string[], cwd = ROOT): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
}

let tmp: string;
beforeAll(() => {
  ensureBuilt([CLI]);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'visionllm-cli-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('visionllm chat: usage errors', () => {
  const usage = /usage: visionllm/;
  const cases: [string[], RegExp][] = [
    [['--image', 'missing.png'], /^--image 'missing\.png' cannot be read: no such file$/m],
    [['chat', '--image', 'test'], /^--image 'test' cannot be read: a directory, not a file$/m],
    [['--weights', 'nowhere'], /^--weights 'nowhere' cannot be read: no such directory$/m],
    [['--max-new-tokens', 'abc'], /^--max-new-tokens must be an integer >= 1, got 'abc'$/m],
    [['--max-new-tokens', ''], /^--max-new-tokens must be an integer >= 1, got ''$/m],
    [['--max-new-tokens', '0'], /^--max-new-tokens must be an integer >= 1, got '0'$/m],
    [['--top-k', '-1'], /^--top-k must be a non-negative integer \(0: off\), got '-1'$/m],
    [['--top-k=-1'], /^--top-k must be a non-negative integer \(0: off\), got '-1'$/m],
    [['--top-k', '2.5'], /^--top-k must be a non-negative integer \(0: off\), got '2\.5'$/m],
    [['--top-p', '0'], /^--top-p must be a number in \(0, 1\], got '0'$/m],
    [['--top-p', '1.5'], /^--top-p must be a number in \(0, 1\], got '1\.5'$/m],
    [['--temperature', '-0.5'], /^--temperature must be a finite number >= 0, got '-0\.5'$/m],
    [['--temperature', 'Infinity'], /^--temperature must be a finite number >= 0, got 'Infinity'$/m],
    [['--seed', '4294967296'], /^--seed must be an integer in \[0, 4294967295\], got '4294967296'$/m],
    [['--seed'], /^--seed needs a value$/m],
    [['--seed', '--stats'], /^--seed needs a value$/m],
    [['--f32=yes'], /^--f32 takes no value, got '--f32=yes'$/m],
  ];

  it.each(cases)('%j: exit 2 before loading, nothing on stdout', (args, message) => {
    const run = cli(args);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(usage); // a bad value: the message says all
    expect(run.stderr).not.toMatch(/loaded|Warning/); // neither the model nor the GPU was touched
    expect(run.stdout).toBe('');
    expect(run.status).toBe(2);
  });

  it('names unknown options and stray arguments, with the usage', () => {
    for (const [args, message] of [
      [['--foo'], /^unknown option --foo$/m],
      [['chat', '-x'], /^unknown option -x$/m],
      [['chat', 'extra'], /^unexpected argument 'extra'$/m],
      [['chatt'], /^unknown command 'chatt'$/m],
    ] as [string[], RegExp][]) {
      const run = cli(args);
      expect(run.stderr, args.join(' ')).toMatch(message);
      expect(run.stderr).toMatch(usage);
      expect([run.status, run.stdout]).toEqual([2, '']);
    }
    const help = cli(['chat', '--help']);
    expect([help.status, help.stderr]).toEqual([0, '']);
    expect(help.stdout).toMatch(usage);
  });
});

describe('visionllm chat', () => {
  /** A one-token chat with --stats: the image line and the tile count come back on stderr. */
  const tiles = (run: SpawnSyncReturns<string>) => {
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^ASSISTANT: /);
    return Number(/image: (\d+) tile\(s\)/.exec(run.stderr)?.[1]);
  };

  it("uses the checkpoint's example.png when given no --image, however the weights are named", () => {
    // Relative with a trailing slash, from the project root.
    expect(tiles(cli(['--weights', 'weights/tiny/', '--max-new-tokens', '1', '--stats']))).toBe(3);
    // Through a symlink, relative to another folder; valid sampling settings at their limits pass.
    fs.symlinkSync(path.join(ROOT, 'weights', 'tiny'), path.join(tmp, 'w'));
    const args = ['--weights', 'w/', '--max-new-tokens', '2', '--temperature', '0.7', '--top-k', '0', '--top-p', '1', '--seed', '4294967295', '--stats'];
    const run = cli(args, tmp);
    expect(tiles(run)).toBe(3);
    expect(run.stderr).toContain(`image: ${path.join(tmp, 'w', 'example.png')}`);
  });

  it('stops quietly when stdout closes early (| head -c 5)', () => {
    // PIPESTATUS[0] is node's exit status; pipefail stays off, as in an interactive shell.
    const script = `'${process.execPath}' '${CLI}' chat --weights weights/tiny --max-new-tokens 40 --stats | head -c 5; echo "node exit \${PIPESTATUS[0]}" >&2`;
    const run = spawnSync('bash', ['-c', script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(run.stdout).toBe('ASSIS');
    expect(run.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect(run.stderr).toMatch(/^finish: aborted/m); // the closed pipe ended generation early
    expect(run.stderr).toMatch(/^node exit 0$/m);
  });
});
