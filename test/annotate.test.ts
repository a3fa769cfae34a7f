/**
 * annotate(): pictures of decoder results. One committed picture pins the whole drawing (labels off:
 * text depends on the machine's fonts); the other tests check geometry where it can be stated.
 * UPDATE_ANNOTATE_PNG=1 rewrites test/fixtures/annotate/expected.png from the current drawing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { Detection, SemanticMap } from '../src/decoders/gdino/postprocess.js';
import type { PoseDetection } from '../src/decoders/unipose/postprocess.js';
import { annotate, type Annotations } from '../src/image/annotate.js';
import { paletteColour, type Rgb } from '../src/image/annotate-style.js';
import { decodeImage, decodeImageFile } from '../src/image/decode.js';
import { encodePng } from '../src/image/encode.js';
import type { RgbImage } from '../src/image/gpu-image.js';
import { Mask } from '../src/image/mask.js';
import type { DetectResult, GroundResult, PoseResult, SegmentResult } from '../src/model/tasks/results.js';
import { COCO_KEYPOINTS, COCO_SKELETON } from '../src/model/tasks/vocabularies.js';

const EXPECTED = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'annotate', 'expected.png');
const GREY: Rgb = [128, 128, 128];

function image(width: number, height: number, colour: (x: number, y: number) => Rgb): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(colour(x, y), (y * width + x) * 3);
  return { width, height, data };
}

const pixel = (img: RgbImage, x: number, y: number): Rgb => [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)] as unknown as Rgb;
const near = (a: Rgb, b: Rgb, tol = 2) => a.every((v, c) => Math.abs(v - b[c]!) <= tol);

/** A COCO RLE mask (column-major runs) of the pixels where `inside` holds. */
function mask(width: number, height: number, inside: (x: number, y: number) => boolean): Mask {
  const counts: number[] = [];
  let value = false;
  let run = 0;
  for (let x = 0; x < width; x++) for (let y = 0; y < height; y++) {
    if (inside(x, y) !== value) {
      counts.push(run);
      run = 0;
      value = !value;
    }
    run++;
  }
  counts.push(run);
  return new Mask([height, width], counts);
}

function detection(box: [number, number, number, number], classIndex: number, label: string, extra: Partial<Detection> = {}): Detection {
  return { label, classIndex, query: 0, score: 0.87, box, ...extra };
}

/** A standing figure: COCO's 17 keypoints around (cx, top), about 60 pixels tall. */
function person(cx: number, top: number): PoseDetection {
  const at: Record<string, [number, number]> = {
    nose: [0, 6], 'left eye': [2, 4], 'right eye': [-2, 4], 'left ear': [4, 6], 'right ear': [-4, 6],
    'left shoulder': [8, 16], 'right shoulder': [-8, 16], 'left elbow': [12, 28], 'right elbow': [-12, 28],
    'left wrist': [14, 38], 'right wrist': [-14, 38], 'left hip': [6, 38], 'right hip': [-6, 38],
    'left knee': [7, 50], 'right knee': [-7, 50], 'left ankle': [8, 62], 'right ankle': [-8, 62],
  };
  const keypoints = COCO_KEYPOINTS.map((name) => ({ name, x: cx + at[name]![0], y: top + at[name]![1], visible: 1 }));
  return { label: 'person', classIndex: 0, query: 0, score: 0.9, box: [cx - 16, top, cx + 16, top + 64], keypoints };
}

