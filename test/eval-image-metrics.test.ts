/**
 * The evaluation's generation and editing measures (scripts/eval/image-metrics.ts), on pictures
 * drawn by hand.
 */
import { describe, expect, it } from 'vitest';
import { largestComponent, nearestColour, resampleMask, scoreEdit, WORLD_COLOURS } from '../scripts/eval/image-metrics.js';

type Rgb = readonly [number, number, number];

function canvas(width: number, height: number, background: Rgb) {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(background, 3 * p);
  return { width, height, data };
}

function fill(image: ReturnType<typeof canvas>, [x0, y0, x1, y1]: number[], rgb: Rgb) {
  for (let y = y0!; y < y1!; y++) for (let x = x0!; x < x1!; x++) image.data.set(rgb, 3 * (y * image.width + x));
}

const GREY: Rgb = [120, 110, 100];

describe('generation: the largest foreground component', () => {
  it('finds the biggest of two shapes, its box and its nearest palette colour', () => {
    const image = canvas(20, 12, GREY);
    fill(image, [2, 2, 5, 5], [230, 30, 30]); // 9 pixels, red
    fill(image, [9, 3, 17, 9], [35, 90, 210]); // 48 pixels, blue
    const found = largestComponent(image)!;
    expect(found.pixels).toHaveLength(48);
    expect(found.box).toEqual([9, 3, 17, 9]);
    expect(found.colour).toBe('blue');
  });

  it('ignores pixels within 60 levels of the border colour, and finds nothing on a plain picture', () => {
    const image = canvas(10, 10, GREY);
    expect(largestComponent(image)).toBeUndefined();
    fill(image, [3, 3, 7, 7], [180, 110, 100]); // 60 levels from the background: still background
    expect(largestComponent(image)).toBeUndefined();
    fill(image, [3, 3, 7, 7], [181, 110, 100]);
    expect(largestComponent(image)!.pixels).toHaveLength(16);
  });

  it('joins pixels by their sides only (4-connected)', () => {
    const image = canvas(8, 8, GREY);
    fill(image, [2, 2, 3, 3], [20, 20, 20]);
    fill(image, [3, 3, 4, 4], [20, 20, 20]); // touches the first by a corner only
    fill(image, [5, 5, 6, 7], [20, 20, 20]);
    expect(largestComponent(image)!.pixels).toHaveLength(2);
  });

  it('names every palette colour as itself', () => {
    for (const [name, rgb] of Object.entries(WORLD_COLOURS)) expect(nearestColour(rgb)).toBe(name);
    expect(nearestColour([250, 150, 40])).toBe('orange');
  });
});

describe('editing: the object recoloured, the rest kept', () => {
  const input = canvas(12, 12, GREY);
  fill(input, [4, 4, 8, 8], WORLD_COLOURS.red!);
  const mask = new Uint8Array(144);
  for (let y = 4; y < 8; y++) for (let x = 4; x < 8; x++) mask[y * 12 + x] = 1;

  it('reads the object colour and keeps every other pixel of a perfect edit', () => {
    const output = canvas(12, 12, GREY);
    fill(output, [4, 4, 8, 8], WORLD_COLOURS.blue!);
    expect(scoreEdit(input, output, mask)).toEqual({ colour: 'blue', kept: 1 });
  });

  it('counts the other pixels moved beyond 20 levels, but not those next to the object', () => {
    const output = canvas(12, 12, GREY);
    fill(output, [4, 4, 8, 8], WORLD_COLOURS.blue!);
    fill(output, [3, 3, 9, 9], [200, 200, 200]); // the ring next to the object: not scored
    fill(output, [4, 4, 8, 8], WORLD_COLOURS.blue!);
    fill(output, [0, 0, 12, 1], [141, 110, 100]); // the top row: 21 levels off
    fill(output, [0, 11, 12, 12], [140, 110, 100]); // the bottom row: 20 levels, kept
    // 144 pixels, 36 within a pixel of the object: 108 scored, 12 of them moved.
    const score = scoreEdit(input, output, mask);
    expect(score.colour).toBe('blue');
    expect(score.kept).toBeCloseTo(96 / 108, 12);
  });

  it('rejects images and masks of different sizes', () => {
    expect(() => scoreEdit(input, canvas(12, 11, GREY), mask)).toThrow(/12x12, output 12x11/);
  });

  it('samples a mask at pixel centres when resizing', () => {
    // 4 x 2 -> 2 x 1: the centres of the output's pixels land on source columns 1 and 3 of row 1.
    const full = Uint8Array.from([0, 0, 0, 0, 0, 1, 0, 0]);
    expect([...resampleMask(full, 4, 2, 2, 1)]).toEqual([1, 0]);
  });
});
