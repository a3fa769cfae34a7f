/**
 * Binary masks in pycocotools' uncompressed RLE: column-major runs over [height, width], the first
 * a run of zeros (maybe empty). A 1000x800 object mask is a few hundred numbers instead of 800 kB,
 * it serialises to COCO's own JSON form, and `toBitmap()` gives the pixels when they are wanted.
 */

/** pycocotools' uncompressed RLE. */
export interface Rle {
  /** [height, width] */
  size: [number, number];
  counts: number[];
}

/** A mask: its RLE (what JSON.stringify writes) and the pixels on demand. */
export class Mask implements Rle {
  constructor(
    readonly size: [number, number],
    readonly counts: number[],
  ) {
    checkRle('Mask', this);
  }

  static from(rle: Rle): Mask {
    return rle instanceof Mask ? rle : new Mask([rle.size[0], rle.size[1]], [...rle.counts]);
  }

  /** The mask of a row-major bitmap (nonzero inside), as toBitmap() gives it back. */
  static fromBitmap(bitmap: ArrayLike<number>, width: number, height: number): Mask {
    if (bitmap.length !== width * height) throw new RangeError(`Mask.fromBitmap: ${width}x${height} needs ${width * height} values, got ${bitmap.length}`);
    const words = new Uint32Array(Math.ceil((width * height) / 32));
    for (let x = 0, i = 0; x < width; x++) for (let y = 0; y < height; y++, i++) if (bitmap[y * width + x]) words[i >>> 5]! |= 1 << (i & 31);
    return rleFromBits(words, height, width);
  }

  get height(): number {
    return this.size[0];
  }

  get width(): number {
    return this.size[1];
  }

  /** Pixels inside. */
  get area(): number {
    return maskArea(this);
  }

  /** height * width bytes, 1 inside and 0 outside, row-major. */
  toBitmap(): Uint8Array {
    return expandMask(this);
  }

  toJSON(): Rle {
    return { size: this.size, counts: this.counts };
  }
}

/** The RLE of h * w bits packed 32 to a word, column-major (bit i of the mask is bit i % 32 of word i / 32). */
export function rleFromBits(words: Uint32Array, h: number, w: number): Mask {
  const n = h * w;
  if (words.length * 32 < n) throw new RangeError(`rleFromBits: ${words.length} words hold fewer than ${n} bits`);
  const counts: number[] = [];
  let value = 0;
  let run = 0;
  for (let i = 0; i < n; i++) {
    const bit = (words[i >>> 5]! >>> (i & 31)) & 1;
    if (bit !== value) {
      counts.push(run);
      run = 0;
      value = bit;
    }
    run++;
  }
  counts.push(run);
  return new Mask([h, w], counts);
}

function checkRle(op: string, rle: Rle): void {
  const [h, w] = rle.size;
  const total = rle.counts.reduce((a, b) => a + b, 0);
  if (!(Number.isInteger(h) && Number.isInteger(w) && h >= 0 && w >= 0) || !rle.counts.every((c) => Number.isInteger(c) && c >= 0) || total !== h * w) {
    throw new RangeError(`${op}: RLE counts must be non-negative integers summing to ${h}x${w} = ${h * w}, got a total of ${total}`);
  }
}

/** The mask as h * w bytes (1 inside), row-major. */
export function expandMask(rle: Rle): Uint8Array {
  checkRle('expandMask', rle);
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  let e = 0;
  rle.counts.forEach((count, i) => {
    if (i % 2) for (let k = e; k < e + count; k++) out[(k % h) * w + Math.floor(k / h)] = 1;
    e += count;
  });
  return out;
}

/** Pixels inside the mask. */
export function maskArea(rle: Rle): number {
  return rle.counts.reduce((a, c, i) => (i % 2 ? a + c : a), 0);
}
