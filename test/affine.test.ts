import { describe, expect, it } from 'vitest';
import { ImageMap, cxcywhToXyxy } from '../src/image/affine.js';
import { anyresGrid } from '../src/image/preprocess.js';

const close = (got: ArrayLike<number>, want: ArrayLike<number>, digits = 9) =>
  Array.from(want).forEach((w, i) => expect(got[i], `element ${i}`).toBeCloseTo(w, digits));

describe('ImageMap', () => {
  it('composes resize, crop and pad and inverts them back to original pixels', () => {
    // Original 1000x500 -> resized 672x336 -> right tile (crop at x = 336) -> model output normalised to [0, 1].
    const toTile = ImageMap.resize({ width: 1000, height: 500 }, { width: 672, height: 336 }).then(ImageMap.crop(336, 0));
    const toOutput = toTile.then(ImageMap.normalize({ width: 336, height: 336 }));
    close(toTile.point(500, 250), [0, 168]);
    // A detector box in the tile's normalised frame, back to original pixels.
    const box = cxcywhToXyxy([0.5, 0.5, 0.25, 0.5]);
    // Tile pixels [126, 84, 210, 252], grid pixels x + 336, original x 1000 / 672.
    close(toOutput.inverse().box(box), [687.5, 125, 812.5, 375]);
    // Padding on the left then a crop that removes it is the identity.
    close(ImageMap.pad(13, 7).then(ImageMap.crop(13, 7)).matrix, [1, 0, 0, 1, 0, 0]);
  });

  it('maps packed keypoints and boxes, and keeps full double precision', () => {
    const m = ImageMap.resize({ width: 3000, height: 2000 }, { width: 336, height: 224 });
    const pts = m.inverse().points(m.points([2999.5, 1999.5, 0.25, 0.75]));
    close(pts, [2999.5, 1999.5, 0.25, 0.75], 9);
    close(m.boxes([0, 0, 3000, 2000, 1500, 1000, 1500, 1000]), [0, 0, 336, 224, 168, 112, 168, 112]);
    expect(() => m.points([1, 2, 3])).toThrow(/3 numbers are not \(x, y\) pairs/);
  });

  it('turns stored EXIF pixels upright for all eight orientations', () => {
    const stored = { width: 40, height: 30 };
    // Where the stored image's top-left corner pixel (centre 0.5, 0.5) ends up, and the upright size.
    const expected: Record<number, { at: [number, number]; size: [number, number] }> = {
      1: { at: [0.5, 0.5], size: [40, 30] }, 2: { at: [39.5, 0.5], size: [40, 30] },
      3: { at: [39.5, 29.5], size: [40, 30] }, 4: { at: [0.5, 29.5], size: [40, 30] },
      5: { at: [0.5, 0.5], size: [30, 40] }, 6: { at: [29.5, 0.5], size: [30, 40] },
      7: { at: [29.5, 39.5], size: [30, 40] }, 8: { at: [0.5, 39.5], size: [30, 40] },
    };
    for (const [o, e] of Object.entries(expected)) {
      const m = ImageMap.exifOrientation(Number(o), stored);
      close(m.point(0.5, 0.5), e.at);
      close(m.box([0, 0, 40, 30]), [0, 0, ...e.size]);
      close(m.then(m.inverse()).matrix, [1, 0, 0, 1, 0, 0]);
    }
    expect(() => ImageMap.exifOrientation(9, stored)).toThrow(/orientation must be 1..8, got 9/);
  });

  it('names a singular map and bad matrices', () => {
    expect(() => ImageMap.scale(0, 1).inverse()).toThrow(/is singular and has no inverse/);
    expect(() => ImageMap.fromMatrix([1, 0, 0, 1, NaN, 0])).toThrow(/6 finite numbers/);
    expect(() => ImageMap.resize({ width: 0, height: 3 }, { width: 1, height: 1 })).toThrow(/source size 0x3 is empty/);
  });
});

// Expected grids from the reference's find_closest_aspect_ratio (scripts/golden/image.py): on a tie in
// aspect ratio the larger grid wins when the image has more than half its pixels.
describe('anyres grid choice (VisionLLM v2 dynamic_preprocess, 336 tiles, at most 4)', () => {
  it.each([
    [[1000, 1000], [2, 2]], [[336, 336], [1, 1]], [[1920, 1080], [2, 1]], [[1080, 1920], [1, 2]], [[3000, 1000], [3, 1]],
    [[4000, 1000], [4, 1]], [[517, 240], [2, 1]], [[640, 480], [2, 2]], [[300, 1000], [1, 3]],
  ] as const)('%j -> %j', (size, grid) => {
    expect(anyresGrid({ width: size[0], height: size[1] }, 336, 1, 4)).toEqual(grid);
  });
});
