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

/**
 * n N(0, 1) values from uniform draws in [0, 1): Box–Muller over pairs of draws, both values of a
 * pair used (the diffusion pipelines' latents and Euler ancestral's noise). torch.randn draws other
 * numbers from the same distribution.
 */
export function normalValues(uniform: () => number, n: number): Float32Array {
  const values = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u in (0, 1]: no log(0)
    const angle = 2 * Math.PI * uniform();
    values[i] = radius * Math.cos(angle);
    if (i + 1 < n) values[i + 1] = radius * Math.sin(angle);
  }
  return values;
}
