/**
 * A one-line progress bar for long jobs (converting or loading gigabytes of weights, diffusion steps):
 *   [##########----------]  52.1%  9.84 / 18.90 GB  212 MB/s  ETA 43 s  llm.model.layers.12.mlp.up_proj.weight
 *   [######--------------]  24.0%  12 / 50 steps  ETA 40 s
 * Redrawn in place on a terminal (at most 10 times a second); elsewhere (a log file, CI) one line
 * every 5% so the log stays readable.
 */

/** How a bar writes its quantities: the amount done of the total, and (optionally) the rate. */
export interface ProgressUnit {
  amount(done: number, total: number): string;
  /** Left out, the bar shows no rate: "0.4 steps/s" says less than the ETA beside it. */
  rate?(perSecond: number): string;
}

export const BYTES: ProgressUnit = {
  amount: (done, total) => formatBytes(done, total),
  rate: (perSecond) => `${formatBytes(perSecond)}/s`,
};

/** Whole things counted: "12 / 50 steps". */
export function countOf(noun: string): ProgressUnit {
  return { amount: (done, total) => `${done} / ${total} ${noun}` };
}

export interface ProgressBarOptions {
  /** Characters between the brackets (default 24). */
  width?: number;
  /** Default BYTES. */
  unit?: ProgressUnit;
}

export class ProgressBar {
  private readonly start = Date.now();
  private readonly width: number;
  private readonly unit: ProgressUnit;
  private lastDraw = 0;
  private lastPercentLogged = -5;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    options: ProgressBarOptions = {},
  ) {
    this.width = options.width ?? 24;
    this.unit = options.unit ?? BYTES;
  }

  update(done: number, total: number, label = ''): void {
    const now = Date.now();
    const percent = total > 0 ? (100 * done) / total : 100;
    if (this.stream.isTTY) {
      if (now - this.lastDraw < 100 && done < total) return;
      this.lastDraw = now;
      const line = this.format(done, total, percent, label);
      const columns = this.stream.columns || 120;
      this.stream.write(`\r${line.length > columns - 1 ? line.slice(0, columns - 1) : line.padEnd(columns - 1)}`);
      this.drawn = true;
    } else if (percent >= this.lastPercentLogged + 5 || done === total) {
      this.lastPercentLogged = Math.floor(percent / 5) * 5;
      this.stream.write(`${this.format(done, total, percent, label)}\n`);
    }
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }

  format(done: number, total: number, percent: number, label: string): string {
    const filled = Math.round((this.width * Math.min(percent, 100)) / 100);
    const seconds = (Date.now() - this.start) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 && done < total ? `  ETA ${formatSeconds((total - done) / rate)}` : '';
    const shownRate = this.unit.rate ? `  ${this.unit.rate(rate)}` : '';
    return `[${'#'.repeat(filled)}${'-'.repeat(this.width - filled)}] ${percent.toFixed(1).padStart(5)}%  ${this.unit.amount(done, total)}${shownRate}${eta}${label ? `  ${label}` : ''}`;
  }
}

/** "9.84 / 18.90 GB", or one quantity alone: decimal units, the unit chosen by the larger number. */
export function formatBytes(n: number, of?: number): string {
  const ref = Math.max(n, of ?? 0);
  const [unit, div] = ref >= 1e9 ? ['GB', 1e9] : ref >= 1e6 ? ['MB', 1e6] : ref >= 1e3 ? ['kB', 1e3] : ['B', 1];
  const digits = div === 1 ? 0 : 2;
  return of === undefined ? `${(n / div).toFixed(digits)} ${unit}` : `${(n / div).toFixed(digits)} / ${(of / div).toFixed(digits)} ${unit}`;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
