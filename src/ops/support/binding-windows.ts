/**
 * Binding windows: ops whose work is made of independent units (attention heads, cache heads) bind,
 * per dispatch, only the element range those units touch, aligned down to a legal binding offset.
 * Kernels then index with global offsets minus the window's first element (`base`). When all units
 * at once exceed engine.maxBindingBytes, they are grouped into ranges that fit.
 */
import { DTYPE_BYTES } from '../../engine/dtype.js';
import type { Tensor } from '../../engine/tensor.js';

/** Element range [first, end) of a tensor. */
export type Span = [number, number];

/** Bytes a binding over `span` of `t` (or of a tensor yet to be made) needs once its start is aligned down. */
export function windowBytes(t: Pick<Tensor, 'dtype' | 'byteOffset' | 'engine'>, [first, end]: Span): number {
  const bytes = DTYPE_BYTES[t.dtype];
  const start = t.byteOffset + first * bytes;
  return (end - first) * bytes + (start % t.engine.storageAlign);
}

/**
 * A view of `t` covering `span` from an aligned start, and the element index the view starts at.
 * When all of `t` fits one binding the view is all of it: the binding is then the same on every
 * call (a KV cache read at a growing length, say), and so is the cached bind group.
 */
export function bindingWindow(t: Tensor, span: Span): { view: Tensor; base: number } {
  return spanWindow(t, bindsWhole(t) ? [0, t.size] : span);
}

/** Whether bindingWindow binds all of `t` (then the binding is the same whatever the span). */
export function bindsWhole(t: Tensor): boolean {
  return windowBytes(t, [0, t.size]) <= t.engine.maxBindingBytes;
}

/**
 * A view covering exactly `span` of `t`'s storage, measured in elements from t's first element (it
 * may reach past t, e.g. over neighbouring views of one projection), from an aligned start.
 */
export function spanWindow(t: Tensor, [first, end]: Span): { view: Tensor; base: number } {
  const bytes = DTYPE_BYTES[t.dtype];
  const start = t.byteOffset + first * bytes;
  const aligned = start - (start % t.engine.storageAlign);
  const lead = (start - aligned) / bytes;
  return { view: t.window(aligned, [lead + end - first]), base: first - lead };
}

/**
 * Ranges [u0, u1) covering `total` units such that `fits(u0, u1)` holds for each (fits must be
 * monotone: a sub-range of a fitting range fits). `tooBig` explains why a single unit cannot be bound.
 */
export function unitRanges(total: number, fits: (u0: number, u1: number) => boolean, tooBig: () => string): [number, number][] {
  if (total === 0 || fits(0, total)) return [[0, total]];
  const ranges: [number, number][] = [];
  let u0 = 0;
  while (u0 < total) {
    if (!fits(u0, u0 + 1)) throw new RangeError(tooBig());
    // Grow by doubling, then bisect between the last size that fit and the first that did not.
    let n = 1;
    while (u0 + 2 * n <= total && fits(u0, u0 + 2 * n)) n *= 2;
    let hi = Math.min(2 * n, total - u0) + 1;
    while (hi - n > 1) {
      const mid = (n + hi) >> 1;
      if (fits(u0, u0 + mid)) n = mid;
      else hi = mid;
    }
    ranges.push([u0, u0 + n]);
    u0 += n;
  }
  return ranges;
}
