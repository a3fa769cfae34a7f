import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ToF16Bits } from '../src/engine/dtype.js';
import type { Engine } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { bucketSize } from '../src/engine/pool.js';
import { add, scale } from '../src/ops/elementwise.js';
import { TEST_DIR, testEngine } from './helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await testEngine();
});

describe('device', () => {
  it('gets the adapter maxima and the features we use', () => {
    const { limits, features } = engine.gpu;
    expect(limits.maxStorageBufferBindingSize).toBe(engine.gpu.adapter.limits.maxStorageBufferBindingSize);
    expect(limits.maxBufferSize).toBe(engine.gpu.adapter.limits.maxBufferSize);
    expect(limits.maxComputeWorkgroupStorageSize).toBe(engine.gpu.adapter.limits.maxComputeWorkgroupStorageSize);
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) {
      expect(features.has(f)).toBe(engine.gpu.adapter.features.has(f));
    }
    expect(['cpu', 'gpu']).toContain(engine.profile);
  });

  it('reports a missing adapter with the fix', async () => {
    await expect(testEngine({ adapter: 'no such adapter' })).rejects.toThrow(/No WebGPU adapter found.*scripts\/setup\.sh/s);
  });
});

describe('kernels', () => {
  it('names the kernel file and line of a WGSL compile error', async () => {
    const e = await testEngine();
    const file = path.join(TEST_DIR, 'fixtures', 'broken.wgsl');
    const y = e.empty([4]);
    e.run({ file, entry: 'main', dtypes: { y: 'f32' } }, { y }, { n: 4 }, 1);
    await expect(y.read()).rejects.toThrow(/test\/fixtures\/broken\.wgsl:9:\d+: .*(cannot|convert|type)/);
  });

  it('names missing and unknown parameters and tensors', () => {
    const x = engine.tensor([1, 2, 3], [3]);
    const y = engine.empty([3]);
    const spec = { file: 'elementwise.wgsl', entry: 'unary', dtypes: { x: 'f32' as const, y: 'f32' as const } };
    const good = { n: 3, rank: 0, alpha: 1, beta: 0, out_shape: [], a_strides: [], b_strides: [], divisors: [] };
    expect(() => engine.run(spec, { x, y }, { ...good, alpha: undefined as unknown as number }, 1)).toThrow(/missing parameter 'alpha'/);
    expect(() => engine.run(spec, { x, y }, { ...good, gamma: 2 }, 1)).toThrow(/unknown parameter\(s\) gamma/);
    expect(() => engine.run(spec, { x, y }, { ...good, n: -1 }, 1)).toThrow(/'n' must be a u32, got -1/);
    expect(() => engine.run(spec, { x }, good, 1)).toThrow(/no tensor for binding 'y'/);
    expect(() => engine.run(spec, { x, y, z: y }, good, 1)).toThrow(/unknown tensor binding\(s\) z/);
    expect(() => engine.run({ ...spec, entry: 'nope' }, { x, y }, good, 1)).toThrow(/no compute entry point 'nope' \(has: unary, binary, gated\)/);
  });

  it('caches pipelines by kernel, dtypes and override constants', () => {
    const x = engine.tensor([1, 2], [2]);
    const before = engine.kernels.size;
    scale(x, 2).dispose();
    scale(x, 3).dispose(); // same pipeline: alpha is a parameter
    expect(engine.kernels.size).toBe(before + 1);
    add(x, x).dispose();
    add(x, x, { act: 'relu' }).dispose(); // ACT is an override constant: a second pipeline
    expect(engine.kernels.size).toBe(before + 3);
  });
});

describe('GPU errors surface on the pending operation', () => {
  it('throws a validation error at read-back, not silently', async () => {
    const e = await testEngine();
    const x = e.tensor([1, 2, 3], [3]);
    const y = scale(x, 2);
    x.buffer.destroy(); // a buffer destroyed behind the engine's back: the submit is invalid
    const z = scale(y, 2);
    const w = add(y, z);
    await expect(w.read()).rejects.toThrow(/GPUValidationError|destroyed/i);
  });

  it('throws once the device is lost', async () => {
    const e = await testEngine();
    const x = e.tensor([1, 2, 3], [3]);
    e.gpu.device.destroy(); // what a driver reset looks like from here
    await new Promise((r) => setTimeout(r, 50));
    await expect(e.sync()).rejects.toThrow(/GPU device lost/);
    expect(x.isDisposed).toBe(false);
  });
});

