/**
 * npm run readme [-- --check]
 *
 * The README's performance table, generated from bench/results.json so that the two never
 * disagree: rewrites what lies between `<!-- bench:begin -->` and `<!-- bench:end -->` in
 * README.md. With --check it writes nothing and exits 1 when the block differs from what
 * results.json gives (test/readme.test.ts checks the same).
 *
 * Every ratio in a row is taken within the one run, against the measurement it names; a row
 * whose measurements the run lacks (a filtered `npm run bench -- --filter ...`) is left out and
 * listed under the table.
 *
 * results.json holds no date, so the block's date is provenance, not a figure: when the block
 * is written it is the commit date of bench/results.json (today while the file has uncommitted
 * changes), and --check keeps the date the block already has.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Measurement } from '../bench/harness.js';
import { projectRoot } from '../src/paths.js';
import { extractBlock, replaceBlock } from './readme-blocks.js';


/** When the results were measured, where known (results.json does not say). */
export interface RunInfo {
  /** YYYY-MM-DD */
  date?: string;
}

type Lookup = (name: string) => Measurement | undefined;

interface Row {
  what: string;
  /** The measurements the row reads; the row is left out when one is missing. */
  uses: string[];
  /** [result, ratio and what it is against], from the measurements in `uses` order. */
  cells: (m: Measurement[]) => [string, string];
}

