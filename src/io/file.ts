/**
 * Positional reads from files that may be far larger than memory (checkpoint shards are many
 * gigabytes): only the byte ranges asked for are read, and a range past the end names the file
 * and what was being read, so a truncated download is reported as such.
 */
import fs from 'node:fs';

export class RandomAccessFile {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: fs.promises.FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<RandomAccessFile> {
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot open (${(err as Error).message})`);
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new Error(`${path}: not a regular file`);
      return new RandomAccessFile(path, handle, stat.size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * Reads bytes [position, position + length) into a fresh buffer (offset 0, so typed-array views
   * of any element size fit). `what` names the data for the error when the file is too short.
   */
  async read(position: number, length: number, what: string): Promise<Uint8Array> {
    // Checked before allocating: a corrupt length field may ask for gigabytes of a small file.
    this.checkRange(position, length, what);
    const out = new Uint8Array(length);
    await this.readInto(out, position, what);
    return out;
  }

  /** Fills `target` from `position`. */
  async readInto(target: Uint8Array, position: number, what: string): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: read after close`);
    this.checkRange(position, target.byteLength, what);
    let done = 0;
    while (done < target.byteLength) {
      const { bytesRead } = await this.handle.read(target, done, target.byteLength - done, position + done);
      if (bytesRead === 0) throw new Error(`${this.path}: ${what}: unexpected end of file at byte ${position + done} (the file shrank while reading?)`);
      done += bytesRead;
    }
  }

  private checkRange(position: number, length: number, what: string): void {
    const end = position + length;
    if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(length) || length < 0 || end > this.size) {
      throw new Error(`${this.path}: ${what} needs bytes ${position}..${end} but the file has ${this.size} bytes (truncated or corrupt)`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}