describe('tensors and memory', () => {
  it('round-trips every dtype', async () => {
    for (const [data, dtype] of [
      [new Float32Array([1.5, -2, 3e-8]), 'f32'],
      [new Int32Array([-7, 2 ** 31 - 1, 0]), 'i32'],
      [new Uint32Array([0, 2 ** 32 - 1, 5]), 'u32'],
      [new Uint16Array([0x3c00, 0xc000, 0x7bff]), 'f16'],
    ] as const) {
      const t = engine.tensor(data, [3]);
      expect(t.dtype).toBe(dtype);
      expect(Array.from(await t.read())).toEqual(Array.from(data));
      t.dispose();
    }
    const odd = engine.tensor([1, 2, 3, 4, 5], [5], 'f16'); // odd f16 length: padded write
    expect(Array.from(await odd.toArray())).toEqual([1, 2, 3, 4, 5]);
  });

  it('reshape and views share storage without copying', async () => {
    const t = engine.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 4]);
    const r = t.reshape([2, -1]);
    expect(r.shape).toEqual([2, 6]);
    expect(r.buffer).toBe(t.buffer);
    expect(Array.from(await t.rows(1, 3).toArray())).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(await t.view([3], 5).toArray())).toEqual([5, 6, 7]);
    expect(() => t.reshape([5, -1])).toThrow(/12 elements do not fit/);
    expect(() => t.view([4], 10)).toThrow(/exceeds tensor \[3, 4\]/);
  });

  it('accounts live and peak bytes, reuses freed buffers, and frees storage with the last view', () => {
    const e = engine;
    const base = e.memory().liveBytes;
    e.pool.resetPeak();
    const a = e.empty([1000]); // 4000 bytes -> 4096 bucket
    expect(e.memory().liveBytes - base).toBe(4096);
    const buffer = a.buffer;
    const view = a.reshape([10, 100]);
    a.dispose();
    expect(e.memory().liveBytes - base).toBe(4096); // the view keeps the storage alive
    view.dispose();
    expect(e.memory().liveBytes).toBe(base);
    expect(e.memory().peakBytes - base).toBe(4096);
    const b = e.empty([1024]); // same bucket: the pooled buffer comes back
    expect(b.buffer).toBe(buffer);
    b.dispose();
    expect(() => view.reshape([1000])).toThrow(/used after dispose/);
    expect(bucketSize(4097)).toBe(5120);
    expect(bucketSize(100)).toBe(256);
  });

  it('rejects host data that does not match the shape', () => {
    expect(() => engine.tensor([1, 2, 3], [2, 2])).toThrow(/\[2, 2\] needs 4 elements, data has 3/);
    expect(() => engine.empty([2, -1])).toThrow(/must be non-negative integers/);
  });
});

describe('command recording', () => {
  it('records into chunks of dispatches and submits at read-back', async () => {
    const e = await testEngine({ dispatchesPerSubmit: 4 });
    const x = e.tensor([1], [1]);
    let y = x;
    const { dispatches, submits } = { ...e.recorder.counters };
    for (let i = 0; i < 10; i++) y = scale(y, 2);
    expect(e.recorder.counters.dispatches - dispatches).toBe(10);
    expect(e.recorder.counters.submits - submits).toBe(2); // after dispatches 4 and 8
    expect(Array.from(await y.toArray())).toEqual([1024]);
    expect(e.recorder.counters.submits - submits).toBe(3); // the rest, at read-back
  });
});