/** The headline rows: one per kind of work, each with its same-run ratio. */
const ROWS: Row[] = [
  {
    what: 'LLaMA decoding, d 512 × 8 layers, f16 weights',
    uses: ['mllm_small_llm_decode'],
    cells: ([m]) => [
      `${num(m!.tokens_per_s)} tokens/s (${num(m!.median_ms)} ms per token, ${m!.dispatches_per_token} dispatches)`,
      `${pct(m!.ratio_to_gemv_bandwidth)} of GEMV bandwidth`,
    ],
  },
  {
    what: 'LLaMA decoding, d 1536 × 4 layers, f16 weights',
    uses: ['mllm_medium_llm_decode'],
    cells: ([m]) => [`${num(m!.tokens_per_s)} tokens/s (${num(m!.median_ms)} ms per token)`, `${pct(m!.ratio_to_gemv_bandwidth)} of GEMV bandwidth`],
  },
  {
    what: 'MLLM chat, tiny checkpoint, 3 tiles',
    uses: ['mllm_tiny_chat', 'mllm_tiny_llm_decode'],
    cells: ([chat, llm]) => [
      `prefill ${num(chat!.prefill_tokens_per_s)} tokens/s, decode ${num(chat!.tokens_per_s)} tokens/s`,
      `decode at ${pct(finite(chat!.tokens_per_s) / finite(llm!.tokens_per_s))} of its LLM's rate alone`,
    ],
  },
  {
    what: 'GEMV, f16 weights, 1 × 4096 × 4096',
    uses: ['gemv_f16'],
    cells: ([m]) => [`${num(m!.gbps)} GB/s`, `${pct(m!.ratio_to_ceiling)} of the read probe`],
  },
  {
    what: 'matmul f32, 1024³',
    uses: ['matmul_f32@1024x1024x1024'],
    cells: ([m]) => [`${num(m!.gflops)} GFLOP/s`, `${pct(m!.ratio_to_ceiling)} of the FMA probe`],
  },
  {
    what: 'attention, CLIP prefill 577 × 16 heads × 64, f32',
    uses: ['attention_clip_577'],
    cells: ([m]) => [`${num(m!.median_ms)} ms`, `${times(m!.speedup_vs_unfused)} the unfused path`],
  },
  {
    what: 'attention, decoding 4096 keys × 32 heads × 128, f16 cache',
    uses: ['attention_decode_4096_f16'],
    cells: ([m]) => [`${num(m!.median_ms)} ms`, `${pct(m!.of_gemv_bandwidth)} of GEMV bandwidth`],
  },
  {
    what: 'conv 3×3, 2 × 320 × 64² → 320, f16 weights',
    uses: ['conv3x3_f16'],
    cells: ([m]) => [`${num(m!.gflops)} GFLOP/s (direct FLOPs)`, m!.speedup_vs_implicit_gemm === undefined ? `${times(m!.ratio_to_matmul)} the matmul rate` : `${times(m!.speedup_vs_implicit_gemm)} the implicit GEMM`],
  },
  {
    what: 'deformable attention, encoder (Lq = S = 22k), f16 value',
    uses: ['msda_encoder_fused_registers_f16'],
    cells: ([m]) => [`${num(m!.median_ms)} ms`, `${times(m!.speedup_vs_unfused)} the unfused path`],
  },
  {
    what: 'tokenizer encode, English text',
    uses: ['tokenizer_encode'],
    cells: ([m]) => [`${num(m!.mb_per_s)} MB/s`, `${times(m!.speedup_vs_uncached)} without the word cache`],
  },
  {
    what: 'checkpoint upload, bf16 file → f16 on the GPU',
    uses: ['checkpoint_upload_f16'],
    cells: ([m]) => [`${num(m!.gbps)} GB/s`, `the 19 GB release in ${num(m!.official_19GB_s)} s (projected)`],
  },
  {
    what: 'Grounding DINO, 800 × 1333, 80 classes, f16 weights',
    uses: ['gdino_total'],
    cells: ([m]) => againstPytorch(m!),
  },
  {
    what: 'UniPose, 800 × 1333, 1 object, 17 keypoints, f16 weights',
    uses: ['unipose_total'],
    cells: ([m]) => againstPytorch(m!),
  },
  {
    what: 'SD-1.5 U-Net call, batch 2, 64² latents, f16 weights',
    uses: ['unet_cfg_64'],
    cells: ([m]) => againstPytorch(m!),
  },
  {
    what: 'serving, tiny checkpoint, 4 clients, one process',
    uses: ['serving_single@4 clients, 24 tokens'],
    cells: ([m]) => [`${num(m!.requests_per_s)} requests/s, p50 ${num(m!.median_ms)} ms, p99 ${num(m!.p99_ms)} ms`, `${pct(m!.ratio_to_direct)} of direct chat() calls`],
  },
  {
    what: 'serving through Redis, 2 workers, 4 clients',
    uses: ['serving_redis_2_workers@4 clients, 24 tokens'],
    cells: ([m]) => [`${num(m!.requests_per_s)} requests/s, p50 ${num(m!.median_ms)} ms, p99 ${num(m!.p99_ms)} ms`, `${pct(m!.ratio_to_direct)} of direct chat() calls`],
  },
  {
    what: 'super link, 80 classes: gather + patch2query',
    uses: ['superlink_gather_project'],
    cells: ([m]) => [`${num(m!.median_ms)} ms`, `${pct(m!.share_of_forward)} of the LLM forward before it`],
  },
];

/** A measurement by name, or `name@shape` where one name has several shapes. */
function lookup(results: readonly Measurement[]): Lookup {
  return (key) => {
    const [name, shape] = key.split('@');
    return results.find((m) => m.name === name && (shape === undefined || m.shape === shape));
  };
}

/** The block between the markers: provenance line, the table, and the rows this run lacks. */
export function renderTable(results: readonly Measurement[], run: RunInfo = {}): string {
  const get = lookup(results);
  const rows: string[] = [];
  const missing: string[] = [];
  for (const row of ROWS) {
    const ms = row.uses.map(get);
    if (ms.some((m) => m === undefined)) {
      missing.push(row.what);
      continue;
    }
    const [result, ratio] = row.cells(ms as Measurement[]);
    rows.push(`| ${row.what} | ${result} | ${ratio} |`);
  }
  const lines = ['<!-- generated by `npm run readme` from bench/results.json: edit scripts/readme-table.ts, not this table -->'];
  lines.push(provenance(get, run), '');
  if (rows.length) lines.push('| what | result | ratio, same run |', '|---|---|---|', ...rows);
  else lines.push('bench/results.json holds none of the headline measurements.');
  if (missing.length) lines.push('', `Not in this run: ${missing.join('; ')}.`);
  return lines.join('\n') + '\n';
}

