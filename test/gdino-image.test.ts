/**
 * Grounding DINO's image input (decoders.md A.2) and post-processing (A.4) against
 * scripts/golden/gdino_image.py: mmcv's size rule, cv2.resize(INTER_LINEAR) byte for byte, mmcv's
 * normalisation, the padding and pixel mask; PyTorch's top-k, boxes, instance masks and semantic map.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { decodeImageFile } from '../src/image/decode.js';
import { cv2LinearTable, cv2Resize, downloadImage, uploadImage, type RgbImage } from '../src/image/gpu-image.js';
import { ADE20K_SCALE, GDINO_SCALE, gdinoImage, gdinoResizeShape } from '../src/decoders/gdino/image.js';
import {
  detections, grounding, semanticMap, topkScores, type DetectorOutputs,
} from '../src/decoders/gdino/postprocess.js';
import { hashed } from './hashed.js';
import { checksums, synthetic } from './synthetic-image.js';
import { expectClose, loadGolden, TEST_DIR, testEngine, thrownMessage } from './helpers.js';
import { expandMask, Mask, maskArea, rleFromBits } from '../src/image/mask.js';

const golden = loadGolden('gdino_image');
const CASES = JSON.parse(golden.metadata.cases!) as Record<string, any>;
const FIXTURES = path.join(TEST_DIR, 'fixtures', 'images');

const ints = (name: string) => Array.from(golden.values(name));
const bytes = (name: string) => golden.entry(name).bytes;

async function caseImage(c: any): Promise<RgbImage> {
  return c.file ? decodeImageFile(path.join(FIXTURES, c.file)) : synthetic(c.size[0], c.size[1], c.seed);
}

/** Bit i of numpy's packbits (most significant bit first). */
const packedBit = (b: Uint8Array, i: number) => (b[i >> 3]! >> (7 - (i & 7))) & 1;

describe('size rule (mmcv rescale_size)', () => {
  const sizes = ints('sizes.in');
  it.each([['coco', GDINO_SCALE], ['ade', ADE20K_SCALE]] as const)('%s: 20 sizes exactly', (name, scale) => {
    const want = ints(`sizes.${name}`);
    for (let i = 0; i < sizes.length / 2; i++) {
      expect(gdinoResizeShape(sizes[2 * i]!, sizes[2 * i + 1]!, scale), `${sizes[2 * i]}x${sizes[2 * i + 1]}`).toEqual([want[2 * i], want[2 * i + 1]]);
    }
  });

  it('scale order does not matter; errors name the option', () => {
    expect(gdinoResizeShape(480, 640, [800, 1333])).toEqual(gdinoResizeShape(480, 640, [1333, 800]));
    expect(thrownMessage(() => gdinoResizeShape(480, 640, [1333] as never))).toMatch(/option scale must be \[long, short\].*\[1333\]/);
    expect(thrownMessage(() => gdinoResizeShape(480, 640, [1333, -1]))).toMatch(/option scale/);
    expect(thrownMessage(() => gdinoResizeShape(1, 9000))).toMatch(/9000x1.*empty side/);
  });
});

describe('cv2 INTER_LINEAR tables', () => {
  it('weights sum to 2048 and centres follow the resize map', () => {
    for (const [from, to] of [[53, 800], [1500, 800], [7, 5], [2000, 1333]] as const) {
      const t = cv2LinearTable(from, to, true);
      for (let d = 0; d < to; d++) {
        expect(t.weights[2 * d]! + t.weights[2 * d + 1]!).toBe(2048);
        const src = (d + 0.5) * (from / to) - 0.5; // the ImageMap's source position of pixel centre d
        if (src > 0 && src < from - 1) expect(Math.abs(t.offsets[d]! + t.weights[2 * d + 1]! / 2048 - src)).toBeLessThan(1 / 2048 + 1e-4);
      }
    }
  });
});

