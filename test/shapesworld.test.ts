/**
 * The committed ShapesWorld pictures (scripts/shapesworld/, docs/shapesworld.md) read from
 * TypeScript as a later evaluation will read them: the PNG decodes to the JSON's size, each mask
 * (COCO RLE written by Python) decodes through our Mask to pixels of the object's colour inside
 * its box, and each person has COCO's 17 keypoints.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImageFile } from '../src/image/decode.js';
import { Mask } from '../src/image/mask.js';
import { TEST_DIR } from './helpers.js';

const DIR = path.join(TEST_DIR, 'fixtures', 'shapesworld');
const STEMS = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));

interface WorldObject {
  class: string;
  rgb: [number, number, number];
  box: [number, number, number, number];
  visible_area: number;
  mask: { size: [number, number]; counts: number[] };
  keypoints?: [number, number, number][];
}

describe('ShapesWorld fixtures', () => {
  it('are there', () => expect(STEMS.length).toBeGreaterThanOrEqual(5));

  it.each(STEMS)('%s: masks, boxes and colours agree with the pixels', async (stem) => {
    const truth = JSON.parse(fs.readFileSync(path.join(DIR, `${stem}.json`), 'utf8')) as { width: number; height: number; objects: WorldObject[] };
    const picture = await decodeImageFile(path.join(DIR, `${stem}.png`));
    expect([picture.width, picture.height]).toEqual([truth.width, truth.height]);
    for (const o of truth.objects) {
      const mask = Mask.from(o.mask);
      expect(mask.size).toEqual([truth.height, truth.width]);
      expect(mask.area).toBe(o.visible_area);
      const bits = mask.toBitmap();
      let inside = 0;
      let coloured = 0;
      for (let y = 0; y < truth.height; y++) {
        for (let x = 0; x < truth.width; x++) {
          if (!bits[y * truth.width + x]) continue;
          inside++;
          expect(x >= o.box[0] && x < o.box[2] && y >= o.box[1] && y < o.box[3], `${o.class} mask pixel (${x}, ${y}) outside its box`).toBe(true);
          const p = (y * truth.width + x) * 3;
          if ([0, 1, 2].every((c) => Math.abs(picture.data[p + c]! - o.rgb[c]!) <= 1)) coloured++;
        }
      }
      // Antialiased edges blend with what is under them; the interior is the object's colour.
      expect(coloured / inside, `${stem} ${o.class}: share of mask pixels in its colour`).toBeGreaterThan(0.6);
      if (o.class === 'person') expect(o.keypoints).toHaveLength(17);
    }
  });
});
