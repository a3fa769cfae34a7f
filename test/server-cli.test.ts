/**
 * `visionllm serve` from the command line: its options checked before anything loads, and the
 * built CLI (dist/src/cli.js) serving the tiny checkpoint until SIGTERM, which lets the request
 * in flight finish and exits 0.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/cli/options.js';
import { parseServeArgs } from '../src/cli/serve-options.js';
import { ensureBuilt, TEST_DIR, TINY_WEIGHTS } from './helpers.js';
import { freePort } from './redis-server.js';
import { ServeProcess } from './serve-process.js';

const ROOT = path.resolve(TEST_DIR, '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

beforeAll(() => ensureBuilt([CLI]));

describe('serve options', () => {
  it('defaults: loopback, port 8080, 64 queued, 120 s, 32 MiB, no key, no Redis', () => {
    expect(parseServeArgs(['--weights', TINY_WEIGHTS], {})).toEqual({
      weights: TINY_WEIGHTS, modelName: 'tiny', host: '127.0.0.1', port: 8080, queueSize: 64, timeoutMs: 120_000,
      maxBodyBytes: 32 * 2 ** 20, apiKey: undefined, redis: undefined, quiet: false,
    });
  });

  it('every option, and the key from VISIONLLM_API_KEY', () => {
    const args = parseServeArgs(
      ['--weights', TINY_WEIGHTS, '--host', '0.0.0.0', '--port', '0', '--queue-size', '2', '--timeout', '1.5', '--max-body', '512kb', '--redis', 'redis://127.0.0.1:6379', '--role', 'worker', '--quiet'],
      { VISIONLLM_API_KEY: 'from-env' },
    );
    expect(args).toEqual({
      weights: TINY_WEIGHTS, modelName: 'tiny', host: '0.0.0.0', port: 0, queueSize: 2, timeoutMs: 1500, maxBodyBytes: 512 * 1024,
      apiKey: 'from-env', redis: { url: 'redis://127.0.0.1:6379', role: 'worker' }, quiet: true,
    });
    expect(parseServeArgs(['--weights', TINY_WEIGHTS, '--api-key', 'flag', '--max-body', '1048576'], { VISIONLLM_API_KEY: 'env' })).toMatchObject({ apiKey: 'flag', maxBodyBytes: 1048576 });
    expect(parseServeArgs(['--redis', 'redis://h:1', '--role', 'api'], {})).toMatchObject({ weights: undefined, modelName: 'visionllm', redis: { role: 'api' } });
  });

  it.each([
    [[], /^--weights is required: the checkpoint directory to serve$/],
    [['--port', '70000'], /^--port must be an integer in \[0, 65535\] \(0: any free port\), got '70000'$/],
    [['--queue-size', '0'], /^--queue-size must be an integer >= 1, got '0'$/],
    [['--timeout', '0'], /^--timeout must be a number of seconds > 0, got '0'$/],
    [['--max-body', '32 parsecs'], /^--max-body must be a size such as 32mb, 512kb or 1048576 \(bytes\), got '32 parsecs'$/],
    [['--role', 'api'], /^--role needs --redis/],
    [['--redis', 'http://host:6379'], /^--redis must be a redis:\/\/ or rediss:\/\/ URL, got 'http:\/\/host:6379'$/],
    [['--redis', 'redis://h:1', '--role', 'boss'], /^--role must be one of all, api, worker, got 'boss'$/],
    [['--api-key', ''], /^--api-key \(or VISIONLLM_API_KEY\) must not be empty$/],
    [['--out', 'x.png'], /^unknown option --out$/],
  ])('%j: a usage error', (argv, message) => {
    const withWeights = argv.length && !argv.includes('--redis') ? ['--weights', TINY_WEIGHTS, ...argv] : argv;
    expect(() => parseServeArgs(withWeights, {})).toThrow(UsageError);
    expect(() => parseServeArgs(withWeights, {})).toThrow(message);
  });
});

describe('the built CLI', () => {
  it('--help and a usage error exit before anything loads', () => {
    const help = spawnSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: visionllm serve --weights DIR/);
    const bad = spawnSync(process.execPath, [CLI, 'serve', '--weights', TINY_WEIGHTS, '--port', 'x'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^--port must be an integer/m);
  });

  it('serves until SIGTERM, lets the request in flight finish, and exits 0', async () => {
    const port = await freePort();
    const server = ServeProcess.start(['--weights', TINY_WEIGHTS, '--port', String(port), '--quiet']);
    await server.waitFor(new RegExp(`listening on http://127\\.0\\.0\\.1:${port}\n`), 60_000);
    const base = `http://127.0.0.1:${port}`;
    expect(await (await fetch(`${base}/health`)).json()).toMatchObject({ status: 'ok', model: 'tiny' });

    // An image question: its prefill keeps the request running while the signal comes.
    const image = `data:image/png;base64,${fs.readFileSync(path.join(TEST_DIR, 'fixtures', 'images', 'wide.png')).toString('base64')}`;
    const answer = fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe the picture.' }, { type: 'image_url', image_url: { url: image } }] }], max_tokens: 48, stream: true }),
    });
    while (((await (await fetch(`${base}/health`)).json()) as { queueDepth: number }).queueDepth === 0) await new Promise((r) => setTimeout(r, 5));
    server.kill('SIGTERM'); // mid-answer
    const res = await answer;
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(text).toMatch(/"finish_reason":"(stop|length)"/);
    expect(await server.exited).toBe(0);
    await expect(fetch(`${base}/health`)).rejects.toThrow(); // no longer listening
  });
});
