/**
 * A real redis-server for a test file: on a free loopback port, in its own temp dir, with an
 * append-only file so that a restart (stop(), then start() on the same port and dir) keeps the
 * queued jobs, as a production Redis with persistence would.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Where scripts/setup.sh (apt's redis-server) puts it, or whatever is on PATH. */
export function findRedisServer(): string | null {
  for (const candidate of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  const which = spawnSync('which', ['redis-server'], { encoding: 'utf8' });
  return which.status === 0 ? which.stdout.trim() : null;
}

/** A port nobody listens on now (the OS picks it; a tiny race with other processes is accepted). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export class RedisServer {
  private process: ChildProcess | null = null;

  private constructor(
    readonly binary: string,
    readonly port: number,
    readonly dir: string,
  ) {}

  /** Starts one on a free port in a new temp dir. */
  static async start(binary: string): Promise<RedisServer> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'visionllm-redis-'));
    const server = new RedisServer(binary, await freePort(), dir);
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** (Re)starts the server on its port and dir; resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.process) throw new Error('redis-server is already running');
    const child = spawn(this.binary, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', this.dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process = child;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s:\n${log}`)), 10_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${log}`));
      });
    });
    // Keep draining its output so a full pipe never blocks it.
    child.stdout!.resume();
  }

  /** Stops the server (SIGTERM: it flushes the append-only file) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.process;
    if (!child) return;
    this.process = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  /** Stops it and deletes its dir. */
  async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
