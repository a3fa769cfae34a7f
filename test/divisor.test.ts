import { describe, expect, it } from 'vitest';
import { divisorMagic, shapeDivisors } from '../src/ops/support/divisor.js';

// The formula of kernels/lib/divide.wgsl in 32-bit JavaScript arithmetic: the kernels' exactness
// rests on the host's multipliers, checked here against true division over every kind of divisor.
function mulhi(a: number, b: number): number {
  const [al, ah, bl, bh] = [a & 0xffff, a >>> 16, b & 0xffff, b >>> 16];
  const mid1 = ah * bl;
  const mid2 = al * bh;
  const carry = (((al * bl) >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return (ah * bh + (mid1 >>> 16) + (mid2 >>> 16) + carry) >>> 0;
}

function divide(n: number, [m, shifts]: [number, number]): number {
  const t = mulhi(m, n);
  return ((t + ((n - t) >>> (shifts & 0xff))) >>> 0) >>> (shifts >>> 8);
}

describe('divisor multipliers (kernels/lib/divide.wgsl)', () => {
  it('give floor(n / d) for every kind of divisor and dividend', () => {
    let seed = 12345;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const divisors = [1, 2, 3, 5, 7, 64, 77, 320, 4096, 70001, 65535, 65536, 65537, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1];
    for (let i = 0; i < 300; i++) divisors.push(1 + (random() >>> (random() % 32)));
    for (const d of divisors) {
      const magic = divisorMagic(d);
      expect(magic[0], `multiplier of ${d}`).toBeLessThanOrEqual(0xffffffff);
      const dividends = [0, 1, d - 1, d, d + 1, 2 * d - 1, 2 ** 24 + 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1].filter((n) => n <= 0xffffffff);
      for (let i = 0; i < 200; i++) dividends.push(random());
      for (const n of dividends) expect(divide(n, magic), `${n} / ${d}`).toBe(Math.floor(n / d));
    }
  });

  it('are flat per extent, and refuse what is not a divisor', () => {
    expect(shapeDivisors([1, 6])).toEqual([...divisorMagic(1), ...divisorMagic(6)]);
    expect(() => divisorMagic(0)).toThrow(/divisor 0 must be an integer in \[1, 2\^32\)/);
    expect(() => divisorMagic(2.5)).toThrow(/divisor 2.5/);
  });
});
