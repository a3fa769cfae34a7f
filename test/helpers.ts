/** Test helpers: one engine per test file, golden files, and tolerance checks that can fail. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect } from 'vitest';
import { bf16ArrayToF32, f16ArrayToF32 } from '../src/engine/dtype.js';
import { Engine, type EngineOptions } from '../src/engine/engine.js';
import type { Tensor } from '../src/engine/tensor.js';
import { readSafetensors, type LoadedTensor } from '../src/io/safetensors.js';
import { VisionLLM } from '../src/model/vision-llm.js';

export const TEST_DIR = path.dirname(fileURLToPath(import.meta.url));
export const SHARED_DIR = path.resolve(TEST_DIR, '..', '..', 'shared');

const engines: Engine[] = [];
afterAll(() => {
  for (const e of engines.splice(0)) e.dispose();
});

/** An engine disposed after the file's tests. */
export async function testEngine(options: EngineOptions = {}): Promise<Engine> {
  const engine = await Engine.create(options);
  engines.push(engine);
  return engine;
}

export class Golden {
  constructor(
    readonly file: string,
    readonly tensors: Map<string, LoadedTensor>,
    readonly metadata: Record<string, string>,
  ) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  entry(name: string): LoadedTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.file}: no tensor '${name}'`);
    return t;
  }

  shape(name: string): number[] {
    return this.entry(name).shape;
  }

  /** Values as f32 (f16/bf16 widened), int32 for 32/64-bit integer tensors, bytes for U8 (masks). */
  values(name: string): Float32Array | Int32Array | Uint8Array {
    const t = this.entry(name);
    const b = t.bytes;
    switch (t.dtype) {
      case 'F32': return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      case 'F16': return f16ArrayToF32(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2));
      case 'BF16': return bf16ArrayToF32(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2));
      case 'I32': return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      case 'I64': return Int32Array.from(new BigInt64Array(b.buffer, b.byteOffset, b.byteLength / 8), Number);
      case 'U8': return b;
      default: throw new Error(`${this.file}: tensor '${name}' has dtype ${t.dtype}`);
    }
  }

  /**
   * The tensors under `prefix` as a checkpoint's: floats as `dtype` (an F16 golden's values are the
   * same numbers either way), integer buffers with their stored dtype; `skip` left out.
   */
  weights(engine: Engine, dtype: 'f32' | 'f16', prefix: string, skip?: string): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, t] of this.tensors) {
      if (!name.startsWith(prefix) || name === skip) continue;
      const integer = t.dtype === 'I32' || t.dtype === 'I64';
      out.set(name, integer || t.dtype === dtype.toUpperCase() ? this.upload(engine, name) : engine.tensor(this.values(name), t.shape, dtype));
    }
    return out;
  }

  /** Uploads a golden tensor with its stored dtype (F32 -> f32, F16 -> f16, I32/I64 -> i32). */
  upload(engine: Engine, name: string): Tensor {
    const t = this.entry(name);
    const b = t.bytes;
    switch (t.dtype) {
      case 'F32': return engine.tensor(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4), t.shape);
      case 'F16': return engine.tensor(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2), t.shape, 'f16');
      case 'I32':
      case 'I64': return engine.tensor(this.values(name), t.shape, 'i32');
      default: throw new Error(`${this.file}: cannot upload '${name}' of dtype ${t.dtype}`);
    }
  }
}

export function loadGolden(stem: string): Golden {
  const file = path.join(TEST_DIR, 'golden', `${stem}.safetensors`);
  const { tensors, metadata } = readSafetensors(file);
  return new Golden(file, tensors, metadata);
}

/** The embedded tiny VisionLLM v2 checkpoint. */
export const TINY_WEIGHTS = path.join(TEST_DIR, '..', 'weights', 'tiny');

/**
 * A model loaded for comparison with the float64 reference: f32 weights and an f32 KV cache, on
 * a test engine; disposed after the file's tests.
 */
export async function referenceModel(dir = TINY_WEIGHTS): Promise<{ engine: Engine; model: VisionLLM }> {
  const engine = await testEngine();
  const model = await VisionLLM.load(dir, { engine, policy: { matrix: 'f32', vector: 'f32', integer: 'i32' }, cacheDType: 'f32' });
  afterAll(() => model.dispose());
  return { engine, model };
}

/** Tolerances relative to the reference's scale (its largest magnitude). */
export const TOL = { f32: 1e-4, f16: 1e-2 } as const;

/** Host arrays one after another, as f32. */
export function concatArrays(parts: readonly ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface CloseOptions {
  /** Maximum |actual - expected| as a fraction of max |expected|. */
  rel: number;
  label?: string;
}

/**
 * Asserts shapes agree, every value is finite, the output is not trivially zero, and the largest
 * error relative to the reference's scale is within `rel`. Returns that error for reporting.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, options: CloseOptions): number {
  const label = options.label ?? 'output';
  expect(actual.length, `${label}: element count`).toBe(expected.length);
  let scale = 0;
  let actualScale = 0;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    if (!Number.isFinite(a)) throw new Error(`${label}: element ${i} is ${a} (expected ${e})`);
    scale = Math.max(scale, Math.abs(e));
    actualScale = Math.max(actualScale, Math.abs(a));
    const err = Math.abs(a - e);
    if (err > worst) [worst, worstAt] = [err, i];
  }
  if (scale > 0) expect(actualScale, `${label}: output is all zeros but the reference is not`).toBeGreaterThan(0);
  const rel = scale > 0 ? worst / scale : worst;
  expect(rel, `${label}: max error ${worst.toExponential(3)} at ${worstAt} (got ${actual[worstAt]}, want ${expected[worstAt]}), scale ${scale.toExponential(3)}`)
    .toBeLessThanOrEqual(options.rel);
  return rel;
}

/** Asserts values equal the reference bit for bit (as f32 values: copies, lookups, remaps) and are not all zeros. */
export async function expectExact(t: { toArray(): Promise<ArrayLike<number>> }, want: ArrayLike<number>, label: string): Promise<void> {
  const got = Array.from(await t.toArray());
  expect(got.length, label).toBe(want.length);
  expect(got.some((v) => v !== 0), `${label}: all zeros`).toBe(true);
  const bad = got.findIndex((v, i) => v !== want[i]);
  expect(bad, `${label}: first mismatch at ${bad}: got ${got[bad]}, want ${want[bad]}`).toBe(-1);
}

/** Deterministic pseudo-random values in [-1, 1) (xorshift), for inputs built in the test itself. */
export function randomArray(n: number, seed = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** The message of the Error `fn` throws (failing the test when it throws nothing, or a non-Error). */
export function thrownMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return (err as Error).message;
  }
  throw new Error('expected an error');
}

/** Sources under src/ whose compiled file in dist/ is missing or older than they are. */
function staleSources(root: string, dir = path.join(root, 'src')): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) return staleSources(root, file);
    if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return [];
    const built = path.join(root, 'dist', path.relative(root, file)).replace(/\.ts$/, '.js');
    return fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(file).mtimeMs ? [] : [file];
  });
}

/**
 * Runs `tsc -p .` when a source under src/ is newer than its build: `npm test` builds first
 * (scripts/setup.sh), a lone `vitest run <file>` after an edit may not have. Throws only when one
 * of `outputs` (paths under dist/) is still missing: tsc emits despite type errors elsewhere.
 */
export function ensureBuilt(outputs: readonly string[]): void {
  const root = path.resolve(TEST_DIR, '..');
  if (staleSources(root).length === 0) return;
  const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root], { encoding: 'utf8', timeout: 110_000 });
  const missing = outputs.filter((f) => !fs.existsSync(f));
  if (missing.length > 0) throw new Error(`tsc -p . did not build ${missing.join(', ')}:\n${tsc.stdout}${tsc.stderr}`);
}