describe('annotate', () => {
  it('draws masks, boxes and a pose as the committed picture shows', async () => {
    const scene = image(160, 120, (x, y) => [Math.round((x * 255) / 159), Math.round((y * 255) / 119), 96]);
    const blob = mask(160, 120, (x, y) => (x - 45) ** 2 / 400 + (y - 50) ** 2 / 225 <= 1);
    const results: Annotations[] = [
      { detections: [detection([24, 34, 67, 66], 1, 'blob', { mask: blob }), detection([130, -10, 190, 40], 3, 'cut off')] },
      { instances: [person(110, 45)], skeleton: COCO_SKELETON },
    ];
    const out = await annotate(scene, results, { labels: false });
    expect([out.width, out.height, out.data.length]).toEqual([160, 120, 160 * 120 * 3]);
    if (process.env.UPDATE_ANNOTATE_PNG === '1') {
      fs.mkdirSync(path.dirname(EXPECTED), { recursive: true });
      fs.writeFileSync(EXPECTED, await encodePng(out));
    }
    expect(fs.existsSync(EXPECTED), `${EXPECTED} is missing: run with UPDATE_ANNOTATE_PNG=1 and look at it`).toBe(true);
    const want = await decodeImageFile(EXPECTED);
    expect([want.width, want.height]).toEqual([160, 120]);
    const bad = out.data.findIndex((v, i) => Math.abs(v - want.data[i]!) > 1);
    expect(bad, `byte ${bad} (pixel ${Math.floor(bad / 3) % 160}, ${Math.floor(bad / 480)}) is ${out.data[bad]}, expected ${want.data[bad]}`).toBe(-1);
  });

  it('strokes a box inside its edges, leaving the rest of the image alone', async () => {
    const plain = image(120, 120, () => GREY);
    const out = await annotate(plain, { detections: [detection([20, 30, 80, 90], 0, 'box')] }, { lineWidth: 2, labels: false });
    const colour = paletteColour(0);
    for (const [x, y] of [[20, 60], [21, 60], [78, 60], [79, 60], [50, 30], [50, 31], [50, 88], [50, 89], [20, 30], [79, 89]] as const) {
      expect(pixel(out, x, y), `edge pixel (${x}, ${y})`).toEqual(expect.toSatisfy((p: Rgb) => near(p, colour)));
    }
    for (const [x, y] of [[50, 60], [22, 60], [77, 60], [50, 32], [50, 87], [19, 60], [80, 60], [50, 29], [50, 90], [5, 5]] as const) {
      expect(pixel(out, x, y), `pixel (${x}, ${y}) off the edges`).toEqual(GREY);
    }
  });

  it('encloses a known object of an EXIF-rotated picture in the upright pixels', async () => {
    // Stored 90x60 with a bright 20x20 square at x 10..29, y 15..34; orientation 6 turns it clockwise upright.
    const stored = image(90, 60, (x, y) => (x >= 10 && x < 30 && y >= 15 && y < 35 ? [240, 240, 240] : [20, 20, 20]));
    const png = await sharp(Buffer.from(stored.data), { raw: { width: 90, height: 60, channels: 3 } }).withMetadata({ orientation: 6 }).png().toBuffer();
    const img = await decodeImage(png);
    expect([img.orientation, img.width, img.height]).toEqual([6, 60, 90]);
    // Clockwise: stored (x, y) is upright (storedHeight - 1 - y, x).
    const [x0, x1, y0, y1] = [60 - 35, 60 - 15, 10, 30];
    for (let y = 0; y < 90; y++) for (let x = 0; x < 60; x++) {
      const bright = x >= x0 && x < x1 && y >= y0 && y < y1;
      if (pixel(img, x, y)[0] !== (bright ? 240 : 20)) throw new Error(`upright pixel (${x}, ${y}) is not ${bright ? 'the square' : 'background'}`);
    }
    const out = await annotate(img, { detections: [detection([x0 - 3, y0 - 3, x1 + 3, y1 + 3], 2, 'square')] }, { lineWidth: 2, labels: false });
    const colour = paletteColour(2);
    const cx = (x0 + x1) >> 1;
    const cy = (y0 + y1) >> 1;
    // The stroke's two pixels just outside the square's gap on each side, then the gap, then the square untouched.
    for (const [x, y] of [[x0 - 3, cy], [x1 + 2, cy], [cx, y0 - 3], [cx, y1 + 2]] as const) expect(near(pixel(out, x, y), colour), `edge (${x}, ${y})`).toBe(true);
    for (const [x, y] of [[x0 - 1, cy], [x1, cy], [cx, y0 - 1], [cx, y1]] as const) expect(pixel(out, x, y)).toEqual([20, 20, 20]);
    for (const [x, y] of [[cx, cy], [x0, y0], [x1 - 1, y1 - 1]] as const) expect(pixel(out, x, y)).toEqual([240, 240, 240]);
  });

  it('writes label text on a filled tag above the box, escaping it', async () => {
    const plain = image(160, 120, () => GREY);
    const out = await annotate(plain, { detections: [detection([40, 50, 120, 100], 0, 'person')] });
    const fill = paletteColour(0);
    let tag = 0;
    let text = 0;
    for (let y = 34; y < 50; y++) for (let x = 40; x < 90; x++) {
      const p = pixel(out, x, y);
      if (near(p, fill)) tag++;
      else if (!near(p, GREY)) text++;
    }
    expect(tag, 'tag fill above the box').toBeGreaterThan(200);
    expect(text, 'text pixels on the tag').toBeGreaterThan(20);
    // Without the score the tag is shorter: "person" ends before x = 100, "person 0.87" does not.
    const bare = await annotate(plain, { detections: [detection([40, 50, 120, 100], 0, 'person')] }, { scores: false });
    expect([near(pixel(out, 100, 48), fill), pixel(bare, 100, 48)]).toEqual([true, GREY]);
    // A box at the top gets its tag inside the image (its bottom padding at row 15, in the box); user text reaches the SVG escaped.
    const top = await annotate(plain, { detections: [detection([10, 0, 150, 60], 4, `<b>&"quoted" 'x'</b>\u0001`)] });
    expect(near(pixel(top, 100, 15), paletteColour(4))).toBe(true);
    expect(pixel(top, 100, 30)).toEqual(GREY);
  });

  it('tints a semantic map and lists its classes, largest first', async () => {
    const plain = image(160, 120, () => GREY);
    // Class 1 covers the left half, 3 the bottom-right quarter, 0 the top-right quarter; 2 is absent.
    const classes = new Uint32Array(160 * 120).map((_, i) => ((i % 160) < 80 ? 1 : i >= 160 * 60 ? 3 : 0));
    const results = { semantic: { width: 160, height: 120, classes }, classes: ['sky', 'tree', 'road', 'car'] };
    const [tinted, legend] = await Promise.all([annotate(plain, results, { labels: false }), annotate(plain, results)]);
    const tint = (c: Rgb): Rgb => c.map((v, k) => GREY[k]! + 0.45 * (v - GREY[k]!)) as unknown as Rgb;
    expect(near(pixel(tinted, 20, 60), tint(paletteColour(1)))).toBe(true);
    expect(near(pixel(tinted, 140, 100), tint(paletteColour(3)))).toBe(true);
    expect(near(pixel(tinted, 140, 10), tint(paletteColour(0)))).toBe(true);
    // The legend sits in a corner: the rest of the picture is the tint alone.
    expect(Buffer.compare(legend.data.subarray(0, 160 * 3 * 40), tinted.data.subarray(0, 160 * 3 * 40))).not.toBe(0);
    expect(Buffer.compare(legend.data.subarray(160 * 3 * 60), tinted.data.subarray(160 * 3 * 60))).toBe(0);
    // Swatches are opaque palette colours, rows ordered by area: class 1 (half), then 3 and 0 (a quarter each, by index).
    const firstRow = (c: Rgb) => {
      for (let y = 0; y < 60; y++) for (let x = 80; x < 160; x++) if (near(pixel(legend, x, y), c, 0)) return y;
      return -1;
    };
    const rows = [1, 0, 3, 2].map((k) => firstRow(paletteColour(k)));
    expect(rows[3], 'absent class 2 in the legend').toBe(-1);
    expect(rows.slice(0, 3).every((y) => y >= 0)).toBe(true);
    expect(rows[0]! < rows[1]! && rows[1]! < rows[2]!, `legend rows at ${rows}`).toBe(true);
  });

  it('rejects wrong sizes and options before drawing, naming the problem', async () => {
    const plain = image(40, 30, () => GREY);
    await expect(annotate({ ...plain, data: plain.data.subarray(1) }, {})).rejects.toThrow(/40x30 RGB needs 3600 bytes, got 3599/);
    const small = mask(20, 30, () => true);
    await expect(annotate(plain, { detections: [detection([0, 0, 5, 5], 0, 'cat', { mask: small })] })).rejects.toThrow(/mask of detection 0 \('cat'\) is 20x30, the image 40x30/);
    await expect(annotate(plain, { semantic: { width: 40, height: 20, classes: new Uint32Array(800) } })).rejects.toThrow(/semantic map is 40x20/);
    await expect(annotate(plain, {}, { maskOpacity: 2 })).rejects.toThrow(/maskOpacity must be in \[0, 1\], got 2/);
    await expect(annotate(plain, {}, { lineWidth: 0 })).rejects.toThrow(/lineWidth must be a positive/);
  });

  it('takes the decoders\' and tasks\' results as they are', async () => {
    // Compile-time: these assignments are what the structural Annotations promises.
    const fits = (r: DetectResult | SegmentResult | GroundResult | PoseResult, d: Detection[], p: PoseDetection[], s: SemanticMap): readonly Annotations[] => [r, { detections: d, instances: p, semantic: s }];
    expect(fits).toBeTypeOf('function');
    // Points and boxes outside the image are clipped, not errors; nothing to draw gives a copy.
    const plain = image(40, 30, () => GREY);
    const outside = await annotate(plain, { detections: [detection([-50, -50, -10, -10], 0, 'gone')], instances: [person(-100, -100)] });
    expect(outside.data).toEqual(plain.data);
    expect(outside.data).not.toBe(plain.data);
  });
});