describe.each(['cpu', 'gpu'] as const)('gdino image input, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(Object.keys(CASES).filter((k) => k in CASES && 'checksums' in CASES[k]))('%s', async (name) => {
    const c = CASES[name];
    const rgb = await caseImage(c);
    const scale = c.scale as [number, number];
    // The resized 8-bit image is cv2's byte for byte (two checksums over every byte).
    const up = uploadImage(engine, rgb);
    const resized = cv2Resize(up, c.img[1], c.img[0]);
    const bytesOut = (await downloadImage(resized)).data;
    up.dispose();
    resized.dispose();
    expect(checksums(bytesOut), 'resized RGB checksums').toEqual(c.checksums);

    const g = gdinoImage(engine, rgb, { scale });
    try {
      expect(g.imgShape).toEqual(c.img);
      expect(g.oriShape).toEqual(c.ori);
      expect(g.padShape).toEqual(c.pad);
      const [hp, wp] = g.padShape;
      const [h, w] = g.imgShape;
      expect(g.pixels.shape).toEqual([1, 3, hp, wp]);
      const px = (await g.pixels.toArray()) as Float32Array;
      // Normalised values: mmcv's (v - mean) * (1 / std) in f32, here (v / 255 - m) / s: a few ulps.
      const idx = golden.values(`img.${name}.idx`);
      expectClose(Array.from(idx, (i) => px[i]!), golden.values(`img.${name}.pixels`), { rel: 2e-6, label: `${name} pixels` });
      // Padding is exactly zero, the image region never is; the mask is the official (channel 0 != 0).
      let badPad = 0;
      let zeroInside = 0;
      for (let ch = 0; ch < 3; ch++) for (let r = 0; r < hp; r++) for (let col = 0; col < wp; col++) {
        const v = px[(ch * hp + r) * wp + col]!;
        if (r >= h || col >= w) badPad += v !== 0 ? 1 : 0;
        else if (ch === 0) zeroInside += v === 0 ? 1 : 0;
      }
      expect([badPad, zeroInside]).toEqual([0, 0]);
      const rows = new Array<number>(hp).fill(0);
      const cols = new Array<number>(wp).fill(0);
      g.pixelMask.forEach((m, i) => {
        rows[Math.floor(i / wp)] += m;
        cols[i % wp] += m;
      });
      expect(rows).toEqual(ints(`img.${name}.mask_rows`));
      expect(cols).toEqual(ints(`img.${name}.mask_cols`));
      // Resized pixels map back: the far corner to the original's, centres by the size ratio.
      const [cx, cy] = g.toOriginal.point(w, h);
      expect([cx, cy].map((v) => +v.toFixed(9))).toEqual([rgb.width, rgb.height]);
      const [x, y] = g.toOriginal.point(10.5, 3.5);
      expect(x).toBeCloseTo((10.5 * rgb.width) / w, 9);
      expect(y).toBeCloseTo((3.5 * rgb.height) / h, 9);
    } finally {
      g.dispose();
    }
  });

  it('bad options are named', () => {
    const rgb = synthetic(5, 6, 1);
    expect(thrownMessage(() => gdinoImage(engine, rgb, { scale: [0, 800] }))).toMatch(/option scale must be \[long, short\]/);
    expect(thrownMessage(() => gdinoImage(engine, rgb, { scale: 'big' as never }))).toMatch(/option scale.*"big"/);
  });
});

/** scripts/golden/gdino_image.py logits_of / boxes_of / masks_of. */
function outputs(engine: Engine, c: any): DetectorOutputs {
  const logits = hashed(900 * 256, c.seed, c.scale);
  for (let q = 0; q < 900; q++) logits.fill(-Infinity, q * 256 + c.K, (q + 1) * 256);
  const boxes = hashed(900 * 4, c.box_seed ?? c.seed + 500).map((v) => (v + 1) / 2);
  const o: DetectorOutputs = { logits: engine.tensor(logits, [900, 256]), boxes: { data: boxes, shape: [900, 4] } };
  if (c.mask_seed !== undefined) o.maskLogits = (queries) => maskLogits(engine, queries, c.pad[0] / 4, c.pad[1] / 4, c.mask_seed);
  return o;
}

function maskLogits(engine: Engine, queries: readonly number[], h4: number, w4: number, seed: number): Tensor {
  const data = new Float32Array(queries.length * h4 * w4);
  queries.forEach((q, i) => data.set(hashed(h4 * w4, seed + q, 4), i * h4 * w4));
  return engine.tensor(data, [queries.length, h4, w4]);
}

