/**
 * Divisors for kernels/lib/divide.wgsl: the multiplier and shifts that turn floor(n / d) into a
 * multiply-high and two shifts, exact for every u32 n (Granlund & Montgomery's round-up method;
 * the WGSL file says why kernels avoid the division instruction).
 */

/** [m, min(l, 1) | max(l - 1, 0) << 8] for a divisor 1 <= d < 2^32, l = ceil(log2 d). */
export function divisorMagic(d: number): [number, number] {
  if (!Number.isInteger(d) || d < 1 || d > 0xffffffff) throw new RangeError(`divisor ${d} must be an integer in [1, 2^32)`);
  let l = 0;
  while (2 ** l < d) l++;
  const m = ((1n << 32n) * ((1n << BigInt(l)) - BigInt(d))) / BigInt(d) + 1n;
  return [Number(m), Math.min(l, 1) | (Math.max(l - 1, 0) << 8)];
}

/** The magic numbers of each extent of a shape, flat: what a kernel's `divisors` parameter takes. */
export function shapeDivisors(shape: readonly number[]): number[] {
  return shape.flatMap((d) => divisorMagic(Math.max(d, 1)));
}
