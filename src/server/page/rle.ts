/** COCO masks (uncompressed RLE) and semantic maps as translucent pixels to lay over the picture. */
import type { Rle } from './results.js';

export type Rgba = readonly [number, number, number, number];

/** The mask's pixels in `colour`, the rest transparent. */
export function rleToImageData(rle: Rle, colour: Rgba): ImageData {
  const [height, width] = rle.size;
  const image = new ImageData(width, height);
  let start = 0;
  rle.counts.forEach((run, i) => {
    // Runs alternate zeros and ones, zeros first; they walk the columns top to bottom.
    if (i % 2 === 1) {
      for (let k = start; k < start + run; k++) image.data.set(colour, ((k % height) * width + Math.floor(k / height)) * 4);
    }
    start += run;
  });
  return image;
}

/** Each pixel in its class's colour; `classes` is a class index per pixel, row-major. */
export function semanticToImageData(width: number, classes: readonly number[], colourOf: (classIndex: number) => Rgba): ImageData {
  const image = new ImageData(width, classes.length / width);
  classes.forEach((k, i) => image.data.set(colourOf(k), i * 4));
  return image;
}
