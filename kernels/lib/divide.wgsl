// Exact floor(n / d) for every u32 n by a divisor d known only at dispatch time, without a
// division instruction: lavapipe turns a vector division by a non-constant into one scalar
// division per lane, which dominated the index arithmetic of strided copies and broadcasts.
// Granlund & Montgomery's round-up method ("Division by invariant integers using multiplication",
// 1994, figure 4.1): with l = ceil(log2 d), m = floor(2^32 (2^l - d) / d) + 1,
//   t = mulhi(m, n),  floor(n / d) = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0).
// The host computes each divisor's (m, shifts) once (src/ops/support/divisor.ts): packed as
// vec2(m, min(l, 1) | max(l - 1, 0) << 8).

// High 32 bits of the 64-bit product a * b, from 16-bit halves (no partial product overflows).
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let mid1 = ah * bl;
  let mid2 = al * bh;
  let carry = (((al * bl) >> 16u) + (mid1 & 0xffffu) + (mid2 & 0xffffu)) >> 16u;
  return ah * bh + (mid1 >> 16u) + (mid2 >> 16u) + carry;
}

// Dimension k's (multiplier, shifts) in a parameter array of two divisors per vec4.
fn divisor_of(pairs: vec4<u32>, k: u32) -> vec2<u32> {
  return select(pairs.xy, pairs.zw, (k & 1u) == 1u);
}

fn divide(n: u32, magic: vec2<u32>) -> u32 {
  let t = mulhi(magic.x, n);
  return (t + ((n - t) >> (magic.y & 0xffu))) >> (magic.y >> 8u);
}
