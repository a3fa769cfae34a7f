/**
 * The page of `visionllm serve` (src/server/page) in headless Chromium, against the server with a
 * fake backend: choose a picture, ask, watch the answer stream in, and find the detection's box
 * drawn on the canvas. The screenshot goes to test-artifacts/server-page.png for a look.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/server/app.js';
import type { Backend, CompletionRequest, CompletionResult } from '../src/server/backend.js';
import { PAGE_BUILD_COMMAND } from '../src/server/page-route.js';
import { Mask, type Rle } from '../src/image/mask.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const IMAGE = path.join(ROOT, 'test/fixtures/images/small.jpg');
const SCREENSHOT = path.join(ROOT, 'test-artifacts/server-page.png');

/** small.jpg is 83x61; the fake results are in its pixels. */
const WIDTH = 83;
const HEIGHT = 61;
const BOX: [number, number, number, number] = [8, 12, 44, 52];
/** overlay.ts's first palette colour: a result's first object is drawn in it. */
const FIRST_COLOUR = [255, 59, 48];
const PIECES = ['There is ', 'a person ', '[DET] ', 'and their pose ', '[POSE].'];
const PROMPT = 'Please detect the person in the image.';

/** A filled rectangle as pycocotools' uncompressed RLE (what the server sends). */
function rectangleRle(h: number, w: number, [x0, y0, x1, y1]: readonly number[]): Rle {
  const bits = Array.from({ length: h * w }, (_, i) => (i % w >= x0! && i % w < x1! && Math.floor(i / w) >= y0! && Math.floor(i / w) < y1! ? 1 : 0));
  return Mask.fromBitmap(bits, w, h).toJSON();
}

const RESULTS: CompletionResult['results'] = [
  { decoder: 'gdino', task: 'detect', classes: ['person'], detections: [{ label: 'person', score: 0.91, box: BOX, mask: rectangleRle(HEIGHT, WIDTH, [12, 16, 40, 48]) }] },
  {
    decoder: 'unipose',
    task: 'pose',
    keypointNames: ['nose', 'left shoulder', 'right shoulder', 'left hip', 'right hip'],
    instances: [
      {
        label: 'person',
        score: 0.8,
        box: [52, 6, 78, 56],
        keypoints: [
          { name: 'nose', x: 65, y: 12, visible: 1 },
          { name: 'left shoulder', x: 72, y: 22, visible: 1 },
          { name: 'right shoulder', x: 58, y: 22, visible: 1 },
          { name: 'left hip', x: 70, y: 42, visible: 1 },
          { name: 'right hip', x: 60, y: 42, visible: 1 },
        ],
      },
    ],
  },
];

/** Streams PIECES a little apart, then the results; remembers what it was asked. */
class FakeBackend implements Backend {
  readonly modelName = 'fake-visionllm';
  readonly requests: CompletionRequest[] = [];

  async submit(request: CompletionRequest, { onText }: { onText?: (text: string) => void }): Promise<CompletionResult> {
    this.requests.push(request);
    for (const piece of PIECES) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      onText?.(piece);
    }
    return { text: PIECES.join(''), finishReason: 'stop', promptTokens: 12, completionTokens: PIECES.length, results: RESULTS };
  }

  depth(): number {
    return 0;
  }

  async health(): Promise<Record<string, unknown>> {
    return { fake: true };
  }

  async close(): Promise<void> {}
}

/** The page at `url` with small.jpg chosen and PROMPT typed; errors thrown in the page are collected. */
async function pageWithPicture(browser: Browser, url: string): Promise<{ page: Page; pageErrors: string[] }> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  await page.goto(url);
  const input = await page.$('#image-input');
  await input!.uploadFile(IMAGE);
  await page.waitForSelector('#picture:not([hidden])');
  await page.type('#prompt', PROMPT);
  return { page, pageErrors };
}

