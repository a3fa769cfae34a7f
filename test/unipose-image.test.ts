/**
 * UniPose's image input (decoders.md B.2) against scripts/golden/unipose_image.py: the DETR size
 * rule (transform_coco.py), torchvision's F.resize on PIL (Pillow bilinear with antialiasing) byte
 * for byte, ToTensor + Normalize, the padding to 32 and the NestedTensor mask (True on padding).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { decodeImageFile } from '../src/image/decode.js';
import { downloadImage, pilResize, uploadImage, type RgbImage } from '../src/image/gpu-image.js';
import { UNIPOSE_MAX_SIZE, UNIPOSE_SIZE, uniposeImage, uniposeResizeShape } from '../src/decoders/unipose/image.js';
import { checksums, synthetic } from './synthetic-image.js';
import { expectClose, loadGolden, TEST_DIR, testEngine, thrownMessage } from './helpers.js';

const golden = loadGolden('unipose_image');
const CASES = JSON.parse(golden.metadata.cases!) as Record<string, any>;
const FIXTURES = path.join(TEST_DIR, 'fixtures', 'images');

const ints = (name: string) => Array.from(golden.values(name));

async function caseImage(c: any): Promise<RgbImage> {
  return c.file ? decodeImageFile(path.join(FIXTURES, c.file)) : synthetic(c.size[0], c.size[1], c.seed);
}

describe('size rule (transform_coco.py get_size_with_aspect_ratio)', () => {
  it('20 sizes exactly, Python round() halves included', () => {
    const sizes = ints('sizes.in');
    const want = ints('sizes.out');
    for (let i = 0; i < sizes.length / 2; i++) {
      expect(uniposeResizeShape(sizes[2 * i]!, sizes[2 * i + 1]!), `${sizes[2 * i]}x${sizes[2 * i + 1]}`).toEqual([want[2 * i], want[2 * i + 1]]);
    }
    expect(uniposeResizeShape(5, 2666)).toEqual([2, 1066]); // round(2.5) = 2
    expect(uniposeResizeShape(7, 2666)).toEqual([4, 1523]); // round(3.5) = 4
    expect([UNIPOSE_SIZE, UNIPOSE_MAX_SIZE]).toEqual([800, 1333]);
  });

  it('errors name the option and the size', () => {
    expect(thrownMessage(() => uniposeResizeShape(480, 640, 0))).toMatch(/option size must be a positive integer \(e\.g\. 800\), got 0/);
    expect(thrownMessage(() => uniposeResizeShape(480, 640, 800, 1.5))).toMatch(/option maxSize must be a positive integer \(e\.g\. 1333\), got 1\.5/);
    expect(thrownMessage(() => uniposeResizeShape(0, 640))).toMatch(/image size 640x0 must be positive integers/);
    expect(thrownMessage(() => uniposeResizeShape(1, 9000))).toMatch(/a 9000x1 image .* would be 0x0 \(an empty side\)/);
  });
});

describe.each(['cpu', 'gpu'] as const)('UniPose image input, %s kernels', (profile) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine({ profile });
  });

  it.each(Object.keys(CASES))('%s', async (name) => {
    const c = CASES[name];
    const rgb = await caseImage(c);
    // The resized 8-bit image is Pillow's byte for byte (two checksums over every byte).
    const up = uploadImage(engine, rgb);
    const resized = pilResize(up, c.img[1], c.img[0], { filter: 'bilinear' });
    const bytesOut = (await downloadImage(resized)).data;
    up.dispose();
    resized.dispose();
    expect(checksums(bytesOut), 'resized RGB checksums').toEqual(c.checksums);

    const live = engine.memory().liveBytes;
    const g = uniposeImage(engine, rgb);
    try {
      expect(g.imgShape).toEqual(c.img);
      expect(g.oriShape).toEqual(c.ori);
      expect(g.padShape).toEqual(c.pad);
      const [hp, wp] = g.padShape;
      const [h, w] = g.imgShape;
      expect(g.pixels.shape).toEqual([1, 3, hp, wp]);
      expect(g.pixels.dtype).toBe('f32');
      const px = (await g.pixels.toArray()) as Float32Array;
      // torchvision's (v / 255 - m) / s in f32, here the same formula: a few ulps.
      const idx = golden.values(`img.${name}.idx`);
      expectClose(Array.from(idx, (i) => px[i]!), golden.values(`img.${name}.pixels`), { rel: 2e-6, label: `${name} pixels` });
      let badPad = 0;
      for (let ch = 0; ch < 3; ch++) for (let r = 0; r < hp; r++) for (let col = w; col < wp; col++) badPad += px[(ch * hp + r) * wp + col] !== 0 ? 1 : 0;
      for (let ch = 0; ch < 3; ch++) for (let r = h; r < hp; r++) for (let col = 0; col < w; col++) badPad += px[(ch * hp + r) * wp + col] !== 0 ? 1 : 0;
      expect(badPad, 'non-zero padding').toBe(0);
      // The official mask: True (1) on padding.
      const rows = new Array<number>(hp).fill(0);
      const cols = new Array<number>(wp).fill(0);
      expect(g.mask.length).toBe(hp * wp);
      g.mask.forEach((m, i) => {
        rows[Math.floor(i / wp)] += m;
        cols[i % wp] += m;
      });
      expect(rows).toEqual(ints(`img.${name}.mask_rows`));
      expect(cols).toEqual(ints(`img.${name}.mask_cols`));
      expect([g.mask[0], g.mask[hp * wp - 1]]).toEqual([0, hp === h && wp === w ? 0 : 1]);
      // Resized pixels map back: the far corner to the original's, points by the size ratio.
      const [cx, cy] = g.toOriginal.point(w, h);
      expect([cx, cy].map((v) => +v.toFixed(9))).toEqual([rgb.width, rgb.height]);
      const [x, y] = g.toOriginal.point(10.5, 3.5);
      expect(x).toBeCloseTo((10.5 * rgb.width) / w, 9);
      expect(y).toBeCloseTo((3.5 * rgb.height) / h, 9);
    } finally {
      g.dispose();
    }
    expect(engine.memory().liveBytes, 'bytes left after dispose').toBe(live);
  });

  it('f16 storage, other sizes, and bad options', async () => {
    const rgb = synthetic(50, 70, 3);
    const g = uniposeImage(engine, rgb, { size: 64, maxSize: 80, dtype: 'f16' });
    expect([g.imgShape, g.padShape, g.pixels.dtype]).toEqual([[57, 79], [64, 96], 'f16']); // 70/50·64 > 80: size round(80·50/70) = 57, long side int(57·70/50) = 79
    g.dispose();
    expect(thrownMessage(() => uniposeImage(engine, rgb, { size: -1 }))).toMatch(/option size must be a positive integer/);
    expect(thrownMessage(() => uniposeImage(engine, rgb, { maxSize: 'big' as never }))).toMatch(/option maxSize .*"big"/);
  });
});
