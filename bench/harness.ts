/**
 * Benchmark harness: tinybench tasks over one engine, results printed and written to
 * bench/results.json (one entry per measurement; later suites add their own entries).
 *
 * A GPU measurement records `repeat` runs of an op, then waits for the GPU: short kernels are
 * timed in batches so the wait's own cost (about a millisecond) does not dominate.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Bench } from 'tinybench';
import type { Engine } from '../src/engine/engine.js';
import { projectRoot } from '../src/paths.js';

export interface Measurement {
  name: string;
  shape: string;
  median_ms: number;
  gflops?: number;
  gbps?: number;
  /** This kernel's rate over the substrate's measured ceiling, named in `ceiling`. */
  ratio_to_ceiling?: number;
  ceiling?: Ceiling;
  [extra: string]: unknown;
}

/** fma: arithmetic (FMA probe); copy: read+write bandwidth; read: read-only bandwidth (weight streaming). */
export type Ceiling = 'fma' | 'copy' | 'read';

export interface GpuCase {
  name: string;
  shape: string;
  /** Floating-point operations and bytes moved per run (for GFLOP/s and GB/s). */
  flops?: number;
  bytes?: number;
  /** Records one run; returns what to dispose after the wait. */
  run: () => { dispose(): void } | void;
  /** Runs recorded per timed sample. */
  repeat?: number;
  /** Timed samples at least (default 5) and milliseconds at least (default 1000). */
  iterations?: number;
  time?: number;
  ceiling?: Ceiling;
  /** Run even when --filter excludes it (the ceilings every ratio needs). */
  always?: boolean;
}

export class Harness {
  readonly results: Measurement[] = [];
  readonly ceilings: Partial<Record<Ceiling, number>> = {};

  constructor(
    readonly engine: Engine,
    readonly filter?: RegExp,
  ) {}

  wanted(name: string): boolean {
    return !this.filter || this.filter.test(name);
  }

  /** Times a GPU case; returns the median milliseconds per run. */
  async gpu(c: GpuCase): Promise<Measurement | null> {
    if (!c.always && !this.wanted(c.name)) return null;
    const ms = await this.time(c);
    const m: Measurement = { name: c.name, shape: c.shape, median_ms: round(ms, 4) };
    if (c.flops) m.gflops = round(c.flops / ms / 1e6, 3);
    if (c.bytes) m.gbps = round(c.bytes / ms / 1e6, 3);
    const ceiling = c.ceiling ?? (c.flops ? 'fma' : 'copy');
    const rate = ceiling === 'fma' ? m.gflops : m.gbps;
    const top = this.ceilings[ceiling];
    if (rate !== undefined && top) {
      m.ratio_to_ceiling = round(rate / top, 4);
      m.ceiling = ceiling;
    }
    this.record(m);
    return m;
  }

  /** Median milliseconds per run of a case, after one untimed run; records nothing (gpu() does). */
  async time(c: GpuCase): Promise<number> {
    const repeat = c.repeat ?? 1;
    const once = async () => {
      const outs: { dispose(): void }[] = [];
      for (let i = 0; i < repeat; i++) {
        const out = c.run();
        if (out) outs.push(out);
      }
      await this.engine.sync();
      outs.forEach((o) => o.dispose());
    };
    await once(); // compile pipelines, fill the pool
    return (await timeMedian(c.name, once, c.iterations ?? 5, c.time ?? 1000)) / repeat;
  }

  record(m: Measurement): void {
    this.results.push(m);
    const parts = [`${m.name.padEnd(28)} ${m.shape.padEnd(22)} ${m.median_ms.toFixed(3).padStart(10)} ms`];
    if (m.gflops !== undefined) parts.push(`${m.gflops.toFixed(2).padStart(8)} GFLOP/s`);
    if (m.gbps !== undefined) parts.push(`${m.gbps.toFixed(2).padStart(8)} GB/s`);
    if (m.ratio_to_ceiling !== undefined) parts.push(`${(100 * m.ratio_to_ceiling).toFixed(1).padStart(6)}% of ${m.ceiling}`);
    for (const [k, v] of Object.entries(m)) {
      if (!['name', 'shape', 'median_ms', 'gflops', 'gbps', 'ratio_to_ceiling', 'ceiling'].includes(k)) parts.push(`${k}=${String(v)}`);
    }
    console.log(parts.join('  '));
  }

  /** Adds fields to a recorded measurement (e.g. a speed-up over a baseline timed in the same run) and prints them. */
  annotate(m: Measurement | null, fields: Record<string, number | string>): void {
    if (!m) return;
    Object.assign(m, fields);
    console.log(`${''.padEnd(28)} ${Object.entries(fields).map(([k, v]) => `${k}=${v}`).join('  ')}`);
  }

  write(file = defaultResultsFile()): void {
    fs.writeFileSync(file, JSON.stringify(this.results, null, 2) + '\n');
    console.log(`\nwrote ${path.relative(process.cwd(), file)} (${this.results.length} measurements)`);
  }
}

/** Median milliseconds of an async function over at least `iterations` runs and `time` ms (tinybench). */
export async function timeMedian(name: string, fn: () => Promise<void>, iterations: number, time: number): Promise<number> {
  const bench = new Bench({ iterations, time, warmup: false, throws: true });
  bench.add(name, fn);
  await bench.run();
  const result = bench.tasks[0]!.result as { latency?: { p50?: number } };
  const p50 = result.latency?.p50;
  if (p50 === undefined) throw new Error(`benchmark ${name} produced no samples`);
  return p50;
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function defaultResultsFile(): string {
  return path.join(projectRoot(), 'bench', 'results.json');
}
