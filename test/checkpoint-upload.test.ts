/** Uploading checkpoint tensors to the GPU: converted bit-exactly, in pieces, nothing left behind on failure. */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { Checkpoint, defaultStoragePolicy } from '../src/io/checkpoint.js';
import { TEST_DIR, loadGolden, testEngine } from './helpers.js';

const FIXTURES = path.join(TEST_DIR, 'golden', 'checkpoints');
const golden = loadGolden('checkpoints');

let engine: Engine;
let ckpt: Checkpoint;
beforeAll(async () => {
  engine = await testEngine();
  ckpt = await Checkpoint.open(path.join(FIXTURES, 'state_dict.bin'));
});
afterAll(async () => {
  await ckpt.close();
});

function goldenBits(key: string): number[] {
  const b = golden.entry(key).bytes;
  return Array.from(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2));
}

function goldenInts(key: string): number[] {
  const b = golden.entry(key).bytes;
  return Array.from(new BigInt64Array(b.buffer, b.byteOffset, b.byteLength / 8), Number);
}

describe('upload to the GPU', () => {
  it('stores matrices as f16, vectors as f32 and integers as i32 by default, exactly as PyTorch converts', async () => {
    const names = ckpt.names().filter((n) => !['big_ids', 'overflow', 'doubles'].includes(n));
    const policy = defaultStoragePolicy(engine);
    expect(policy.matrix).toBe(engine.has('shader-f16') ? 'f16' : 'f32');
    const warnings: string[] = [];
    const tensors = await ckpt.uploadAll(engine, { names, warn: (m) => warnings.push(m) });
    try {
      expect(warnings).toEqual([]);
      for (const [name, t] of tensors) {
        const info = ckpt.info(name);
        expect(t.shape, name).toEqual(info.shape);
        const raw = await t.read();
        if (t.dtype === 'f16') expect(Array.from(raw), name).toEqual(goldenBits(`${name}.f16`));
        else if (t.dtype === 'f32') expect(Array.from(raw), name).toEqual(Array.from(golden.values(`${name}.f32`)));
        else if (info.dtype === 'BOOL') expect(Array.from(raw), name).toEqual(Array.from(golden.entry(`${name}.u8`).bytes));
        else expect(Array.from(raw), name).toEqual(goldenInts(`${name}.i64`));
      }
      expect(tensors.get('proj.weight')!.dtype).toBe(policy.matrix);
      expect(tensors.get('proj.bias')!.dtype).toBe('f32');
      expect(tensors.get('position_ids')!.dtype).toBe('i32');
      expect(tensors.get('mask')!.dtype).toBe('i32');
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  });

  it('takes an explicit dtype, a policy override, and splits uploads into small pieces', async () => {
    const w32 = await ckpt.upload(engine, 'bf.t', { dtype: 'f32', pieceBytes: 6 });
    expect(Array.from(await w32.toArray())).toEqual(Array.from(golden.values('bf.t.f32')));
    const policy = { ...defaultStoragePolicy(engine), matrix: 'f16' as const, override: (i: { name: string }) => (i.name === 'shared.t' ? ('f32' as const) : undefined) };
    const pieces = await ckpt.uploadAll(engine, { names: ['shared.t', 'shared.step', 'proj.weight'], policy, pieceBytes: 10 });
    expect(pieces.get('shared.t')!.dtype).toBe('f32');
    expect(Array.from(await pieces.get('shared.step')!.read())).toEqual(goldenBits('shared.step.f16'));
    expect(Array.from(await pieces.get('proj.weight')!.read())).toEqual(goldenBits('proj.weight.f16'));
    [w32, ...pieces.values()].forEach((t) => t.dispose());
  });

  it('reports progress in bytes over the whole load', async () => {
    const seen: number[] = [];
    const names = ['proj.weight', 'shared.base', 'norm.bias'];
    const total = names.reduce((n, name) => n + ckpt.info(name).byteLength, 0);
    const tensors = await ckpt.uploadAll(engine, { names, pieceBytes: 16, onProgress: (p) => {
      expect(p.bytesTotal).toBe(total);
      seen.push(p.bytesDone);
    } });
    tensors.forEach((t) => t.dispose());
    expect(seen.length).toBeGreaterThan(names.length);
    expect(seen.at(-1)).toBe(total);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });

  it('warns about values clamped to f16', async () => {
    const warnings: string[] = [];
    const t = await ckpt.upload(engine, 'overflow', { dtype: 'f16', warn: (m) => warnings.push(m) });
    t.dispose();
    expect(warnings).toEqual([expect.stringMatching(/state_dict\.bin: tensor 'overflow': 3 value\(s\) beyond f16's range were clamped to ±65504/)]);
  });

  it('frees everything it allocated when a tensor fails part way through a load', async () => {
    await engine.sync();
    const before = engine.memory();
    const names = ['proj.weight', 'shared.base', 'big_ids', 'norm.weight'];
    await expect(ckpt.uploadAll(engine, { names })).rejects.toThrow(/state_dict\.bin: tensor 'big_ids': element 1 = 1099511627776 does not fit in I32/);
    expect(engine.memory().liveBytes).toBe(before.liveBytes);
    expect(engine.memory().liveBuffers).toBe(before.liveBuffers);
    await expect(ckpt.upload(engine, 'proj.weight', { dtype: 'i32' })).rejects.toThrow(/tensor 'proj\.weight': cannot upload floating-point BF16 as i32/);
    await expect(ckpt.uploadAll(engine, { names: ['proj.weight', 'nope'] })).rejects.toThrow(/no tensor 'nope'/);
    expect(engine.memory().liveBytes).toBe(before.liveBytes);
  });

  it('loads the sharded official miniature', async () => {
    const official = await Checkpoint.open(path.join(FIXTURES, 'official'));
    const tensors = await official.uploadAll(engine, { policy: { matrix: 'f16', vector: 'f32', integer: 'i32' } });
    await official.close();
    expect([...tensors.keys()].sort()).toEqual(official.names().sort());
    expect(Array.from(await tensors.get('llm.lm_head.weight')!.read())).toEqual(goldenBits('official.llm.lm_head.weight.f16'));
    expect(Array.from(await tensors.get('vl_bridge.0.bias')!.toArray())).toEqual(Array.from(golden.values('official.vl_bridge.0.bias.f32')));
    tensors.forEach((t) => t.dispose());
  });
});
