/**
 * `visionllm serve` as a user runs it: the built CLI in a child process, for the tests that need
 * whole processes (server-cli, server-redis) and for the serving bench. No vitest import: the
 * bench loads it outside a test run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../src/paths.js';

/** Polls `check` until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export class ServeProcess {
  private stderr = '';
  /** Its exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    child.stdout!.resume();
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** `visionllm serve ...args` of dist/src/cli.js, in the project root. */
  static start(args: string[]): ServeProcess {
    const root = projectRoot();
    return new ServeProcess(spawn(process.execPath, [path.join(root, 'dist', 'src', 'cli.js'), 'serve', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The last lines of its stderr, less the HTTP access log, for a failure's message. */
  tail(lines = 20): string {
    return this.stderr.split('\n').filter((l) => !l.startsWith('{') && !l.startsWith('Warning')).slice(-lines).join('\n');
  }

  /** Until its stderr matches `line` (e.g. /listening on/); throws if it exits first. */
  waitFor(line: RegExp, timeoutMs: number): Promise<void> {
    return until(`${line} on stderr`, () => {
      if (this.child.exitCode !== null) throw new Error(`visionllm serve exited with ${this.child.exitCode}:\n${this.stderr}`);
      return line.test(this.stderr);
    }, timeoutMs, 50);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }

  /** SIGTERM, SIGKILL after 5 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
