/**
 * What the CLI says on stderr while it works. On a terminal: the checkpoint's loading bar, an
 * activity line with the seconds elapsed while the model runs (one forward pass reports nothing
 * until it ends), and a bar over diffusion steps with its ETA. Off a terminal (a log, a pipe) the
 * bars would add a line per 5%, so only notes are written; --quiet drops those too.
 */
import { countOf, formatSeconds, ProgressBar, type ProgressUnit } from '../progress-bar.js';

export class Progress {
  /** Bars and activity lines redraw in place: only a terminal shows them as meant. */
  private readonly live: boolean;
  private stopActivity: (() => void) | null = null;
  private stepBar: ProgressBar | null = null;

  constructor(
    private readonly quiet: boolean,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.live = !quiet && stream.isTTY === true;
  }

  /** A line for the user (what loaded, where a file went), unless --quiet. */
  note(line: string): void {
    this.clear();
    if (!this.quiet) this.stream.write(`${line}\n`);
  }

  /** A bar to update, on a terminal only. */
  bar(unit?: ProgressUnit): ProgressBar | null {
    return this.live ? new ProgressBar(this.stream, { unit }) : null;
  }

  /** "running the model… 12 s", redrawn each second until clear() or the next line. */
  activity(label: string): void {
    this.clear();
    if (!this.live) return;
    const start = Date.now();
    const draw = () => this.stream.write(`\r${label}… ${formatSeconds((Date.now() - start) / 1000)}\x1b[K`);
    draw();
    // unref: a forgotten line never keeps the process alive.
    const timer = setInterval(draw, 1000).unref();
    this.stopActivity = () => {
      clearInterval(timer);
      this.stream.write('\r\x1b[K');
    };
  }

  /** Diffusion's onStep: the activity line gives way to a bar over the steps. */
  readonly onStep = (block: number, done: number, total: number): void => {
    if (!this.live) return;
    if (!this.stepBar) {
      this.clear();
      this.stepBar = new ProgressBar(this.stream, { unit: countOf('steps') });
    }
    this.stepBar.update(done, total, block > 0 ? `image ${block + 1}` : '');
    if (done === total) {
      this.stepBar.finish();
      this.stepBar = null;
    }
  };

  /** Ends whatever line is being redrawn. */
  clear(): void {
    this.stopActivity?.();
    this.stopActivity = null;
    this.stepBar?.finish();
    this.stepBar = null;
  }
}
