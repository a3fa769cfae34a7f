/**
 * Weight loading: bf16 -> f16 conversion on the CPU, reading a tensor by range, uploading it to the
 * GPU as f16 and f32, and converting a file to f16 safetensors, on a 32 MiB bf16 tensor written to
 * a temporary file (read back from the page cache, so disk speed is not measured). The projection
 * to the 19 GB official release is rate arithmetic, not a measurement.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checkpoint } from '../src/io/checkpoint.js';
import { convertCheckpoint } from '../src/io/convert.js';
import { convertElements } from '../src/io/elements.js';
import { SafetensorsWriter } from '../src/io/safetensors.js';
import { round, timeMedian, type Harness } from './harness.js';

const OFFICIAL_BYTES = 19e9;

export async function benchCheckpoint(h: Harness): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ckpt-'));
  try {
    const shape = [4096, 4096];
    const bytes = shape[0]! * shape[1]! * 2;
    const data = new Uint16Array(bytes / 2);
    for (let i = 0; i < data.length; i++) data[i] = 0x3c00 + ((i * 2654435761) >>> 22); // bf16 values around 0.01 .. 60
    const file = path.join(dir, 'model.safetensors');
    const writer = await SafetensorsWriter.create(file, [{ name: 'w', dtype: 'BF16', shape }]);
    await writer.write('w', new Uint8Array(data.buffer));
    await writer.close();
    const ckpt = await Checkpoint.open(file);
    const gb = bytes / 1e9;
    const record = (name: string, ms: number) => {
      const rate = round(gb / (ms / 1000), 3);
      h.record({ name, shape: `${shape.join('x')} bf16`, median_ms: round(ms, 3), gbps: rate, official_19GB_s: round(OFFICIAL_BYTES / 1e9 / rate, 1) });
    };
    const piece = new Uint8Array(data.buffer, 0, 8 << 20);
    if (h.wanted('convert_bf16_to_f16')) {
      const ms = await timeMedian('convert_bf16_to_f16', async () => void convertElements(piece, 'BF16', 'F16', 'bench'), 5, 1000);
      record('convert_bf16_to_f16', ms * (bytes / piece.byteLength));
    }
    if (h.wanted('checkpoint_read')) record('checkpoint_read', await timeMedian('checkpoint_read', async () => void (await ckpt.read('w')), 5, 1000));
    for (const dtype of ['f16', 'f32'] as const) {
      const name = `checkpoint_upload_${dtype}`;
      if (!h.wanted(name)) continue;
      const ms = await timeMedian(name, async () => (await ckpt.upload(h.engine, 'w', { dtype })).dispose(), 5, 1000);
      record(name, ms);
    }
    if (h.wanted('convert_to_safetensors_f16')) {
      const out = path.join(dir, 'out');
      record('convert_to_safetensors_f16', await timeMedian('convert_to_safetensors_f16', async () => void (await convertCheckpoint(file, out)), 3, 1000));
    }
    await ckpt.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
