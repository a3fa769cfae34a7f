/**
 * The bitmap layer of an annotated picture: semantic tints and instance masks painted into one
 * translucent RGBA buffer, which sharp composites over the image as raw pixels. Masks are pixels
 * already, so filling them is a copy, not rasterising.
 */
import { paletteColour, type Rgb } from './annotate-style.js';

export class OverlayLayer {
  /** Straight (not premultiplied) 8-bit RGBA, what sharp expects of raw overlay input: 4 bytes a pixel, not 16 as floats would be. */
  private readonly px: Buffer;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.px = Buffer.alloc(width * height * 4);
  }

  /** Paints `colour` at `alpha` over pixel i (row-major), as successive translucent draws would blend. */
  private over(i: number, colour: Rgb, alpha: number): void {
    const p = this.px;
    const below = (p[4 * i + 3]! / 255) * (1 - alpha);
    const a = alpha + below;
    if (a === 0) return;
    for (let c = 0; c < 3; c++) p[4 * i + c] = Math.round((colour[c]! * alpha + p[4 * i + c]! * below) / a);
    p[4 * i + 3] = Math.round(a * 255);
  }

  /** Every pixel tinted by its class's colour. */
  semantic(classes: Uint32Array, opacity: number): void {
    for (let i = 0; i < classes.length; i++) this.over(i, paletteColour(classes[i]!), opacity);
  }

  /**
   * A mask (row-major 0/1) filled at `opacity`, its outline opaque: the inside pixels with a
   * 4-neighbour outside, the image's border counting as outside so that a cut-off mask is closed.
   */
  mask(bits: Uint8Array, colour: Rgb, opacity: number): void {
    const { width: w, height: h } = this;
    const out = (x: number, y: number) => x < 0 || y < 0 || x >= w || y >= h || bits[y * w + x] === 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (bits[i] === 0) continue;
        const edge = out(x - 1, y) || out(x + 1, y) || out(x, y - 1) || out(x, y + 1);
        this.over(i, colour, edge ? 1 : opacity);
      }
    }
  }

  /** The pixels, for sharp's composite({ raw: { channels: 4 } }). */
  toRgba(): Buffer {
    return this.px;
  }
}
