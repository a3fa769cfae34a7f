/**
 * The vector layer of an annotated picture: boxes, skeletons, keypoints, label tags and the legend
 * as SVG elements, which sharp composites over the image (librsvg draws them, text included).
 * The SVG is the image's size, so anything beyond the image is clipped by the canvas itself.
 */
import { cssColour, textColour, type Rgb } from './annotate-style.js';

export interface Keypoint {
  name: string;
  x: number;
  y: number;
  visible: number;
}

export interface LegendEntry {
  name: string;
  colour: Rgb;
}

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
/** librsvg cannot measure text for us: an average advance of DejaVu Sans (digits are 0.64 em, lower case ~0.56). */
const ADVANCE_EM = 0.6;
/** Legend rows kept: the largest classes; a longer list would cover the picture. */
const LEGEND_ROWS = 12;

/**
 * Labels are user text: the five characters XML gives meaning to escaped, and the control characters
 * XML 1.0 forbids (even as references) dropped, since librsvg refuses a document holding them.
 */
export function escapeXml(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`);
}

/** Coordinates written short: two decimals are below what an 8-bit picture shows. */
const num = (v: number) => +v.toFixed(2);
const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);

export class SvgCanvas {
  private readonly parts: string[] = [];

  constructor(
    readonly width: number,
    readonly height: number,
    readonly lineWidth: number,
    readonly fontSize: number,
  ) {}

  /** The box clipped to the image, ordered; undefined when nothing of it is inside (or a coordinate is NaN). */
  private clip(box: readonly number[]): [number, number, number, number] | undefined {
    if (box.length < 4 || box.slice(0, 4).some(Number.isNaN)) return undefined;
    const [a, b, c, d] = box as [number, number, number, number];
    const x0 = clamp(Math.min(a, c), 0, this.width);
    const x1 = clamp(Math.max(a, c), 0, this.width);
    const y0 = clamp(Math.min(b, d), 0, this.height);
    const y1 = clamp(Math.max(b, d), 0, this.height);
    return x1 > x0 && y1 > y0 ? [x0, y0, x1, y1] : undefined;
  }

  /**
   * An unfilled rectangle whose stroke lies inside the box, so it never covers what is outside it and
   * a box touching the image's edge keeps its full width; a box thinner than two strokes is filled.
   */
  box(box: readonly number[], colour: Rgb): void {
    const clipped = this.clip(box);
    if (!clipped) return;
    const [x0, y0, x1, y1] = clipped;
    const lw = this.lineWidth;
    const css = cssColour(colour);
    if (x1 - x0 <= 2 * lw || y1 - y0 <= 2 * lw) {
      this.parts.push(`<rect x="${num(x0)}" y="${num(y0)}" width="${num(x1 - x0)}" height="${num(y1 - y0)}" fill="${css}"/>`);
      return;
    }
    this.parts.push(
      `<rect x="${num(x0 + lw / 2)}" y="${num(y0 + lw / 2)}" width="${num(x1 - x0 - lw)}" height="${num(y1 - y0 - lw)}" fill="none" stroke="${css}" stroke-width="${num(lw)}"/>`,
    );
  }

  /** Limbs between the named keypoints an instance has (visible, finite), then the keypoints on top as dotted circles. */
  pose(keypoints: readonly Keypoint[], skeleton: readonly (readonly [string, string])[], colour: Rgb): void {
    const shown = new Map(keypoints.filter((k) => k.visible > 0 && Number.isFinite(k.x) && Number.isFinite(k.y)).map((k) => [k.name, k]));
    const css = cssColour(colour);
    const lw = this.lineWidth;
    for (const [from, to] of skeleton) {
      const a = shown.get(from);
      const b = shown.get(to);
      if (!a || !b) continue;
      this.parts.push(`<line x1="${num(a.x)}" y1="${num(a.y)}" x2="${num(b.x)}" y2="${num(b.y)}" stroke="${css}" stroke-width="${num(lw)}" stroke-linecap="round"/>`);
    }
    // A dark edge keeps a keypoint visible on its own limb's colour and on light backgrounds.
    const r = Math.max(2, lw * 1.25);
    for (const k of shown.values()) {
      this.parts.push(`<circle cx="${num(k.x)}" cy="${num(k.y)}" r="${num(r)}" fill="${css}" stroke="#202020" stroke-width="${num(Math.max(1, lw / 2))}"/>`);
    }
  }

  /** Estimated width of a line of text (librsvg lays it out only when rendering). */
  private textWidth(text: string): number {
    return Math.ceil([...text].length * ADVANCE_EM * this.fontSize);
  }

  /** A filled tag with the text, above the box's top-left corner; inside the image where the box touches its top or sides. */
  tag(box: readonly number[], text: string, colour: Rgb): void {
    const clipped = this.clip(box);
    if (!clipped) return;
    const fs = this.fontSize;
    const pad = Math.max(1, Math.round(fs * 0.25));
    const w = this.textWidth(text) + 2 * pad;
    const h = fs + 2 * pad;
    const x = clamp(clipped[0], 0, Math.max(0, this.width - w));
    const y = clamp(clipped[1] - h, 0, Math.max(0, this.height - h));
    this.parts.push(
      `<rect x="${num(x)}" y="${num(y)}" width="${w}" height="${h}" fill="${cssColour(colour)}"/>`,
      this.text(x + pad, y + pad, text, textColour(colour)),
    );
  }

  /** A line of text whose em box starts at (x, top); the baseline sits at 0.8 em as in DejaVu's metrics. */
  private text(x: number, top: number, text: string, fill: string): string {
    return `<text x="${num(x)}" y="${num(top + 0.8 * this.fontSize)}" font-family="${FONT}" font-size="${this.fontSize}" fill="${fill}">${escapeXml(text)}</text>`;
  }

  /** Swatch and name of each entry (the first LEGEND_ROWS), on a dark panel in the top-right corner. */
  legend(entries: readonly LegendEntry[]): void {
    const rows = entries.slice(0, LEGEND_ROWS);
    if (rows.length === 0) return;
    const fs = this.fontSize;
    const pad = Math.max(2, Math.round(fs * 0.3));
    const row = fs + pad;
    const w = Math.min(this.width, 3 * pad + fs + Math.max(...rows.map((e) => this.textWidth(e.name))));
    const h = Math.min(this.height, pad + rows.length * row);
    const x0 = Math.max(0, this.width - w - pad);
    const y0 = Math.min(pad, Math.max(0, this.height - h));
    this.parts.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="#000" fill-opacity="0.6"/>`);
    rows.forEach((e, i) => {
      const top = y0 + pad + i * row;
      this.parts.push(
        `<rect x="${x0 + pad}" y="${top}" width="${fs}" height="${fs}" fill="${cssColour(e.colour)}" stroke="#fff" stroke-width="1"/>`,
        this.text(x0 + 2 * pad + fs, top, e.name, '#fff'),
      );
    });
  }

  get empty(): boolean {
    return this.parts.length === 0;
  }

  toString(): string {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}">${this.parts.join('')}</svg>`;
  }
}
