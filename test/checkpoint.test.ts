/**
 * Checkpoint reading against files PyTorch wrote (scripts/golden/checkpoints.py): every value must
 * be exactly what PyTorch's .float() / .half() / .long() gives.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../src/io/checkpoint.js';
import type { StoredDType } from '../src/io/elements.js';
import { TorchCheckpoint } from '../src/io/torch-checkpoint.js';
import { TEST_DIR, loadGolden } from './helpers.js';

const FIXTURES = path.join(TEST_DIR, 'golden', 'checkpoints');
const golden = loadGolden('checkpoints');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));

/** Golden entries for a prefix: tensor name -> which conversions were stored. */
function expectedNames(prefix: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const key of golden.tensors.keys()) {
    if (!key.startsWith(prefix) || (prefix === '' && /^(official|safetensors)\./.test(key))) continue;
    const dot = key.lastIndexOf('.');
    const name = key.slice(prefix.length, dot);
    out.set(name, [...(out.get(name) ?? []), key.slice(dot + 1)]);
  }
  return out;
}

const AS: Record<string, StoredDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i64: 'I64', u8: 'U8' };

/** Every tensor of the checkpoint converts bit-exactly to each dtype PyTorch converted it to. */
async function expectMatchesGolden(ckpt: Checkpoint, prefix: string, skipF16: string[] = []): Promise<number> {
  const names = expectedNames(prefix);
  expect(names.size).toBeGreaterThan(3);
  let checked = 0;
  for (const [name, kinds] of names) {
    const info = ckpt.info(name);
    for (const kind of kinds) {
      const want = golden.entry(`${prefix}${name}.${kind}`);
      expect(info.shape, `${name} shape`).toEqual(want.shape);
      if (kind === 'f16' && skipF16.includes(name)) continue;
      const got = await ckpt.readAs(name, AS[kind]!);
      // bf16 goldens hold the 16-bit patterns widened to int32.
      const wantBytes = kind === 'bf16' ? new Uint8Array(Uint16Array.from(new Int32Array(want.bytes.buffer, want.bytes.byteOffset, want.bytes.byteLength / 4)).buffer) : want.bytes;
      expect(Buffer.from(got.bytes).equals(Buffer.from(wantBytes)), `${name} as ${kind}`).toBe(true);
      checked += 1;
    }
  }
  return checked;
}

