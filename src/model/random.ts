/**
 * A small seeded generator (xoshiro128**) for sampling draws, so a seed reproduces a generation
 * exactly on any machine. Not for cryptography.
 */
export class SeededRandom {
  private s: Uint32Array;

  constructor(seed: number) {
    // splitmix32 spreads the seed over the four state words.
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** Uniform in [0, 1), 32 bits of randomness. */
  next(): number {
    let [a, b, c, d] = this.s as unknown as [number, number, number, number];
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    this.s.set([a, b, c, d]);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
