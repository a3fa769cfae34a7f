import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage, decodeImageFile, type DecodedImage } from '../src/image/decode.js';
import { TEST_DIR, loadGolden } from './helpers.js';

const FIXTURES = path.join(TEST_DIR, 'fixtures', 'images');
const golden = loadGolden('image_clip');
const fixture = (name: string) => path.join(FIXTURES, name);

/** Pillow's decode of the same file (ImageOps.exif_transpose, convert('RGB')), at sampled bytes. */
function expectLikePillow(img: DecodedImage, name: string) {
  expect([img.height, img.width, 3]).toEqual(Array.from(golden.values(`decode.${name}.shape`)));
  expect(img.data.length).toBe(img.width * img.height * 3);
  const idx = golden.values(`decode.${name}.idx`);
  const want = golden.values(`decode.${name}.values`);
  const bad = Array.from(idx).findIndex((at, k) => img.data[at] !== want[k]);
  expect(bad, `${name}: byte ${idx[bad]} is ${img.data[idx[bad]!]}, Pillow has ${want[bad]}`).toBe(-1);
  expect(want.some((v) => v !== want[0]), `${name}: reference is flat`).toBe(true);
}

describe('image decoding', () => {
  it('decodes an EXIF-rotated JPEG upright, byte for byte as Pillow + exif_transpose', async () => {
    const img = await decodeImageFile(fixture('rotated.jpg'));
    expect(img.format).toBe('jpeg');
    expect(img.orientation).toBe(6);
    expect([img.storedWidth, img.storedHeight]).toEqual([353, 517]);
    expect([img.width, img.height]).toEqual([517, 353]);
    expectLikePillow(img, 'rotated.jpg');
  });

  it('decodes a plain JPEG from a buffer', async () => {
    const img = await decodeImage(fs.readFileSync(fixture('small.jpg')));
    expect(img.orientation).toBe(1);
    expectLikePillow(img, 'small.jpg');
  });

  it('replicates grayscale to RGB and drops alpha, as convert("RGB")', async () => {
    const gray = await decodeImageFile(fixture('gray.png'));
    expect(gray.format).toBe('png');
    expectLikePillow(gray, 'gray.png');
    expect(gray.data[0]).toBe(gray.data[1]);
    const rgba = await decodeImageFile(fixture('rgba.png'));
    expectLikePillow(rgba, 'rgba.png');
  });

  it('converts CMYK with Pillow\'s formula, not through an ICC profile: JPEG with and without the Adobe marker, TIFF', async () => {
    for (const name of ['cmyk.jpg', 'cmyk-no-adobe.jpg', 'cmyk.tif']) {
      const img = await decodeImageFile(fixture(name));
      expectLikePillow(img, name); // every byte: the fixtures are under the sample count
    }
  });

  it('names empty, truncated, corrupt, missing and unsupported inputs', async () => {
    await expect(decodeImage(new Uint8Array(0), { name: 'upload.jpg' })).rejects.toThrow(/upload.jpg: empty \(0 bytes\), not an image/);
    await expect(decodeImageFile(fixture('truncated.jpg'))).rejects.toThrow(/truncated.jpg: corrupt or truncated jpeg \(.+\)/);
    await expect(decodeImageFile(fixture('not-an-image.png'))).rejects.toThrow(/not-an-image.png: not a readable image/);
    await expect(decodeImageFile(fixture('missing.png'))).rejects.toThrow(/missing.png: cannot read \(ENOENT/);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>');
    await expect(decodeImage(svg)).rejects.toThrow(/image buffer: unsupported format 'svg'/);
  });

  it('refuses images over the pixel limit before decoding them', async () => {
    await expect(decodeImageFile(fixture('scene.png'), { maxPixels: 100_000 })).rejects.toThrow(/scene.png: 517x353 png has 182501 pixels, over the limit of 100000 \(maxPixels\)/);
    const img = await decodeImageFile(fixture('scene.png'), { maxPixels: 182_501 });
    expect(img.width).toBe(517);
  });
});