/** Sends and waits for the answer to finish streaming. */
async function sendAndWait(page: Page): Promise<string | null> {
  await page.click('#send');
  await page.waitForSelector('#messages .assistant[aria-busy="false"]', { timeout: 10_000 });
  return page.$eval('#messages .assistant .text', (e) => e.textContent);
}

describe.skipIf(!fs.existsSync(CHROMIUM))(`the server's page in Chromium (skipped when ${CHROMIUM} is not installed: apt-get install chromium)`, () => {
  const backend = new FakeBackend();
  const apps: FastifyInstance[] = [];
  let browser: Browser;

  /** The server with the fake backend, listening on a free port: its URL. */
  async function serve(apiKey?: string): Promise<string> {
    const app = await buildApp({ backend, apiKey, logger: false });
    apps.push(app);
    return app.listen({ host: '127.0.0.1', port: 0 });
  }

  beforeAll(async () => {
    const [command, ...args] = PAGE_BUILD_COMMAND.split(' ');
    const build = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin', command!), ...args], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`${PAGE_BUILD_COMMAND} failed:\n${build.stdout}${build.stderr}`);
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
  });

  afterAll(async () => {
    await browser?.close();
    for (const app of apps) await app.close();
  });

  it('streams the answer and draws the detection over the uploaded picture', async () => {
    const { page, pageErrors } = await pageWithPicture(browser, await serve());
    backend.requests.length = 0;
    const answer = await sendAndWait(page);

    expect(answer).toBe(PIECES.join(''));
    expect(backend.requests).toHaveLength(1);
    expect(backend.requests[0]!.prompt).toBe(PROMPT);
    expect(backend.requests[0]!.imageBase64).toBe(fs.readFileSync(IMAGE).toString('base64'));
    expect(await page.$$eval('#result-list li', (items) => items.map((i) => i.textContent))).toEqual([
      'person 0.91 at (8, 12)–(44, 52), with a mask',
      'person 0.80 at (52, 6)–(78, 56), 5 keypoints',
    ]);

    // The canvas is the picture scaled up: sample the middle half of the box's right and bottom edges.
    const edge = await page.$eval(
      '#picture',
      (canvas, [x0, y0, x1, y1], width) => {
        const scale = canvas.width / width;
        const ctx = canvas.getContext('2d');
        const pixel = (x: number, y: number) => Array.from(ctx.getImageData(Math.floor(x * scale), Math.floor(y * scale), 1, 1).data as ArrayLike<number>);
        const along: number[][] = [];
        for (let t = 0.25; t <= 0.75; t += 0.05) along.push(pixel(x1, y0 + t * (y1 - y0)), pixel(x0 + t * (x1 - x0), y1));
        return along;
      },
      BOX,
      WIDTH,
    );
    expect(edge.length).toBeGreaterThan(10);
    for (const [r, g, b, a] of edge) {
      expect(Math.max(Math.abs(r! - FIRST_COLOUR[0]!), Math.abs(g! - FIRST_COLOUR[1]!), Math.abs(b! - FIRST_COLOUR[2]!))).toBeLessThanOrEqual(2);
      expect(a).toBe(255);
    }
    expect(pageErrors).toEqual([]);

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT as `${string}.png`, fullPage: true });
  });

  it('asks for the API key when the server answers 401, then sends again with it', async () => {
    const { page, pageErrors } = await pageWithPicture(browser, await serve('secret-key'));
    expect(await page.$eval('#api-key-row', (e) => e.hidden)).toBe(true);
    await page.click('#send');
    await page.waitForSelector('#api-key-row:not([hidden])');
    expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/needs an API key/);
    expect(await page.$eval('#prompt', (e) => e.value)).toBe(PROMPT);
    expect(await page.$$('#messages li')).toHaveLength(0);

    await page.type('#api-key', 'secret-key');
    expect(await sendAndWait(page)).toBe(PIECES.join(''));
    expect(pageErrors).toEqual([]);
  });
});
