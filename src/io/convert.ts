/**
 * Converts a checkpoint directory (the official release: sharded torch.save .bin files in bf16)
 * into sharded safetensors, f16 by default, keeping every parameter name. The files next to the
 * weights (config.json, tokenizer.model, added_tokens.json, ...) are copied alongside, so the
 * output directory is a complete model directory that Checkpoint.open reads by byte range.
 *
 * Tensors stream through in bounded pieces: read, converted, appended to the shard being written.
 * Shards appear under their names only when complete; on failure the shards written by this run
 * are removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Checkpoint, PIECE_BYTES, type Progress } from './checkpoint.js';
import { STORED_DTYPE_BYTES, convertElements, isFloatStored, type StoredDType } from './elements.js';
import { SafetensorsWriter, type TensorDescriptor } from './safetensors.js';
import { numelOf } from './tensor-source.js';

export type FloatTarget = 'F16' | 'F32' | 'BF16' | 'keep';

export interface ConvertOptions {
  /** Stored dtype of floating-point tensors (default F16); integer tensors keep theirs. */
  dtype?: FloatTarget;
  /** Largest shard in bytes before a new one starts (default 4 GiB; a bigger tensor gets a shard of its own). */
  maxShardBytes?: number;
  onProgress?: (p: Progress) => void;
  /** Told about tensors with values clamped to f16's range; default console.warn. */
  warn?: (message: string) => void;
}

export interface ConvertReport {
  /** Shard files written (absolute paths). */
  shards: string[];
  index: string | null;
  tensors: number;
  bytesIn: number;
  bytesOut: number;
  /** Other files copied from the source directory. */
  copied: string[];
  saturated: { name: string; count: number }[];
}

const WEIGHT_FILE = /\.(bin|safetensors|pt|pth|ckpt)$|\.(bin|safetensors)\.index\.json$/;
const OUR_OUTPUT = /^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$/;

export async function convertCheckpoint(source: string, outDir: string, options: ConvertOptions = {}): Promise<ConvertReport> {
  const target = options.dtype ?? 'F16';
  const maxShard = options.maxShardBytes ?? 4 * 2 ** 30;
  const sourceDir = fs.statSync(source).isDirectory() ? source : path.dirname(source);
  fs.mkdirSync(outDir, { recursive: true });
  if (fs.realpathSync(sourceDir) === fs.realpathSync(outDir)) throw new Error(`${outDir}: the output directory must differ from the source directory`);

  const ckpt = await Checkpoint.open(source);
  const written: string[] = [];
  try {
    const plan = ckpt.list().map((info) => {
      const dtype: StoredDType = target === 'keep' || !isFloatStored(info.dtype) ? info.dtype : target;
      return { info, out: { name: info.name, dtype, shape: info.shape } as TensorDescriptor, bytes: numelOf(info.shape) * STORED_DTYPE_BYTES[dtype] };
    });
    const groups: (typeof plan)[] = [];
    let size = Infinity;
    for (const item of plan) {
      if (size + item.bytes > maxShard && groups.at(-1)?.length) size = Infinity;
      if (size === Infinity) {
        groups.push([]);
        size = 0;
      }
      groups.at(-1)!.push(item);
      size += item.bytes;
    }
    if (!groups.length) groups.push([]);
    const names = groups.length === 1 ? ['model.safetensors'] : groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`);
    for (const f of fs.readdirSync(outDir)) if (OUR_OUTPUT.test(f)) fs.rmSync(path.join(outDir, f)); // a previous conversion's shards

    const bytesTotal = plan.reduce((n, p) => n + p.info.byteLength, 0);
    let bytesDone = 0;
    const saturated: { name: string; count: number }[] = [];
    for (const [g, group] of groups.entries()) {
      const file = path.join(outDir, names[g]!);
      const writer = await SafetensorsWriter.create(file, group.map((p) => p.out), { format: 'pt' });
      try {
        for (const { info, out } of group) {
          let count = 0;
          for await (const piece of ckpt.chunks(info.name, PIECE_BYTES)) {
            const c = convertElements(piece, info.dtype, out.dtype, `${info.file}: tensor '${info.name}'`);
            count += c.saturated;
            await writer.write(info.name, c.bytes);
            bytesDone += piece.byteLength;
            options.onProgress?.({ bytesDone, bytesTotal, tensor: info.name });
          }
          if (count) {
            saturated.push({ name: info.name, count });
            (options.warn ?? console.warn)(`${info.file}: tensor '${info.name}': ${count} value(s) beyond f16's range were clamped to ±65504`);
          }
        }
        await writer.close();
        written.push(file);
      } catch (err) {
        await writer.abort();
        throw err;
      }
    }
    let index: string | null = null;
    if (groups.length > 1) {
      index = path.join(outDir, 'model.safetensors.index.json');
      const weightMap: Record<string, string> = {};
      groups.forEach((group, g) => group.forEach((p) => (weightMap[p.info.name] = names[g]!)));
      const totalSize = plan.reduce((n, p) => n + p.bytes, 0);
      fs.writeFileSync(index, JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
      written.push(index);
    }
    const copied: string[] = [];
    for (const f of fs.readdirSync(sourceDir)) {
      const from = path.join(sourceDir, f);
      if (WEIGHT_FILE.test(f) || !fs.statSync(from).isFile()) continue;
      fs.copyFileSync(from, path.join(outDir, f));
      copied.push(f);
    }
    return {
      shards: written.filter((f) => f.endsWith('.safetensors')),
      index,
      tensors: plan.length,
      bytesIn: bytesTotal,
      bytesOut: plan.reduce((n, p) => n + p.bytes, 0),
      copied,
      saturated,
    };
  } catch (err) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw err;
  } finally {
    await ckpt.close();
  }
}

function pad(n: number): string {
  return String(n).padStart(5, '0');
}