describe('step capture and replay', () => {
  const spec = { file: 'elementwise.wgsl', entry: 'unary', dtypes: { x: 'f32' as const, y: 'f32' as const } };
  const params = (alpha: number) => ({ n: 3, rank: 0, alpha, beta: 0, out_shape: [], a_strides: [], b_strides: [], divisors: [] });

  it('re-issues the commands with the parameters hooks give, and keeps their buffers from the pool', async () => {
    const x = engine.tensor([1, 2, 3], [3]);
    let factor = 2;
    let applied = 0;
    const { result: y, capture } = engine.capture(() =>
      engine.scope(() => {
        const t = engine.empty([3]); // an intermediate: disposed by the scope, kept by the capture
        engine.run(spec, { x, y: t }, params(factor), 1);
        engine.onReplay(() => ({ params: { alpha: factor }, apply: () => (applied += 1) }));
        return add(t, x);
      }),
    );
    expect(Array.from(await y.toArray())).toEqual([3, 6, 9]);
    // Same size as the intermediate: without the capture's hold, the pool would hand its buffer out.
    const other = engine.tensor([100, 100, 100], [3]);
    factor = 5;
    const { dispatches, bindGroupsCreated } = { ...engine.recorder.counters };
    expect(capture.replay()).toBe(true);
    expect(engine.recorder.counters.dispatches - dispatches).toBe(2);
    expect(engine.recorder.counters.bindGroupsCreated - bindGroupsCreated).toBe(0);
    expect(applied).toBe(1);
    expect(Array.from(await y.toArray())).toEqual([6, 12, 18]);
    expect(Array.from(await other.toArray())).toEqual([100, 100, 100]);
    [x, y, other].forEach((t) => t.dispose());
    capture.dispose();
    expect(capture.replay()).toBe(false);
  });

  it('issues nothing when a hook declines, and refuses uploads, read-backs and nesting', async () => {
    const x = engine.tensor([1, 2, 3], [3]);
    let fits = true;
    let applied = 0;
    const { result: y, capture } = engine.capture(() => {
      const y = scale(x, 2);
      engine.onReplay(() => (fits ? { apply: () => (applied += 1) } : null));
      engine.onReplay(() => ({ params: { alpha: 3 } }));
      return y;
    });
    fits = false;
    const { dispatches } = engine.recorder.counters;
    expect(capture.replay()).toBe(false);
    expect(engine.recorder.counters.dispatches).toBe(dispatches);
    expect(applied).toBe(0);
    expect(Array.from(await y.toArray())).toEqual([2, 4, 6]);
    capture.dispose();

    const uploads = engine.capture(() => scale(engine.tensor([1], [1]), 2));
    expect(uploads.capture.unreplayableBecause).toMatch(/an upload into/);
    expect(uploads.capture.replay()).toBe(false);
    const reads = engine.capture(() => x.read());
    await reads.result;
    expect(reads.capture.unreplayableBecause).toMatch(/a read-back of/);
    expect(() => engine.capture(() => engine.capture(() => 0))).toThrow(/captures do not nest/);
    expect(() => engine.capture(() => engine.onReplay(() => ({})))).toThrow(/must follow the dispatch it updates/);
    expect(engine.capturing).toBe(false);
    [uploads, reads].forEach((c) => c.capture.dispose());
    [x, y, uploads.result].forEach((t) => t.dispose());
  });
});

describe('f16 conversion on the CPU', () => {
  it('is exact for every half value and rounds to nearest even', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = f16BitsToF32(bits);
      if (Number.isNaN(v)) continue;
      expect(f32ToF16Bits(v)).toBe(bits);
    }
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway: to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds past the largest half: infinity
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // halfway to the smallest subnormal: to even (zero)
    expect(f32ToF16Bits(3 * 2 ** -26)).toBe(1);
  });
});

describe('scopes', () => {
  it('dispose intermediates, keep returned and kept tensors, and clean up on throw', async () => {
    const e = await testEngine();
    const base = e.memory().liveBuffers;
    const x = e.tensor([1, 2, 3], [3]);
    let kept: Tensor | undefined;
    const { y } = e.scope(() => {
      const a = scale(x, 2);
      const b = add(a, a).reshape([3]); // a view inside the scope
      kept = e.keep(scale(b, 0.5));
      return { y: add(b, x) };
    });
    expect(e.memory().liveBuffers - base).toBe(3); // x, y, kept
    expect(Array.from(await y.toArray())).toEqual([5, 10, 15]);
    expect(Array.from(await kept!.toArray())).toEqual([2, 4, 6]);
    expect(() => e.scope(() => {
      scale(x, 3);
      throw new Error('boom');
    })).toThrow('boom');
    expect(e.memory().liveBuffers - base).toBe(3);
    const weight = e.scope(() => e.tensor([7], [1], 'f32', { persistent: true })); // persistent: no scope owns it
    expect(weight.isDisposed).toBe(false);
    weight.dispose();
    const outer = e.scope(() => e.scope(() => scale(x, 4))); // a result moves to the enclosing scope
    expect(Array.from(await outer.toArray())).toEqual([4, 8, 12]);
    expect(e.memory().liveBuffers - base).toBe(4);
  });
});

describe('freeing buffers that recorded work still uses', () => {
  it('submits the recorded work before the pool destroys a buffer it does not keep', async () => {
    const e = await testEngine({ maxPooledBytes: 0 });
    const x = e.tensor([1, 2, 3], [3]);
    const y = scale(x, 2); // recorded, not yet submitted
    x.dispose(); // the pool keeps nothing: x's buffer is destroyed right away
    expect(Array.from(await y.toArray())).toEqual([2, 4, 6]);
    const w = e.tensor([5], [1], 'f32', { persistent: true }); // exact-size buffers are never pooled
    const z = scale(w, 3);
    w.dispose();
    expect(Array.from(await z.toArray())).toEqual([15]);
  });
});