describe('torch.save checkpoints', () => {
  it('reads every storage type, bf16, scalars, empty tensors and shared strided views exactly', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'state_dict.bin'));
    try {
      expect(ckpt.format).toBe('pytorch');
      const dtypes = Object.fromEntries(ckpt.list().map((t) => [t.name, t.dtype]));
      expect(dtypes).toMatchObject({
        'proj.weight': 'BF16', 'norm.weight': 'F32', 'norm.bias': 'F16', position_ids: 'I64', mask: 'BOOL',
        bytes: 'U8', ints: 'I32', shorts: 'I16', chars: 'I8', doubles: 'F64', 'shared.t': 'F32', 'bf.t': 'BF16',
      });
      expect(ckpt.info('scalar').shape).toEqual([]);
      expect(ckpt.info('empty').shape).toEqual([0, 3]);
      expect(ckpt.info('shared.expand').shape).toEqual([4, 3]);
      // f16 of 'overflow' and of 1e10 in 'doubles' differ on purpose: PyTorch gives inf, the reader clamps to ±65504.
      const checked = await expectMatchesGolden(ckpt, '', ['overflow', 'doubles']);
      const doubles = new Uint16Array((await ckpt.readAs('doubles', 'F16')).bytes.buffer, 0, 3);
      expect(Array.from(doubles)).toEqual([...Array.from(new Uint16Array(golden.entry('doubles.f16').bytes.buffer, 0, 2)), 0x7bff]);
      expect(checked).toBeGreaterThan(50);
      // The raw bytes of a bf16 tensor are its stored bits.
      const raw = await ckpt.read('proj.weight');
      const asF32 = await ckpt.readAs('proj.weight', 'F32');
      const bits = new Uint16Array(raw.buffer);
      const f32bits = new Uint32Array(asF32.bytes.buffer, asF32.bytes.byteOffset, bits.length);
      expect(Array.from(bits, (b) => (b << 16) >>> 0)).toEqual(Array.from(f32bits));
    } finally {
      await ckpt.close();
    }
  });

  it('clamps bf16 values beyond f16 range to ±65504 and counts them', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'state_dict.bin'));
    const { bytes, saturated } = await ckpt.readAs('overflow', 'F16');
    await ckpt.close();
    const half = Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, 5));
    const torchHalf = Array.from(new Uint16Array(golden.entry('overflow.f16').bytes.buffer, 0, 5));
    expect(torchHalf.slice(0, 3)).toEqual([0x7c00, 0xfc00, 0x7c00]); // PyTorch: inf, -inf, inf
    expect(half).toEqual([0x7bff, 0xfbff, 0x7bff, torchHalf[3], torchHalf[4]]);
    expect(saturated).toBe(3);
  });

  it('reads a zip64 archive (what torch writes past 4 GB)', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'zip64.bin'));
    expect(ckpt.names()).toEqual(['w', 'b', 'i']);
    expect(Array.from(new BigInt64Array((await ckpt.read('i')).buffer))).toEqual([0n, 1n, 2n, 3n]);
    await ckpt.close();
  });

  it('reads an archive re-zipped with a deflated data.pkl', async () => {
    const [a, b] = await Promise.all([Checkpoint.open(path.join(FIXTURES, 'zip64.bin')), Checkpoint.open(path.join(FIXTURES, 'deflated-pickle.bin'))]);
    for (const name of ['w', 'b', 'i']) expect(Buffer.from(await b.read(name)).equals(Buffer.from(await a.read(name)))).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });

  it('reads entries at offsets beyond 4 GiB (a sparse file)', async () => {
    // The zip64 fixture, rewritten with 5 GiB of hole in front: every offset needs 64 bits.
    const src = fs.readFileSync(path.join(FIXTURES, 'zip64.bin'));
    const file = path.join(tmp, 'far.bin');
    writeShifted(src, file, 5 * 2 ** 30);
    expect(fs.statSync(file).size).toBeGreaterThan(2 ** 32);
    const near = await Checkpoint.open(path.join(FIXTURES, 'zip64.bin'));
    const far = await Checkpoint.open(file);
    for (const name of ['w', 'b', 'i']) expect(Buffer.from(await far.read(name)).equals(Buffer.from(await near.read(name)))).toBe(true);
    await Promise.all([near.close(), far.close()]);
    fs.rmSync(file);
  });

  it('reads sharded .bin checkpoints through their index', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'official'));
    try {
      expect(ckpt.files.map((f) => path.basename(f))).toEqual(['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']);
      expect(ckpt.info('llm.lm_head.weight')).toMatchObject({ dtype: 'BF16', shape: [37, 16] });
      await expectMatchesGolden(ckpt, 'official.');
    } finally {
      await ckpt.close();
    }
  });

  it('reads sharded safetensors with BF16, F16, F32, I64, U8 and BOOL', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'safetensors'));
    try {
      expect(ckpt.format).toBe('safetensors');
      expect(ckpt.metadata.format).toBe('pt');
      await expectMatchesGolden(ckpt, 'safetensors.');
    } finally {
      await ckpt.close();
    }
  });

  it('reads big tensors in bounded pieces', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'official'));
    const pieces: number[] = [];
    for await (const p of ckpt.chunks('llm.lm_head.weight', 100)) pieces.push(p.byteLength);
    await ckpt.close();
    expect(pieces.every((n) => n === 100 || n === pieces.at(-1))).toBe(true);
    expect(pieces.reduce((a, b) => a + b)).toBe(37 * 16 * 2);
  });
});

