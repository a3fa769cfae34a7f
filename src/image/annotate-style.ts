/** The look of annotated pictures: the class palette and the text colours on it. */

export type Rgb = readonly [number, number, number];

/**
 * matplotlib's tab20, its ten strong colours first: neighbouring class indices (the first classes of a
 * prompt) get the most distinct colours, and a class keeps its colour from one picture to the next.
 */
export const PALETTE: readonly Rgb[] = [
  '1f77b4', 'ff7f0e', '2ca02c', 'd62728', '9467bd', '8c564b', 'e377c2', '7f7f7f', 'bcbd22', '17becf',
  'aec7e8', 'ffbb78', '98df8a', 'ff9896', 'c5b0d5', 'c49c94', 'f7b6d2', 'c7c7c7', 'dbdb8d', '9edae5',
].map((hex) => [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as unknown as Rgb);

/** The colour of class (or pose instance) `index`; any integer works, negative ones included. */
export function paletteColour(index: number): Rgb {
  const n = PALETTE.length;
  const i = Number.isInteger(index) ? index : 0;
  return PALETTE[((i % n) + n) % n]!;
}

export const cssColour = ([r, g, b]: Rgb): string => `rgb(${r},${g},${b})`;

/** Black text on light tags, white on dark ones (Rec. 601 luma), so labels stay legible on every palette entry. */
export function textColour([r, g, b]: Rgb): string {
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? '#000' : '#fff';
}
