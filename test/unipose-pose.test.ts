import { describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { poseAttentionBias, poseAttentionMask } from '../src/decoders/unipose/pose-mask.js';
import { PoseQueries, type PoseQueryConfig } from '../src/decoders/unipose/pose-queries.js';
import { poseDetections } from '../src/decoders/unipose/postprocess.js';
import { Params } from '../src/nn/params.js';
import { attention } from '../src/ops/attention.js';
import { expectClose, loadGolden, testEngine } from './helpers.js';
import { hashed } from './hash-inputs.js';

const golden = loadGolden('unipose_pose');
const MASK_KS = JSON.parse(golden.metadata.mask_ks!) as number[];
const MASK_GROUPS = Number(golden.metadata.mask_groups);
const FULL_ROWS = JSON.parse(golden.metadata.full_rows!) as number[];
const CFG = JSON.parse(golden.metadata.config!) as { d: number; queries: number; groups: number; classes: number; keypoints: number; max_keypoints: number };
const POST = JSON.parse(golden.metadata.post!) as { prefix: string; classes: number; points: number; size: [number, number] }[];
const M = CFG.max_keypoints;

const bytes = (name: string) => golden.entry(name).bytes;
const f32 = (name: string) => golden.values(name) as Float32Array;

/** np.packbits(row, bitorder='little') of each row of an [R, L] 0/1 matrix. */
function packRows(mask: Uint8Array, rows: readonly number[], L: number): Uint8Array {
  const per = Math.ceil(L / 8);
  const out = new Uint8Array(rows.length * per);
  rows.forEach((r, i) => {
    for (let c = 0; c < L; c++) if (mask[r * L + c]) out[i * per + (c >> 3)]! |= 1 << (c & 7);
  });
  return out;
}

describe('unipose attn_mask2', () => {
  it.each(MASK_KS)('Kk %i: bit-exact at 3 groups, and every row of the real 50 × 69 = 3450 mask', (kk) => {
    const L = MASK_GROUPS * (1 + M);
    const small = poseAttentionMask(MASK_GROUPS, M, kk);
    expect(Buffer.from(packRows(small, Array.from({ length: L }, (_, r) => r), L)).equals(Buffer.from(bytes(`mask.k${kk}.g${MASK_GROUPS}`)))).toBe(true);

    const N = 50 * (1 + M);
    const full = poseAttentionMask(50, M, kk);
    expect(full.length).toBe(N * N);
    expect(Buffer.from(packRows(full, FULL_ROWS, N)).equals(Buffer.from(bytes(`mask.k${kk}.full.rows`)))).toBe(true);
    const checks = new Uint32Array(bytes(`mask.k${kk}.full.checks`).slice().buffer);
    const mine = new Uint32Array(N * 3);
    for (let r = 0; r < N; r++) {
      let count = 0;
      let sum = 0;
      let xor = 0;
      for (let c = 0; c < N; c++) {
        if (!full[r * N + c]) continue;
        count++;
        sum += c;
        xor ^= Math.imul(c, 2654435761);
      }
      mine.set([count, sum, xor >>> 0], r * 3);
    }
    expect(Buffer.from(mine.buffer).equals(Buffer.from(checks.buffer))).toBe(true);
    // The official quirks: rows 3400..3449 (past the stride-68 band) are open everywhere outside
    // their own 69-block, and the last band (rows 3332..3399) is not blocked right of column 3400.
    const blocked = (r: number, from: number) => {
      const g = Math.floor(r / 69) * 69;
      return full.subarray(r * N, (r + 1) * N).reduce((a, b, c) => a + (c < from || (c >= g && c < g + 69) ? 0 : b), 0);
    };
    for (const r of [3400, 3449]) expect(blocked(r, 0), `row ${r}`).toBe(0);
    for (const r of [3332, 3399]) expect(blocked(r, 3400), `row ${r}`).toBe(0);
    expect(blocked(3331, 3400)).toBe(50);
  });

  it('rejects keypoints beyond the slots', () => {
    expect(() => poseAttentionMask(50, 68, 69)).toThrow(/keypoints 69/);
  });
});

describe('unipose pose post-processing', () => {
  it.each(POST)('$prefix: top-k, boxes and the first $points keypoints in original pixels', (c) => {
    const names = Array.from({ length: c.points }, (_, j) => `kp${j}`);
    const out = poseDetections(
      { logits: f32(`${c.prefix}.logits`), boxes: f32(`${c.prefix}.boxes`), keypoints: f32(`${c.prefix}.keypoints`) },
      { oriShape: c.size, keypointNames: names, numClasses: c.classes },
    );
    const scores = f32(`${c.prefix}.scores`);
    const labels = golden.values(`${c.prefix}.labels`);
    const boxes = f32(`${c.prefix}.out_boxes`);
    const kps = f32(`${c.prefix}.out_keypoints`);
    expect(out.length).toBe(scores.length);
    expect(out.length).toBe(Math.min(100, 50 * c.classes));
    out.forEach((d, i) => {
      expect(Math.abs(d.score - scores[i]!)).toBeLessThanOrEqual(1e-6);
      expect(d.classIndex).toBe(labels[i]);
      expect(d.label).toBe(String(labels[i]));
      d.box.forEach((v, j) => expect(Math.abs(v - boxes[i * 4 + j]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(v))));
      expect(d.keypoints.map((k) => k.name)).toEqual(names);
      d.keypoints.forEach((k, j) => {
        const at = (i * c.points + j) * 3;
        expect(Math.abs(k.x - kps[at]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, k.x));
        expect(Math.abs(k.y - kps[at + 1]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, k.y));
        expect(k.visible).toBe(kps[at + 2]);
      });
    });
  });
});

const config: PoseQueryConfig = { dModel: CFG.d, maxKeypoints: M, groups: CFG.groups, boxLayers: 2, decoderLayers: 6 };

function weights(engine: Engine): Params {
  const map = new Map<string, Tensor>();
  for (const name of golden.tensors.keys()) {
    if (/^(pose_embed|pose_hw_embed|bbox_embed)\./.test(name)) map.set(name, golden.upload(engine, name));
  }
  map.set('transformer.decoder.hw.weight', golden.upload(engine, 'hw'));
  map.set('transformer.decoder.hw_append.weight', golden.upload(engine, 'hw_append'));
  return Params.of(map, 'golden');
}

describe.each(['cpu', 'gpu'] as const)('unipose pose queries, %s kernels', (profile) => {
  it('group selection, keypoint references, refinement of layers 2..5 and the heads', async () => {
    const engine = await testEngine({ profile });
    const heads = await PoseQueries.load(weights(engine), config);
    const hidden = golden.upload(engine, 'hidden');
    const text = golden.upload(engine, 'text');
    const kpt = golden.upload(engine, 'kpt');
    const groups = await heads.select(hidden, f32('reference'), text, kpt);
    expect(Array.from(groups.indices)).toEqual(Array.from(golden.values('select.topk')));
    expect(groups.hidden.shape).toEqual([CFG.groups * (1 + M), CFG.d]);
    expectClose(await groups.hidden.toArray(), f32('select.hidden'), { rel: 1e-6, label: 'group hidden' });
    expectClose(groups.reference, f32('select.reference'), { rel: 1e-4, label: 'group references' });
    let ref = groups.reference;
    for (let layer = 2; layer < 6; layer++) {
      const h = golden.upload(engine, `layer${layer}.hidden`);
      // Chain from the golden's previous reference so that each layer is checked on its own.
      const prev = layer === 2 ? f32('select.reference') : f32(`layer${layer - 1}.reference`);
      ref = await heads.refine(layer, h, prev);
      h.dispose();
      expectClose(ref, f32(`layer${layer}.reference`), { rel: 1e-4, label: `layer ${layer} references` });
    }
    const hs = golden.upload(engine, 'out.hs');
    const out = await heads.outputs(hs, f32('layer4.reference'), text);
    expectClose(out.logits, f32('out.logits'), { rel: 1e-4, label: 'pred_logits' });
    expectClose(out.boxes, f32('out.boxes'), { rel: 1e-4, label: 'pred_boxes' });
    expectClose(out.keypoints, f32('out.keypoints'), { rel: 1e-4, label: 'pred_keypoints' });
    [hidden, text, kpt, groups.hidden, hs].forEach((t) => t.dispose());
  });
});

/** Masked softmax attention of the given query rows of every head, in f64 on the host, next to the GPU's rows. */
function compareRows(got: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, mask: Uint8Array, [H, L, D]: number[], rows: readonly number[]) {
  const scale = 1 / Math.sqrt(D);
  const want: number[] = [];
  const have: number[] = [];
  for (let h = 0; h < H; h++) {
    for (const r of rows) {
      const s = new Float64Array(L);
      let max = -Infinity;
      for (let c = 0; c < L; c++) {
        if (mask[r * L + c]) {
          s[c] = -Infinity;
          continue;
        }
        let dot = 0;
        for (let j = 0; j < D; j++) dot += q[(h * L + r) * D + j]! * k[(h * L + c) * D + j]!;
        s[c] = dot * scale;
        max = Math.max(max, s[c]!);
      }
      let sum = 0;
      for (let c = 0; c < L; c++) sum += s[c] = Math.exp(s[c]! - max);
      for (let j = 0; j < D; j++) {
        let acc = 0;
        for (let c = 0; c < L; c++) acc += s[c]! * v[(h * L + c) * D + j]!;
        want.push(acc / sum);
        have.push(got[(h * L + r) * D + j]!);
      }
    }
  }
  return { have, want };
}

describe.each(['cpu', 'gpu'] as const)('unipose pose attention bias, %s kernels', (profile) => {
  it.each(['f32', 'f16'] as const)('%s additive attn_mask2 in the fused attention, 3 groups, all rows', async (dtype) => {
    const engine = await testEngine({ profile });
    const [H, L, D] = [2, 3 * (1 + M), 16];
    const [q, k, v] = [811, 812, 813].map((seed) => hashed([1, H, L, D], seed, 2));
    const mask = poseAttentionMask(3, M, 14);
    const bias = poseAttentionBias(engine, 3, M, 14, dtype);
    expect(bias.shape).toEqual([1, 1, L, L]);
    expect(bias.dtype).toBe(dtype);
    const [tq, tk, tv] = [q, k, v].map((x) => engine.tensor(x!, [1, H, L, D]));
    const out = attention(tq!, tk!, tv!, { mask: bias });
    const got = (await out.toArray()) as Float32Array;
    const { have, want } = compareRows(got, q!, k!, v!, mask, [H, L, D], Array.from({ length: L }, (_, r) => r));
    expectClose(have, want, { rel: 1e-4, label: `${dtype} masked attention` });
    [tq, tk, tv, bias, out].forEach((t) => t!.dispose());
  });
});

describe('unipose pose self-attention over 50 × 69 queries', () => {
  it('fused attention with the additive attn_mask2 (d 256, 8 heads) matches a CPU slice; timed', async () => {
    const engine = await testEngine();
    const [H, L, D] = [8, 50 * (1 + M), 32];
    const q = hashed([1, H, L, D], 801, 2);
    const k = hashed([1, H, L, D], 802);
    const v = hashed([1, H, L, D], 803);
    const mask = poseAttentionMask(50, M, 17);
    const bias = poseAttentionBias(engine, 50, M, 17);
    const [tq, tk, tv] = [q, k, v].map((x) => engine.tensor(x, [1, H, L, D]));
    await attention(tq!, tk!, tv!, { mask: bias }).toArray(); // warm-up: pipeline compilation
    const start = performance.now();
    const out = attention(tq!, tk!, tv!, { mask: bias });
    const got = (await out.toArray()) as Float32Array;
    const ms = performance.now() - start;
    console.log(`unipose pose self-attention: 8 heads × ${L} queries × d ${D}, f32 [1,1,${L},${L}] additive mask: ${ms.toFixed(0)} ms (${engine.profile} kernels)`);
    const rows = [0, 67, 68, 69, 1000, 3399, 3400, 3449];
    const { have, want } = compareRows(got, q, k, v, mask, [H, L, D], rows);
    expectClose(have, want, { rel: 1e-4, label: 'masked attention slice' });
    [tq, tk, tv, bias, out].forEach((t) => t!.dispose());
  });
});
