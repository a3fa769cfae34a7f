#!/usr/bin/env node
/**
 * npm run convert -- <official-dir> <out-dir> [--dtype f16|f32|bf16|keep] [--max-shard-size 4GB]
 *
 * Turns the official VisionLLM v2 release (sharded torch.save .bin files, bf16) into sharded
 * safetensors (f16 by default) with the same parameter names, plus config and tokenizer files.
 * Needs no Python and no GPU; memory stays bounded whatever the checkpoint's size.
 */
import { convertCheckpoint, type FloatTarget } from '../src/io/convert.js';
import { ProgressBar, formatBytes } from '../src/progress-bar.js';

const USAGE = `usage: npm run convert -- <official-dir> <out-dir> [--dtype f16|f32|bf16|keep] [--max-shard-size 4GB]
  <official-dir>  a checkpoint directory (pytorch_model.bin.index.json + shards, or safetensors), or one file
  <out-dir>       where to write model-0000N-of-0000M.safetensors, the index, config and tokenizer files
  --dtype         stored dtype of floating-point tensors (default f16; integer tensors keep theirs)
  --max-shard-size  e.g. 2GB, 500MB (default 4GB)`;

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/i.exec(s);
  if (!m) throw new Error(`--max-shard-size: cannot read '${s}' (use e.g. 4GB or 500MB)`);
  const unit = (m[2] ?? 'B').toLowerCase();
  const scale: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };
  return Math.floor(Number(m[1]) * scale[unit]!);
}

async function main(argv: string[]): Promise<void> {
  const positional: string[] = [];
  let dtype: FloatTarget = 'F16';
  let maxShardBytes: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      console.log(USAGE);
      return;
    } else if (a === '--dtype') {
      const v = (argv[++i] ?? '').toUpperCase();
      if (!['F16', 'F32', 'BF16', 'KEEP'].includes(v)) throw new Error(`--dtype must be f16, f32, bf16 or keep, got '${argv[i] ?? ''}'`);
      dtype = (v === 'KEEP' ? 'keep' : v) as FloatTarget;
    } else if (a === '--max-shard-size') {
      maxShardBytes = parseSize(argv[++i] ?? '');
    } else if (a.startsWith('-')) {
      throw new Error(`unknown option '${a}'\n${USAGE}`);
    } else positional.push(a);
  }
  if (positional.length !== 2) throw new Error(USAGE);
  const [source, out] = positional as [string, string];
  const bar = new ProgressBar();
  console.error(`converting ${source} -> ${out} (${dtype === 'keep' ? 'dtypes kept' : dtype.toLowerCase()})`);
  const started = Date.now();
  const report = await convertCheckpoint(source, out, {
    dtype,
    maxShardBytes,
    onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, p.tensor),
    warn: (m) => {
      bar.finish();
      console.error(`warning: ${m}`);
    },
  });
  bar.finish();
  const seconds = (Date.now() - started) / 1000;
  console.error(`wrote ${report.tensors} tensors in ${report.shards.length} shard(s), ${formatBytes(report.bytesIn)} -> ${formatBytes(report.bytesOut)} in ${seconds.toFixed(1)} s`);
  if (report.copied.length) console.error(`copied ${report.copied.join(', ')}`);
  if (report.saturated.length) console.error(`${report.saturated.length} tensor(s) had values clamped to f16's range (see warnings); --dtype f32 keeps them exact`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
