/** Closed-form test inputs, bit-identical to scripts/golden/hashed.py (see there). */

function hashU32(i: number, seed: number): number {
  let u = (i + Math.imul(seed, 0x9e3779b9)) >>> 0;
  u = Math.imul(u ^ (u >>> 16), 0x85ebca6b) >>> 0;
  u = Math.imul(u ^ (u >>> 13), 0xc2b2ae35) >>> 0;
  return (u ^ (u >>> 16)) >>> 0;
}

/** n values k / 2^23 - 1 in [-1, 1), times `scale` (a power of two keeps them exact). */
export function hashed(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((hashU32(i, seed) >>> 8) / 2 ** 23 - 1) * scale;
  return out;
}