describe('refuses bad checkpoints with errors that name the file and tensor', () => {
  it('a pickle that would run code, never running it', async () => {
    await expect(TorchCheckpoint.open(path.join(FIXTURES, 'evil.bin'))).rejects.toThrow(
      /evil\.bin \(evil\/data\.pkl\): tensor 'payload': global 'posix\.system' is not allowed.*refusing to load/,
    );
  });

  it('unsupported storage types and tensor kinds', async () => {
    await expect(Checkpoint.open(path.join(FIXTURES, 'complex.bin'))).rejects.toThrow(/complex\.bin.*tensor 'z': unsupported storage type torch\.ComplexFloatStorage/);
    await expect(Checkpoint.open(path.join(FIXTURES, 'quantized.bin'))).rejects.toThrow(/quantized\.bin.*tensor 'q': global 'torch\._utils\._rebuild_qtensor' is not allowed/);
  });

  it('compressed storages', async () => {
    await expect(Checkpoint.open(path.join(FIXTURES, 'deflated.bin'))).rejects.toThrow(/deflated\.bin: tensor 'w': storage '0' is compressed \(zip method 8\)/);
  });

  it('the legacy (non-zip) torch.save format', async () => {
    await expect(Checkpoint.open(path.join(FIXTURES, 'legacy.bin'))).rejects.toThrow(/legacy\.bin: a legacy \(pre-zip\) torch\.save file/);
  });

  it('a truncated .bin file', async () => {
    const src = fs.readFileSync(path.join(FIXTURES, 'state_dict.bin'));
    const cut = path.join(tmp, 'cut.bin');
    fs.writeFileSync(cut, src.subarray(0, src.byteLength - 300));
    await expect(Checkpoint.open(cut)).rejects.toThrow(/cut\.bin: not a zip archive, or a truncated one/);
  });

  it('a zip directory claiming data past the end of the file', async () => {
    const src = fs.readFileSync(path.join(FIXTURES, 'state_dict.bin'));
    const file = path.join(tmp, 'past.bin');
    fs.writeFileSync(file, patchCentralEntry(src, 'state_dict/data/3', (view, at) => view.setUint32(at + 42, src.byteLength + 1000, true)));
    await expect(Checkpoint.open(file)).rejects.toThrow(/past\.bin: zip entry 'state_dict\/data\/3' starts at byte \d+, past the end of the file/);
  });

  it('zip fields that run past the central directory, or ask for more than the file', async () => {
    const src = fs.readFileSync(path.join(FIXTURES, 'state_dict.bin'));
    const longName = path.join(tmp, 'long-name.bin');
    fs.writeFileSync(longName, patchCentralEntry(src, 'state_dict/version', (view, at) => view.setUint16(at + 28, 0xffff, true)));
    await expect(Checkpoint.open(longName)).rejects.toThrow(/long-name\.bin: corrupt zip central directory: entry 19 runs to byte \d+ of \d+/);
    // The zip64 end record's directory size (torch writes one even for small files): 1 TB, once allocated before the range was checked.
    const huge = Buffer.from(src);
    huge.writeBigUInt64LE(1n << 40n, huge.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06])) + 40);
    const hugeFile = path.join(tmp, 'huge-directory.bin');
    fs.writeFileSync(hugeFile, huge);
    await expect(Checkpoint.open(hugeFile)).rejects.toThrow(/huge-directory\.bin: the zip central directory needs bytes \d+\.\.\d+ but the file has 6059 bytes/);
  });

  it('a deflated pickle that inflates past the size its directory gives, stopping there', async () => {
    const src = fs.readFileSync(path.join(FIXTURES, 'deflated-pickle.bin'));
    const file = path.join(tmp, 'bomb-pickle.bin');
    fs.writeFileSync(file, patchCentralEntry(src, 'deflated-pickle/data.pkl', (view, at) => view.setUint32(at + 24, 10, true)));
    await expect(Checkpoint.open(file)).rejects.toThrow(/bomb-pickle\.bin: entry 'deflated-pickle\/data\.pkl' does not inflate \(.*10/);
  });

  it('a storage smaller than its tensors need', async () => {
    const src = fs.readFileSync(path.join(FIXTURES, 'state_dict.bin'));
    const file = path.join(tmp, 'short.bin');
    // Storage 0 holds position_ids (a module's own buffers are saved before its children's); claim it has 4 bytes.
    fs.writeFileSync(file, patchCentralEntry(src, 'state_dict/data/0', (view, at) => {
      view.setUint32(at + 20, 4, true);
      view.setUint32(at + 24, 4, true);
    }));
    await expect(Checkpoint.open(file)).rejects.toThrow(/short\.bin: tensor 'position_ids': storage '0' should hold 11 I64 elements \(88 bytes\) but has 4 bytes/);
  });

  it('a pickle nested too deep, holding itself, or expanding through shared lists', async () => {
    const pickle = (...parts: (string | Buffer)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'hex') : p)));
    // 200,000 EMPTY_LISTs, each APPENDed into the one below.
    const deep = writeTorchZip('deep.bin', pickle('8002', Buffer.alloc(200_000, 0x5d), Buffer.alloc(199_999, 0x61), '2e'));
    await expect(Checkpoint.open(deep)).rejects.toThrow(/deep\.bin: nesting too deep: lists, tuples or dicts more than 1000 levels deep \(under '0\.0\.0\.0\.\.\.'/);
    // d = {}; d['a'] = d
    const self = writeTorchZip('self.bin', pickle('80027d7100', '580100000061', '6800', '732e'));
    await expect(Checkpoint.open(self)).rejects.toThrow(/self\.bin: nesting too deep: .*under 'a\.a\.a\.a\.\.\.'/);
    // L0 = []; Lk = [Lk-1, Lk-1] up to L40 through the memo: 2^40 paths in 400 bytes.
    const byte = (n: number) => n.toString(16).padStart(2, '0');
    const levels = Array.from({ length: 40 }, (_, k) => `5d28 68${byte(k)} 68${byte(k)} 65 71${byte(k + 1)} 30`.replaceAll(' ', ''));
    const bomb = writeTorchZip('bomb.bin', pickle('80025d710030', ...levels, '68282e'));
    await expect(Checkpoint.open(bomb)).rejects.toThrow(/bomb\.bin: the pickle's shared lists and dicts expand to more than 10000000 values/);
  });

  it('a missing shard, a shard without the tensors its index promises, duplicate names', async () => {
    const dir = copyDir(path.join(FIXTURES, 'official'), path.join(tmp, 'missing'));
    fs.rmSync(path.join(dir, 'pytorch_model-00002-of-00002.bin'));
    await expect(Checkpoint.open(dir)).rejects.toThrow(/pytorch_model\.bin\.index\.json: shard 'pytorch_model-00002-of-00002\.bin' is missing \(.* does not exist\); it should hold tensor 'llm\.model\.norm\.weight' and 3 more/);

    const wrong = copyDir(path.join(FIXTURES, 'official'), path.join(tmp, 'wrong'));
    const index = JSON.parse(fs.readFileSync(path.join(wrong, 'pytorch_model.bin.index.json'), 'utf8'));
    index.weight_map['llm.ghost.weight'] = 'pytorch_model-00001-of-00002.bin';
    fs.writeFileSync(path.join(wrong, 'pytorch_model.bin.index.json'), JSON.stringify(index));
    await expect(Checkpoint.open(wrong)).rejects.toThrow(/maps tensor 'llm\.ghost\.weight' to 'pytorch_model-00001-of-00002\.bin', but that shard has no such tensor/);

    const twice = copyDir(path.join(FIXTURES, 'official'), path.join(tmp, 'twice'));
    const text = fs.readFileSync(path.join(twice, 'pytorch_model.bin.index.json'), 'utf8');
    fs.writeFileSync(path.join(twice, 'pytorch_model.bin.index.json'), text.replace('"weight_map": {', '"weight_map": {\n "vl_bridge.0.bias": "x.bin",'));
    await expect(Checkpoint.open(twice)).rejects.toThrow(/index\.json: names 'vl_bridge\.0\.bias' twice \(in weight_map\)/);

    const both = copyDir(path.join(FIXTURES, 'official'), path.join(tmp, 'both'));
    fs.copyFileSync(path.join(both, 'pytorch_model-00001-of-00002.bin'), path.join(both, 'pytorch_model-00002-of-00002.bin'));
    await expect(Checkpoint.open(both)).rejects.toThrow(/tensor 'llm\.model\.embed_tokens\.weight' is in both .*00001-of-00002\.bin and .*00002-of-00002\.bin/);
  });

  it('a safetensors header that repeats a tensor name', async () => {
    const file = path.join(tmp, 'dup.safetensors');
    const json = '{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}';
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([header, Buffer.from(json), Buffer.alloc(8)]));
    await expect(Checkpoint.open(file)).rejects.toThrow(/dup\.safetensors: the header names tensor 't' twice/);
  });

  it('a truncated safetensors shard, naming the tensor past the end', async () => {
    const dir = copyDir(path.join(FIXTURES, 'safetensors'), path.join(tmp, 'st-cut'));
    const shard = path.join(dir, 'model-00002-of-00002.safetensors');
    fs.truncateSync(shard, fs.statSync(shard).size - 10);
    await expect(Checkpoint.open(dir)).rejects.toThrow(/model-00002-of-00002\.safetensors: tensor 'h'.*past the end of the file/);
  });

  it('an unknown tensor name, with suggestions', async () => {
    const ckpt = await Checkpoint.open(path.join(FIXTURES, 'official'));
    expect(() => ckpt.info('llm.model.norm.bias')).toThrow(/official: no tensor 'llm\.model\.norm\.bias' \(7 tensors; similar: llm\.model\.norm\.weight\)/);
    await ckpt.close();
  });

  it('a directory with no checkpoint in it', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'empty-'));
    await expect(Checkpoint.open(dir)).rejects.toThrow(/cannot tell which checkpoint to open: looked for model\.safetensors\.index\.json.*found none/);
    await expect(Checkpoint.open(path.join(tmp, 'nope'))).rejects.toThrow(/nope: no such file or directory/);
  });
});