function provenance(get: Lookup, run: RunInfo): string {
  const when = run.date ? `Measured ${run.date}` : 'From bench/results.json';
  // The bench times the busy-wait probe only on CPU adapters (lavapipe).
  const where = get('probe_fma_busy_wait') ? ' on a CPU adapter' : '';
  const ceilings = [
    ['FMA', get('probe_fma')?.gflops, 'GFLOP/s'],
    ['read', get('probe_read')?.gbps, 'GB/s'],
    ['copy', get('probe_copy')?.gbps, 'GB/s'],
  ].filter(([, v]) => v !== undefined).map(([what, v, unit]) => `${what} ${num(v)} ${unit}`);
  return `${when}${where}${ceilings.length ? `; this run's probes: ${ceilings.join(', ')}` : ''}.`;
}

/** The date a rendered block names, if any. */
export function dateOf(block: string): string | undefined {
  return /^Measured (\d{4}-\d{2}-\d{2})/m.exec(block)?.[1];
}

/** The performance block of the README. */
export const extractTable = (readme: string): string => extractBlock(readme, 'bench');
export const replaceTable = (readme: string, table: string): string => replaceBlock(readme, 'bench', table);

export function readResults(file: string): Measurement[] {
  const results: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(results)) throw new Error(`${file}: expected an array of measurements`);
  return results as Measurement[];
}

/** The commit date of bench/results.json, today while it has uncommitted changes, or none outside git. */
function runDate(root: string): string | undefined {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: root, encoding: 'utf8' });
  const status = git('status', '--porcelain', '--', 'bench/results.json');
  if (status.status !== 0) return undefined;
  if (status.stdout.trim()) return new Date().toISOString().slice(0, 10);
  return git('log', '-1', '--date=short', '--format=%cd', '--', 'bench/results.json').stdout.trim() || undefined;
}

function num(v: unknown): string {
  const x = finite(v);
  if (x >= 1000) return `${(x / 1000).toFixed(1)}k`;
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** A figure from results.json; a missing or non-numeric one is an error, not a blank cell. */
function finite(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`bench/results.json: expected a number, got ${JSON.stringify(v)}`);
  return v;
}

function pct(v: unknown): string {
  const x = finite(v) * 100;
  return `${x < 10 ? x.toFixed(1) : x.toFixed(0)}%`;
}

function times(v: unknown): string {
  return `${num(v)}×`;
}

/** A release-size model's row: its time and peak memory, and its speed against PyTorch CPU timed in the same run. */
function againstPytorch(m: Measurement): [string, string] {
  return [
    `${num(finite(m.median_ms) / 1000)} s, ${num(m.peak_gpu_mb)} MB peak`,
    m.ratio_vs_pytorch === undefined ? 'PyTorch not measured in this run' : `${times(m.ratio_vs_pytorch)} PyTorch CPU's speed (2 threads)`,
  ];
}

function main(): number {
  const root = projectRoot();
  const readmeFile = path.join(root, 'README.md');
  const readme = fs.readFileSync(readmeFile, 'utf8');
  const results = readResults(path.join(root, 'bench', 'results.json'));
  const current = extractTable(readme);
  const kept = renderTable(results, { date: dateOf(current) });
  if (process.argv.includes('--check')) {
    if (kept === current) return 0;
    console.error('README.md: the performance table differs from bench/results.json; run `npm run readme`');
    return 1;
  }
  if (kept === current) {
    console.log('README.md: the performance table is up to date');
    return 0;
  }
  fs.writeFileSync(readmeFile, replaceTable(readme, renderTable(results, { date: runDate(root) })));
  console.log('README.md: performance table rewritten from bench/results.json');
  return 0;
}

/** Run as a script (node dist/scripts/readme-table.js), not imported (the test). */
function isMain(): boolean {
  try {
    return fs.realpathSync(process.argv[1] ?? '') === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  try {
    process.exitCode = main();
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 1;
  }
}