describe.each(['cpu', 'gpu'] as const)('gdino post-processing, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(['det', 'inst', 'grd'])('%s: top-k, boxes and masks as PyTorch', async (name) => {
    const c = CASES[name];
    const o = outputs(engine, c);
    const geometry = { imgShape: c.img ?? [400, 533], oriShape: c.ori };
    const found = name === 'grd' ? await grounding(o, geometry) : await detections(o, geometry, { numClasses: c.K, topk: c.topk });
    (o.logits as Tensor).dispose();
    expect(found.map((d) => d.query)).toEqual(ints(`${name}.queries`));
    expect(found.map((d) => d.classIndex)).toEqual(ints(`${name}.labels`));
    expectClose(found.map((d) => d.score), golden.values(`${name}.scores`), { rel: 1e-6, label: 'scores' });
    expectClose(found.flatMap((d) => d.box), golden.values(`${name}.boxes`), { rel: 1e-4, label: 'boxes' });
    if (!c.mask_seed) {
      expect(found.every((d) => d.mask === undefined)).toBe(true);
      return;
    }
    const [oh, ow] = c.ori as [number, number];
    const ref = bytes(`${name}.masks`);
    const near = bytes(`${name}.near`);
    let differ = 0;
    let nearCount = 0;
    found.forEach((d, k) => {
      expect(d.mask!.size).toEqual([oh, ow]);
      const m = expandMask(d.mask!);
      let area = 0;
      for (let i = 0; i < oh * ow; i++) {
        const at = k * oh * ow + i;
        area += m[i]!;
        if (packedBit(near, at)) nearCount++;
        else if (m[i] !== packedBit(ref, at)) differ++;
      }
      expect(maskArea(d.mask!)).toBe(area);
    });
    expect(differ, `mask pixels that differ (${nearCount} within 1e-4 of the threshold excluded)`).toBe(0);
  });

  it('semantic map: argmax as PyTorch except near-ties', async () => {
    const c = CASES.sem;
    const o = outputs(engine, c);
    const [hp, wp] = c.pad as [number, number];
    // A small batch budget, so the sum over query batches and the class batches are both exercised.
    const masks = (queries: readonly number[]) => maskLogits(engine, queries, hp / 4, wp / 4, c.mask_seed);
    const map = await semanticMap(engine, o.logits, masks, { imgShape: c.img, oriShape: c.ori }, c.K, 2 ** 20);
    (o.logits as Tensor).dispose();
    expect([map.height, map.width]).toEqual(c.ori);
    const ref = bytes('sem.classes');
    const near = bytes('sem.near');
    let differ = 0;
    for (let i = 0; i < ref.length; i++) if (!near[i] && map.classes[i] !== ref[i]) differ++;
    expect(differ).toBe(0);
    expect(new Set(map.classes).size).toBeGreaterThan(3);
  });
});

describe('post-processing on the host', () => {
  it('equal scores come in increasing flat index', () => {
    // Queries 0..3, 2 classes; scores (3, 1), (3, 3), (0, 3), (1, 1) in logits.
    const logits = [3, 1, 3, 3, 0, 3, 1, 1];
    const top = topkScores(logits, 4, 2, 2, 5);
    expect(top.map((t) => [t.query, t.classIndex])).toEqual([[0, 0], [1, 0], [1, 1], [2, 1], [0, 1]]);
  });

  it('RLE is pycocotools\' column-major form and expands back', () => {
    // 2 x 3 mask, rows [1 0 1] [1 1 0]: column-major 1 1 0 1 1 0.
    const words = Uint32Array.of(0b011011);
    const rle = rleFromBits(words, 2, 3);
    expect(rle).toEqual({ size: [2, 3], counts: [0, 2, 1, 2, 1] });
    expect(Array.from(expandMask(rle))).toEqual([1, 0, 1, 1, 1, 0]);
    expect(maskArea(rle)).toBe(4);
    expect(thrownMessage(() => expandMask({ size: [2, 3], counts: [1, 2] }))).toMatch(/summing to 2x3 = 6/);
    // Mask.fromBitmap is toBitmap's inverse, column-major runs from a row-major bitmap.
    const bitmap = [1, 0, 1, 1, 1, 0];
    expect(Mask.fromBitmap(bitmap, 3, 2).toJSON()).toEqual({ size: [2, 3], counts: [0, 2, 1, 2, 1] });
    expect(Array.from(Mask.fromBitmap(bitmap, 3, 2).toBitmap())).toEqual(bitmap);
    expect(thrownMessage(() => Mask.fromBitmap(bitmap, 2, 2))).toMatch(/2x2 needs 4 values, got 6/);
  });

  it('errors name the input', async () => {
    const o: DetectorOutputs = { logits: { data: new Float32Array(8), shape: [2, 4] }, boxes: { data: new Float32Array(6), shape: [2, 3] } };
    const geometry = { imgShape: [10, 10] as [number, number], oriShape: [20, 20] as [number, number] };
    await expect(detections(o, geometry, { numClasses: 2 })).rejects.toThrow(/boxes must have 4 columns/);
    o.boxes = { data: new Float32Array(8), shape: [2, 4] };
    await expect(detections(o, geometry, { numClasses: 5 })).rejects.toThrow(/numClasses must be an integer in 1\.\.4/);
    await expect(detections(o, geometry, { numClasses: 2, masks: true })).rejects.toThrow(/no maskLogits/);
  });
});
