/** README.md stays a front door, and its performance table is bench/results.json's (scripts/readme-table.ts). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Measurement } from '../bench/harness.js';
import { extractBlock, markersOf, replaceBlock } from '../scripts/readme-blocks.js';
import { dateOf, extractTable, readResults, renderTable } from '../scripts/readme-table.js';

const { begin: BEGIN, end: END } = markersOf('bench');

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const README = path.join(ROOT, 'README.md');
const RESULTS = path.join(ROOT, 'bench', 'results.json');

describe('README.md', () => {
  const readme = fs.readFileSync(README, 'utf8');

  it('is under 10 KB', () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(10 * 1024);
  });

  it("holds bench/results.json's performance table (npm run readme writes it)", () => {
    const block = extractTable(readme);
    // The date is provenance that results.json does not hold: the block keeps the one it was written with.
    expect(block).toBe(renderTable(readResults(RESULTS), { date: dateOf(block) }));
  });

  it('links only to docs that exist', () => {
    const links = [...readme.matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(0);
    const missing = links.filter((l) => !fs.existsSync(path.join(ROOT, l)));
    expect(missing).toEqual([]);
  });
});

describe('readme-table', () => {
  const m = (name: string, fields: Record<string, unknown>): Measurement => ({ name, shape: 's', median_ms: 1, ...fields });

  it('replaceBlock swaps what lies between the markers and nothing else', () => {
    const readme = `# title\n\n${BEGIN}\nold table\n${END}\n\ntail\n`;
    const out = replaceBlock(readme, 'bench', 'new table\n');
    expect(out).toBe(`# title\n\n${BEGIN}\nnew table\n${END}\n\ntail\n`);
    expect(extractBlock(out, 'bench')).toBe('new table\n');
    expect(replaceBlock(out, 'bench', 'new table\n')).toBe(out);
  });

  it('replaceBlock refuses a README without both markers, or with them twice or reversed', () => {
    expect(() => replaceBlock('# no table here\n', 'bench', 'x')).toThrow(/no <!-- bench:begin --> marker/);
    expect(() => replaceBlock(`${BEGIN}\n`, 'bench', 'x')).toThrow(/no <!-- bench:end --> marker/);
    expect(() => replaceBlock(`${BEGIN}\n${END}\n${BEGIN}\n${END}\n`, 'bench', 'x')).toThrow(/more than one/);
    expect(() => replaceBlock(`${END}\n${BEGIN}\n`, 'bench', 'x')).toThrow(/before/);
  });

  it('renders each headline row from the same run, and names the rows a filtered run lacks', () => {
    const table = renderTable(
      [
        m('probe_fma', { gflops: 50 }),
        m('gemv_f16', { gbps: 6.5, ratio_to_ceiling: 0.9812 }),
        m('attention_clip_577', { speedup_vs_unfused: 2.4 }),
      ],
      { date: '2026-01-02' },
    );
    expect(table).toContain('Measured 2026-01-02; this run\'s probes: FMA 50.0 GFLOP/s.');
    expect(table).toContain('| GEMV, f16 weights, 1 × 4096 × 4096 | 6.50 GB/s | 98% of the read probe |');
    expect(table).toContain('| 2.40× the unfused path |');
    expect(table).toMatch(/Not in this run: LLaMA decoding, d 512/);
    expect(dateOf(table)).toBe('2026-01-02');
  });

  it('refuses a headline measurement without its figure', () => {
    expect(() => renderTable([m('gemv_f16', { ratio_to_ceiling: 0.9 })])).toThrow(/expected a number/);
  });

  it("differs from the README's block when a figure changes", () => {
    const results = readResults(RESULTS).map((r) => (r.name === 'gemv_f16' ? { ...r, gbps: (r.gbps ?? 0) + 1 } : r));
    const block = extractTable(fs.readFileSync(README, 'utf8'));
    expect(renderTable(results, { date: dateOf(block) })).not.toBe(block);
  });
});
