import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsWriter, encodeSafetensors, parseHeader, readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));

function headerBytes(obj: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(obj));
}

describe('safetensors', () => {
  it('round-trips tensors and metadata with an 8-byte aligned data section', () => {
    const file = path.join(tmp, 'a.safetensors');
    const f = new Float32Array([1, 2, 3, 4, 5, 6]);
    const h = new Uint16Array([0x3c00, 0x4000, 0x4200]);
    writeSafetensors(file, { f: { dtype: 'F32', shape: [2, 3], data: f }, h: { dtype: 'F16', shape: [3], data: h } }, { note: 'é ✓' });
    const bytes = fs.readFileSync(file);
    expect((8 + Number(bytes.readBigUInt64LE(0))) % 8).toBe(0);
    const { tensors, metadata } = readSafetensors(file);
    expect(metadata.note).toBe('é ✓');
    expect(tensors.get('f')!.shape).toEqual([2, 3]);
    expect(Array.from(new Float32Array(tensors.get('f')!.bytes.buffer))).toEqual(Array.from(f));
    expect(Array.from(new Uint16Array(tensors.get('h')!.bytes.buffer))).toEqual(Array.from(h));
  });

  it('rejects inconsistent headers, naming the file and tensor', () => {
    const entry = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
    expect(() => parseHeader(headerBytes({ t: { ...entry, dtype: 'Q8' } }), 1000, 'x.st')).toThrow(/x\.st: tensor 't': unknown dtype "Q8"/);
    expect(() => parseHeader(headerBytes({ t: { ...entry, shape: [3] } }), 1000, 'x.st')).toThrow(/F32\[3\] needs 12 bytes but data_offsets span 8/);
    expect(() => parseHeader(headerBytes({ t: entry }), 8 + 20 + 4, 'x.st')).toThrow(/past the end of the file/);
    expect(() => parseHeader(headerBytes({ t: entry, u: { ...entry, data_offsets: [4, 12] } }), 1000, 'x.st')).toThrow(/'t' and 'u' overlap/);
    expect(() => parseHeader(new TextEncoder().encode('{"t": '), 1000, 'x.st')).toThrow(/not valid UTF-8 JSON/);
  });

  it('rejects a truncated file and an impossible header length', () => {
    const good = encodeSafetensors({ t: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    const cut = path.join(tmp, 'cut.safetensors');
    fs.writeFileSync(cut, good.subarray(0, good.byteLength - 4));
    expect(() => readSafetensors(cut)).toThrow(/cut\.safetensors: tensor 't'.*past the end/);
    const huge = path.join(tmp, 'huge.safetensors');
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(1n << 40n, 0);
    fs.writeFileSync(huge, buf);
    expect(() => readSafetensors(huge)).toThrow(/header length 1099511627776 exceeds/);
    const tiny = path.join(tmp, 'tiny.safetensors');
    fs.writeFileSync(tiny, Buffer.alloc(3));
    expect(() => readSafetensors(tiny)).toThrow(/too short/);
  });
});

describe('safetensors headers built to break the reader', () => {
  it('refuses a header nesting arrays a million deep by name, without overflowing the stack', () => {
    const n = 1_000_000;
    const deep = `{"t": ${'['.repeat(n)}${']'.repeat(n)}, "t": 1}`;
    expect(() => parseHeader(new TextEncoder().encode(deep), 1e7, 'deep.st')).toThrow(/^deep\.st: the header names tensor 't' twice$/);
    expect(() => parseHeader(new TextEncoder().encode(deep.replace(', "t": 1', '')), 1e7, 'deep.st')).toThrow(/^deep\.st: tensor 't': unknown dtype undefined$/);
  });

  it('refuses __metadata__ that is not an object of strings', () => {
    expect(() => parseHeader(headerBytes({ __metadata__: ['a'] }), 100, 'm.st')).toThrow(/^m\.st: __metadata__ must map names to strings$/);
  });
});

describe('SafetensorsWriter', () => {
  it('streams tensors in pieces and gives the file its name only when complete', async () => {
    const file = path.join(tmp, 'streamed.safetensors');
    const tensors = [
      { name: 'a', dtype: 'F32' as const, shape: [3, 2] },
      { name: 'empty', dtype: 'F16' as const, shape: [0, 4] },
      { name: 'b', dtype: 'BF16' as const, shape: [5] },
    ];
    const w = await SafetensorsWriter.create(file, tensors, { format: 'pt' });
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    await w.write('a', new Uint8Array(a.buffer, 0, 8));
    await w.write('a', new Uint8Array(a.buffer, 8));
    expect(fs.existsSync(file)).toBe(false);
    await expect(w.write('a', new Uint8Array(4))).rejects.toThrow(/expected data for 'b', got 'a'/);
    await w.write('b', new Uint8Array(new Uint16Array([1, 2, 3, 4, 5]).buffer));
    await w.close();
    const { tensors: read, metadata } = readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect(Array.from(new Float32Array(read.get('a')!.bytes.buffer))).toEqual(Array.from(a));
    expect(read.get('empty')!.shape).toEqual([0, 4]);
    expect(Array.from(new Uint16Array(read.get('b')!.bytes.buffer))).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses to finish a file with a tensor missing, and leaves nothing behind', async () => {
    const file = path.join(tmp, 'partial.safetensors');
    const w = await SafetensorsWriter.create(file, [{ name: 'a', dtype: 'F32', shape: [4] }]);
    await w.write('a', new Uint8Array(8));
    await expect(w.close()).rejects.toThrow(/partial\.safetensors: tensor 'a' is incomplete \(8 bytes written\)/);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('partial'))).toEqual([]);
  });
});
