/** npm run convert: the official miniature (.bin shards, bf16) -> sharded f16 safetensors with the same names. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint, type Progress } from '../src/io/checkpoint.js';
import { convertCheckpoint } from '../src/io/convert.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { TEST_DIR, loadGolden } from './helpers.js';

const OFFICIAL = path.join(TEST_DIR, 'golden', 'checkpoints', 'official');
const golden = loadGolden('checkpoints');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convert-'));

function bits(bytes: Uint8Array): number[] {
  return Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
}

describe('convert', () => {
  it('writes f16 safetensors shards with the official names, an index, and the side files', async () => {
    const out = path.join(tmp, 'f16');
    const progress: Progress[] = [];
    const report = await convertCheckpoint(OFFICIAL, out, { maxShardBytes: 1500, onProgress: (p) => progress.push(p) });
    expect(report.shards.map((f) => path.basename(f))).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expect(report.copied.sort()).toEqual(['added_tokens.json', 'config.json']);
    expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(OFFICIAL, 'config.json'), 'utf8'));
    expect(progress.at(-1)!.bytesDone).toBe(report.bytesIn);
    expect(progress.every((p, i) => i === 0 || p.bytesDone >= progress[i - 1]!.bytesDone)).toBe(true);

    const src = await Checkpoint.open(OFFICIAL);
    const dst = await Checkpoint.open(out);
    try {
      expect(dst.format).toBe('safetensors');
      expect(dst.names()).toEqual(src.names());
      for (const info of dst.list()) {
        expect(info.dtype).toBe('F16');
        expect(info.shape).toEqual(src.info(info.name).shape);
        expect(bits(await dst.read(info.name)), info.name).toEqual(bits(golden.entry(`official.${info.name}.f16`).bytes));
      }
      const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
      expect(index.metadata.total_size).toBe(report.bytesOut);
      expect(Object.keys(index.weight_map)).toEqual(src.names());
    } finally {
      await Promise.all([src.close(), dst.close()]);
    }
  });

  it('produces a model directory the tokenizer loads from (tokenizer.model, added_tokens.json)', async () => {
    const src = path.join(tmp, 'with-tokenizer');
    fs.cpSync(OFFICIAL, src, { recursive: true });
    fs.copyFileSync(path.join(TEST_DIR, 'golden', 'tokenizer', 'tiny-a.model'), path.join(src, 'tokenizer.model'));
    const out = path.join(tmp, 'with-tokenizer-out');
    const report = await convertCheckpoint(src, out);
    expect(report.copied.sort()).toEqual(['added_tokens.json', 'config.json', 'tokenizer.model']);
    const tok = Tokenizer.fromDirectory(out);
    expect(tok.tokenToId('[EMB8]')).toBe(32025);
    const ids = tok.encode('person[DET][EMB][EMB2][EMB3][EMB4]', { addBos: false });
    expect(ids.slice(-5)).toEqual([32012, 32018, 32019, 32020, 32021]);
    expect(tok.decode(ids)).toBe('person[DET][EMB][EMB2][EMB3][EMB4]');
  });

  it('keeps bf16 bit for bit with dtype keep, and writes f32 exactly', async () => {
    const keep = path.join(tmp, 'keep');
    const f32 = path.join(tmp, 'f32');
    await convertCheckpoint(OFFICIAL, keep, { dtype: 'keep' });
    await convertCheckpoint(path.join(OFFICIAL, 'pytorch_model.bin.index.json'), f32, { dtype: 'F32' });
    expect(fs.readdirSync(keep)).toContain('model.safetensors');
    const [src, k, f] = await Promise.all([Checkpoint.open(OFFICIAL), Checkpoint.open(keep), Checkpoint.open(f32)]);
    for (const name of src.names()) {
      expect(k.info(name).dtype).toBe('BF16');
      expect(Buffer.from(await k.read(name)).equals(Buffer.from(await src.read(name)))).toBe(true);
      expect(Buffer.from(await f.read(name)).equals(Buffer.from(golden.entry(`official.${name}.f32`).bytes))).toBe(true);
    }
    await Promise.all([src.close(), k.close(), f.close()]);
  });

  it('leaves no shard behind when the source turns out truncated part way', async () => {
    const src = path.join(tmp, 'broken-src');
    fs.cpSync(OFFICIAL, src, { recursive: true });
    // The local header of shard 2's last storage claims a 64 KiB extra field: its data would lie past the end of the file.
    const shard = path.join(src, 'pytorch_model-00002-of-00002.bin');
    const bytes = fs.readFileSync(shard);
    const local = bytes.indexOf(Buffer.concat([Buffer.from('pytorch_model-00002-of-00002/data/3')])) - 30;
    expect(bytes.readUInt32LE(local)).toBe(0x04034b50);
    bytes.writeUInt16LE(0xffff, local + 28);
    fs.writeFileSync(shard, bytes);
    const out = path.join(tmp, 'broken-out');
    await expect(convertCheckpoint(src, out, { maxShardBytes: 1000 })).rejects.toThrow(/pytorch_model-00002-of-00002\.bin: entry 'pytorch_model-00002-of-00002\/data\/3' needs bytes \d+\.\.\d+ but the file has \d+ bytes \(truncated\)/);
    expect(fs.readdirSync(out).filter((f) => f.includes('safetensors'))).toEqual([]);
  });

  it('runs as npm run convert with a progress bar', () => {
    const out = path.join(tmp, 'cli');
    const script = path.join(TEST_DIR, '..', 'dist', 'scripts', 'convert.js');
    if (!fs.existsSync(script)) throw new Error(`${script} is missing: run npx tsc -p . first`);
    const run = spawnSync(process.execPath, [script, OFFICIAL, out, '--max-shard-size', '2kB'], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['added_tokens.json', 'config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    expect(run.stderr).toMatch(/\[#{24}\] 100\.0%  3\.10 \/ 3\.10 kB/);
    expect(run.stderr).toMatch(/wrote 7 tensors in 2 shard\(s\)/);
    const bad = spawnSync(process.execPath, [script, OFFICIAL], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/usage: npm run convert -- <official-dir> <out-dir>/);
  });
});

