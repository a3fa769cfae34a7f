/**
 * The closed-form inputs of the large multi-scale deformable attention goldens, bit-exact with
 * scripts/golden/ms_deform_attn.py (which stores only sampled output rows). Every value is computed
 * in float64 exactly as there and rounded to f32 once.
 */

/** lowbias32 of (index + seed * 0x9E3779B9) mod 2^32. */
export function hash32(index: number, seed: number): number {
  let x = (index + Math.imul(seed, 0x9e3779b9)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** ((hash mod 2^bits) - 2^(bits-1)) * scale / 2^(bits-1) for indices 0..n-1. */
export function hashed(seed: number, n: number, scale = 1, bits = 11): Float32Array {
  const half = 2 ** (bits - 1);
  const mod = 2 ** bits;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (((hash32(i, seed) % mod) - half) * scale) / half;
  return out;
}

/** Sampling locations in [-0.1, 1.1). */
export function hashedLocations(seed: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((hash32(i, seed) % 629146) - 52429) / 2 ** 19;
  return out;
}

/** Attention weights in [0, 1/16). */
export function hashedWeights(seed: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (hash32(i, seed) % 4096) / 65536;
  return out;
}

export function tokenCount(shapes: readonly (readonly [number, number])[]): number {
  return shapes.reduce((sum, [h, w]) => sum + h * w, 0);
}

/** [B, S] with 1 where padded: batch 1 is padded right of 4/5 of each level's width and below 9/10 of its height. */
export function paddingMask(shapes: readonly (readonly [number, number])[], batch: number): Uint8Array {
  const S = tokenCount(shapes);
  const mask = new Uint8Array(batch * S);
  if (batch < 2) return mask;
  let at = S;
  for (const [h, w] of shapes) {
    const validW = Math.floor((4 * w + 4) / 5);
    const validH = Math.floor((9 * h + 9) / 10);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) mask[at++] = x >= validW || y >= validH ? 1 : 0;
  }
  return mask;
}

/** [B, S, L, 2]: each token's pixel centre in its own level, repeated for every level. */
export function encoderReferencePoints(shapes: readonly (readonly [number, number])[], batch: number): Float32Array {
  const S = tokenCount(shapes);
  const L = shapes.length;
  const out = new Float32Array(batch * S * L * 2);
  let t = 0;
  for (const [h, w] of shapes) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, t++) {
        for (let b = 0; b < batch; b++) {
          for (let l = 0; l < L; l++) {
            const i = ((b * S + t) * L + l) * 2;
            out[i] = (x + 0.5) / w;
            out[i + 1] = (y + 0.5) / h;
          }
        }
      }
    }
  }
  return out;
}

/** [B, Lq, L, 4] boxes (cx, cy, w, h): centres in [0, 1), sizes in [1/32, 9/32). */
export function decoderReferenceBoxes(seed: number, batch: number, queries: number, levels: number): Float32Array {
  const n = batch * queries * levels;
  const out = new Float32Array(4 * n);
  for (let i = 0; i < n; i++) {
    out[4 * i] = (hash32(4 * i, seed) % 65536) / 65536;
    out[4 * i + 1] = (hash32(4 * i + 1, seed) % 65536) / 65536;
    out[4 * i + 2] = ((hash32(4 * i + 2, seed) % 4096) + 512) / 16384;
    out[4 * i + 3] = ((hash32(4 * i + 3, seed) % 4096) + 512) / 16384;
  }
  return out;
}

/** Rows `queries` of a [B, Lq, width] output, as [B, queries.length, width]. */
export function pickRows(all: ArrayLike<number>, batch: number, count: number, width: number, queries: ArrayLike<number>): Float32Array {
  const out = new Float32Array(batch * queries.length * width);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < queries.length; i++) {
      const from = (b * count + queries[i]!) * width;
      for (let c = 0; c < width; c++) out[(b * queries.length + i) * width + c] = all[from + c]!;
    }
  }
  return out;
}
