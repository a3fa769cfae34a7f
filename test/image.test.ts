import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { decodeImageFile } from '../src/image/decode.js';
import { downloadImage, normalizeImage, pilResize, uploadImage, type RgbImage } from '../src/image/gpu-image.js';
import { anyresGrid, anyresPreprocess, clipPreprocess, shortestEdgeSize } from '../src/image/preprocess.js';
import { TEST_DIR, expectClose, loadGolden, testEngine } from './helpers.js';

const golden = loadGolden('image');
const clipGolden = loadGolden('image_clip');
const META = JSON.parse(golden.metadata.cases!) as {
  resizes: Record<string, { size: [number, number]; filter: 'bicubic' | 'bilinear' | 'lanczos' }>;
  pad_square: { fill: [number, number, number]; top: number; size: [number, number] };
  clip: { resized: [number, number]; crop: [number, number] };
  anyres: { grid: [number, number]; tiles: number; crop_height: number };
};
const FIXTURES = path.join(TEST_DIR, 'fixtures', 'images');

function bytes(g: typeof golden, name: string): Uint8Array {
  const e = g.entry(name);
  return new Uint8Array(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength);
}

function goldenImage(name: string): RgbImage {
  const [height, width] = golden.shape(name) as [number, number];
  return { width, height, data: bytes(golden, name) };
}

/** Every byte equal; reports the first difference with its pixel. */
function expectSameBytes(got: RgbImage, want: RgbImage, label: string) {
  expect([got.width, got.height], `${label}: size`).toEqual([want.width, want.height]);
  const bad = got.data.findIndex((v, i) => v !== want.data[i]);
  const px = Math.floor(bad / 3);
  expect(bad, `${label}: first difference at pixel (${px % want.width}, ${Math.floor(px / want.width)}) channel ${bad % 3}: ${got.data[bad]} vs ${want.data[bad]}`).toBe(-1);
  expect(want.data.some((v) => v !== 0), `${label}: reference is blank`).toBe(true);
}

describe('Pillow-exact resizing and CLIP preprocessing', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await testEngine();
  });

  it.each(Object.keys(META.resizes))('PIL resize %s, byte for byte', async (name) => {
    const c = META.resizes[name]!;
    const img = uploadImage(engine, goldenImage('small'));
    const out = pilResize(img, c.size[0], c.size[1], { filter: c.filter });
    expectSameBytes(await downloadImage(out), goldenImage(`resize.${name}`), name);
    [img, out].forEach((t) => t.dispose());
  });

  it('expand2square with the mean colour, then resize, byte for byte', async () => {
    const c = META.pad_square;
    const img = uploadImage(engine, goldenImage('small'));
    const out = pilResize(img, c.size[0], c.size[1], { canvas: { width: 97, height: 97, left: 0, top: c.top, fill: c.fill } });
    expectSameBytes(await downloadImage(out), goldenImage('pad_square'), 'pad square');
    [img, out].forEach((t) => t.dispose());
  });

  it('CLIPImageProcessor end to end from scene.png: exact bytes after resize + crop, normalised within 1e-5', async () => {
    const image = await decodeImageFile(path.join(FIXTURES, 'scene.png'));
    expect(shortestEdgeSize(image, 336)).toEqual({ width: META.clip.resized[0], height: META.clip.resized[1] });
    const gpu = uploadImage(engine, image);
    const resized = pilResize(gpu, META.clip.resized[0], META.clip.resized[1]);
    const full = await downloadImage(resized);
    const [left, top] = META.clip.crop;
    const crop = new Uint8Array(336 * 336 * 3);
    for (let y = 0; y < 336; y++) crop.set(full.data.subarray(((top + y) * full.width + left) * 3, ((top + y) * full.width + left + 336) * 3), y * 336 * 3);
    expectSameBytes({ width: 336, height: 336, data: crop }, { width: 336, height: 336, data: bytes(clipGolden, 'clip.cropped') }, 'CLIP resize + crop');

    const { pixelValues, maps } = clipPreprocess(engine, gpu);
    expect(pixelValues.shape).toEqual([1, 3, 336, 336]);
    const all = await pixelValues.toArray();
    const sampled = Array.from(clipGolden.values('clip.idx'), (i) => all[i]!);
    expectClose(sampled, clipGolden.values('clip.pixel_values'), { rel: 1e-5, label: 'CLIP pixel values' });
    // The map takes the original image's centre to the crop's centre (both images are centred).
    const [cx, cy] = maps[0]!.point(image.width / 2, image.height / 2);
    expect(cx).toBeCloseTo(168, 0);
    expect(cy).toBeCloseTo(168, 0);
    [gpu, resized, pixelValues].forEach((t) => t.dispose());
  });

  it('VisionLLM v2 anyres tiles and thumbnail match the reference, in f32 and f16', async () => {
    const scene = await decodeImageFile(path.join(FIXTURES, 'scene.png'));
    const h = META.anyres.crop_height;
    const image: RgbImage = { width: scene.width, height: h, data: scene.data.subarray(0, scene.width * h * 3) };
    expect(anyresGrid(image, 336, 1, 4)).toEqual(META.anyres.grid);
    for (const dtype of ['f32', 'f16'] as const) {
      const { pixelValues, maps, grid } = anyresPreprocess(engine, image, { dtype });
      expect(grid).toEqual(META.anyres.grid);
      expect(pixelValues.shape).toEqual([META.anyres.tiles, 3, 336, 336]);
      expect(pixelValues.dtype).toBe(dtype);
      const all = await pixelValues.toArray();
      for (let t = 0; t < META.anyres.tiles; t++) {
        const sampled = Array.from(clipGolden.values(`anyres.${t}.idx`), (i) => all[t * 3 * 336 * 336 + i]!);
        expectClose(sampled, clipGolden.values(`anyres.${t}.pixel_values`), { rel: dtype === 'f32' ? 1e-5 : 1e-3, label: `anyres tile ${t} ${dtype}` });
      }
      // The second tile of the top row starts 336 grid pixels in: its map sends that column to x = 0.
      const [cols] = grid!;
      const x = (336 * image.width) / (336 * cols);
      expect(maps[1]!.point(x, 0)[0]).toBeCloseTo(0, 9);
      pixelValues.dispose();
    }
  });

  it('normalize names a crop outside the image', () => {
    const img = uploadImage(engine, goldenImage('small'));
    expect(() => normalizeImage(img, { mean: [0, 0, 0], std: [1, 1, 1], crop: { x: 90, y: 0, width: 10, height: 10 } })).toThrow(/crop .* is not inside the 97x73 image/);
    expect(() => pilResize(img, 0, 10)).toThrow(/size 0x10 must be positive integers/);
    img.dispose();
  });
});
