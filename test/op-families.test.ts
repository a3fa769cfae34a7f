/**
 * One op family, one name (src/ops/index.ts): src/ops/<family>.ts runs kernels/<family>*.wgsl, is
 * tested by test/<family>.test.ts against the golden file of scripts/golden/<family>.py, with
 * underscores for dashes outside TypeScript.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Families without a kernel of their own (src/ops/index.ts says why). */
const NO_KERNEL = new Set(['kv-cache', 'timestep']);
/** Kernels that are not an op family's: who runs them. */
const NOT_OPS: Record<string, string> = { 'image.wgsl': 'src/image/gpu-image.ts', 'probe.wgsl': 'bench/kernels.ts' };

const families = fs.readdirSync(path.join(ROOT, 'src', 'ops'))
  .filter((f) => f.endsWith('.ts') && f !== 'index.ts')
  .map((f) => f.slice(0, -3))
  .sort();
const kernels = fs.readdirSync(path.join(ROOT, 'kernels')).filter((f) => f.endsWith('.wgsl')).sort();
const snake = (family: string) => family.replaceAll('-', '_');
const kernelsOf = (family: string) => kernels.filter((k) => k === `${snake(family)}.wgsl` || k.startsWith(`${snake(family)}_`));

describe('op families', () => {
  it('are there to check', () => {
    expect(families).toContain('rows');
    expect(kernelsOf('rows')).toEqual(['rows_argmax.wgsl', 'rows_norm.wgsl', 'rows_softmax.wgsl']);
  });

  it.each(families)('%s: kernels, test and golden of the same name', (family) => {
    const own = kernelsOf(family);
    if (NO_KERNEL.has(family)) expect(own, `${family} is listed as having no kernel`).toEqual([]);
    else expect(own.length, `kernels/${snake(family)}*.wgsl`).toBeGreaterThan(0);
    // Every kernel file the op names is one of its own.
    const source = fs.readFileSync(path.join(ROOT, 'src', 'ops', `${family}.ts`), 'utf8');
    for (const [, name] of source.matchAll(/file: ['`]([^'`$]+)/g)) {
      expect(own.some((k) => k.startsWith(name!)), `src/ops/${family}.ts runs ${name}, not a ${family} kernel`).toBe(true);
    }
    const test = path.join(ROOT, 'test', `${family}.test.ts`);
    expect(fs.existsSync(test), `test/${family}.test.ts`).toBe(true);
    expect(fs.readFileSync(test, 'utf8'), `test/${family}.test.ts loads its golden`).toContain(`loadGolden('${snake(family)}')`);
    expect(fs.existsSync(path.join(ROOT, 'scripts', 'golden', `${snake(family)}.py`)), `scripts/golden/${snake(family)}.py`).toBe(true);
  });

  it('own every kernel outside kernels/lib/, one family each', () => {
    const owners = kernels.map((k) => [k, NOT_OPS[k] ? [NOT_OPS[k]] : families.filter((f) => kernelsOf(f).includes(k))] as const);
    expect(owners.filter(([, o]) => o.length !== 1)).toEqual([]);
  });
});