function copyDir(src: string, dst: string): string {
  fs.cpSync(src, dst, { recursive: true });
  return dst;
}

/** Applies `edit` to the central directory record of one zip entry (found by its name). */
function patchCentralEntry(src: Buffer, name: string, edit: (view: DataView, at: number) => void): Buffer {
  const out = Buffer.from(src);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let at = out.byteLength - 22; at >= 0; at--) {
    if (view.getUint32(at, true) === 0x02014b50 && out.toString('utf8', at + 46, at + 46 + view.getUint16(at + 28, true)) === name) {
      edit(view, at);
      return out;
    }
  }
  throw new Error(`no central directory record for ${name}`);
}

/**
 * Copies a zip64 archive whose local headers start at 0 to `file` with `shift` bytes of hole in
 * front (sparse: no disk used), adding `shift` to every 64-bit offset.
 */
function writeShifted(src: Buffer, file: string, shift: number): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const out = Buffer.from(src);
  const outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const add = (at: number) => outView.setBigUint64(at, view.getBigUint64(at, true) + BigInt(shift), true);
  for (let at = 0; at + 4 <= src.byteLength; at++) {
    const sig = view.getUint32(at, true);
    if (sig === 0x02014b50) add(at + 46 + view.getUint16(at + 28, true) + 4 + 16); // zip64 extra: sizes, then offset
    else if (sig === 0x06064b50) add(at + 48); // central directory offset
    else if (sig === 0x07064b50) add(at + 8); // zip64 record offset
  }
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, out, 0, out.byteLength, shift);
  fs.closeSync(fd);
}

/** A torch.save-like archive in `tmp` holding `archive/data.pkl` and stored storages (`archive/data/<key>`). */
function writeTorchZip(name: string, pickle: Uint8Array, storages: Record<string, Uint8Array> = {}): string {
  const entries = Object.entries({ 'archive/data.pkl': pickle, ...Object.fromEntries(Object.entries(storages).map(([k, v]) => [`archive/data/${k}`, v])) });
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [entryName, data] of entries) {
    const nameBytes = Buffer.from(entryName);
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.byteLength, 18);
    local.writeUInt32LE(data.byteLength, 22);
    local.writeUInt16LE(nameBytes.byteLength, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.byteLength, 20);
    central.writeUInt32LE(data.byteLength, 24);
    central.writeUInt16LE(nameBytes.byteLength, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, Buffer.from(data));
    centrals.push(central, nameBytes);
    offset += 30 + nameBytes.byteLength + data.byteLength;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.byteLength, 12);
  end.writeUInt32LE(offset, 16);
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.concat([...locals, directory, end]));
  return file;
}
