/**
 * Shapes, layouts and strides of an attention call, checked once: Q, K, V and the output, and the
 * optional additive bias/mask terms with their broadcasting. Errors name the op, the role and the
 * offending shape.
 */
import { formatShape, type Tensor } from '../../engine/tensor.js';
import { expectDType, FLOAT_DTYPES } from './shape.js';

/**
 * 'bhld': [batch, heads, length, headDim] (PyTorch's scaled_dot_product_attention layout).
 * 'blhd': [batch, length, heads, headDim], as a Linear projection produces it (no permute needed).
 */
export type AttentionLayout = 'bhld' | 'blhd';

/** Largest head dimension the kernels hold in registers. */
export const MAX_HEAD_DIM = 256;

export interface AttentionGeometry {
  B: number;
  Hq: number;
  Hkv: number;
  /** Query heads per kv head. */
  group: number;
  Lq: number;
  /** Keys attended (a prefix of K's length when kvLength is given). */
  Lk: number;
  D: number;
  layout: AttentionLayout;
  kvLayout: AttentionLayout;
  /** Element strides (batch, head, row) of Q/O and of K/V. */
  qStrides: [number, number, number];
  kStrides: [number, number, number];
  /** Output shape: Q's. */
  outShape: number[];
}

/** How an additive term is read: batch index modulo `nb`, head and row strides (0 = broadcast). */
export interface AdditiveTerm {
  tensor: Tensor;
  nb: number;
  sb: number;
  sh: number;
  sl: number;
}

const OP = 'attention';

/** Normalises Q, K, V to [B, H, L, D] sizes in the given layout and checks that they agree. */
export function attentionGeometry(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, kvLayout: AttentionLayout, kvLength?: number): AttentionGeometry {
  expectDType(OP, q, FLOAT_DTYPES, 'q');
  expectDType(OP, k, FLOAT_DTYPES, 'k');
  expectDType(OP, v, FLOAT_DTYPES, 'v');
  const dims = (t: Tensor, role: string, lay: AttentionLayout): [number, number, number, number] => {
    if (t.rank !== 4 && t.rank !== 3) {
      const names = lay === 'bhld' ? '[batch, heads, length, headDim]' : '[batch, length, heads, headDim]';
      throw new RangeError(`${OP}: ${role} ${formatShape(t.shape)} must be ${names} (or without batch) for layout '${lay}'`);
    }
    const s = t.rank === 3 ? [1, ...t.shape] : [...t.shape];
    const [b, x, y, d] = s as [number, number, number, number];
    return lay === 'bhld' ? [b, x, y, d] : [b, y, x, d];
  };
  const [B, Hq, Lq, D] = dims(q, 'q', layout);
  const [Bk, Hkv, Lkv, Dk] = dims(k, 'k', kvLayout);
  if (k.rank !== v.rank || k.shape.some((d, i) => d !== v.shape[i])) {
    throw new RangeError(`${OP}: k ${formatShape(k.shape)} and v ${formatShape(v.shape)} must have the same shape`);
  }
  if (k.dtype !== v.dtype) throw new TypeError(`${OP}: k is ${k.dtype} but v is ${v.dtype}; store them alike`);
  const all = `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}`;
  if (Bk !== B) throw new RangeError(`${OP}: batch sizes differ (${all})`);
  if (Dk !== D) throw new RangeError(`${OP}: head dims differ (${all})`);
  if (Hkv === 0 || Hq % Hkv !== 0) throw new RangeError(`${OP}: query heads ${Hq} must be a multiple of kv heads ${Hkv} (${all})`);
  if (D % 4 !== 0 || D === 0 || D > MAX_HEAD_DIM) {
    throw new RangeError(`${OP}: head dim ${D} must be a positive multiple of 4 up to ${MAX_HEAD_DIM} (${all})`);
  }
  const Lk = kvLength ?? Lkv;
  if (!Number.isInteger(Lk) || Lk < 0 || Lk > Lkv) {
    throw new RangeError(`${OP}: kvLength ${kvLength} must be an integer in [0, ${Lkv}] for k ${formatShape(k.shape)}`);
  }
  const qStrides: [number, number, number] = layout === 'bhld' ? [Hq * Lq * D, Lq * D, D] : [Lq * Hq * D, D, Hq * D];
  const kStrides: [number, number, number] = kvLayout === 'bhld' ? [Hkv * Lkv * D, Lkv * D, D] : [Lkv * Hkv * D, D, Hkv * D];
  return { B, Hq, Hkv, group: Hq / Hkv, Lq, Lk, D, layout, kvLayout, qStrides, kStrides, outShape: [...q.shape] };
}

/**
 * Checks an additive term against the scores [B, Hq, Lq, Lk]: it is [Bb, Hb, Lqb, Lk] (missing
 * leading dimensions count as 1) with Hb in {1, Hq}, Lqb in {1, Lq}, and Bb 1 or a divisor of B
 * (repeated along the batch: Swin's per-window masks with batch = images x windows).
 */
export function additiveTerm(t: Tensor, role: string, g: AttentionGeometry): AdditiveTerm {
  expectDType(OP, t, FLOAT_DTYPES, role);
  const want = `[${g.B} or a divisor, ${g.Hq} or 1, ${g.Lq} or 1, ${g.Lk}]`;
  if (t.rank < 1 || t.rank > 4) throw new RangeError(`${OP}: ${role} ${formatShape(t.shape)} must be ${want}`);
  const [nb, nh, nl, nk] = [...new Array<number>(4 - t.rank).fill(1), ...t.shape] as [number, number, number, number];
  const ok = nk === g.Lk && (nh === 1 || nh === g.Hq) && (nl === 1 || nl === g.Lq) && nb >= 1 && g.B % nb === 0;
  if (!ok) throw new RangeError(`${OP}: ${role} ${formatShape(t.shape)} does not broadcast to the scores [${g.B}, ${g.Hq}, ${g.Lq}, ${g.Lk}]; expected ${want}`);
  return { tensor: t, nb, sb: nh * nl * nk, sh: nh === 1 ? 0 : nl * nk, sl: nl === 1 ? 0 : nk };
}

/** Element range [first, end) of Q/O (or K/V) touched by query heads bh0 .. bh1-1. */
export function headSpan(g: AttentionGeometry, which: 'q' | 'k', bh0: number, bh1: number): [number, number] {
  const [sb, sh, sl] = which === 'q' ? g.qStrides : g.kStrides;
  const rows = which === 'q' ? g.Lq : g.Lk;
  let first = Infinity;
  let end = 0;
  for (let bh = bh0; bh < bh1; bh++) {
    const b = Math.floor(bh / g.Hq);
    const h = which === 'q' ? bh % g.Hq : Math.floor((bh % g.Hq) / g.group);
    const start = b * sb + h * sh;
    first = Math.min(first, start);
    end = Math.max(end, start + Math.max(rows - 1, 0) * sl + g.D);
  }
  return [first, end];
}
