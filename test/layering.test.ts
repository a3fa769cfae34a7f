/**
 * The folders of src/ are layers, and imports between them go one way: a cycle (model -> superlink
 * -> model) is reported with one import behind each of its steps. Every relative import counts,
 * type-only ones included. Files directly in src/ (the CLI, the public index, paths.ts) are nodes
 * of their own: the top ones may import anything, and a cycle through one is still a cycle.
 * src/ops/support/ is the op families' plumbing: outside src/ops it is reached through
 * src/ops/index.ts only.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');
const SUPPORT = path.join(SRC, 'ops', 'support');

/** Module specifiers a source file imports or re-exports: static, type-only, `import('...')` types and dynamic imports. */
export function importsOf(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const literal = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node)) found.push(node.text);
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) literal(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) literal(node.moduleReference.expression);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal(node.argument.literal);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) literal(node.arguments[0]);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The layer of a path under src/: its top-level folder, or the file itself ('paths.ts') when it sits directly in src/. */
function layerOf(file: string): string {
  const [first, ...rest] = path.relative(SRC, file).split(path.sep);
  return rest.length === 0 ? first!.replace(/\.js$/, '.ts') : first!;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

interface Import {
  file: string;
  specifier: string;
  target: string;
}

/** Every relative import in src/, resolved to the path it names (inside src/ only). */
function srcImports(): Import[] {
  return sourceFiles(SRC).flatMap((file) =>
    importsOf(file, fs.readFileSync(file, 'utf8'))
      .filter((specifier) => specifier.startsWith('.'))
      .map((specifier) => ({ file, specifier, target: path.resolve(path.dirname(file), specifier) }))
      .filter((i) => !path.relative(SRC, i.target).startsWith('..')),
  );
}

export type Graph = Map<string, Set<string>>;

/**
 * Cycles of a directed graph (self-loops aside), enough to name every node caught in one: for each
 * strongly connected component of two or more nodes, the shortest cycle through its first node in
 * sorted order, then through each member not yet named. Each cycle starts and ends at its smallest
 * node, e.g. ['model', 'superlink', 'model'].
 */
export function findCycles(graph: Graph): string[][] {
  const nodes = [...new Set([...graph.keys(), ...[...graph.values()].flatMap((s) => [...s])])].sort();
  const next = (n: string) => [...(graph.get(n) ?? [])].filter((m) => m !== n).sort();
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) connect(n);

  /** The shortest cycle from `start` back to it inside `inside` (breadth-first), rotated to begin at its smallest node. */
  const shortestCycle = (start: string, inside: Set<string>): string[] => {
    const from = new Map<string, string>();
    const queue = [start];
    let last: string | undefined;
    while (last === undefined) {
      const v = queue.shift()!;
      for (const w of next(v).filter((m) => inside.has(m))) {
        if (w === start) {
          last = v;
          break;
        }
        if (!from.has(w)) {
          from.set(w, v);
          queue.push(w);
        }
      }
    }
    const ring = [last];
    while (ring[0] !== start) ring.unshift(from.get(ring[0]!)!);
    const first = ring.indexOf([...ring].sort()[0]!);
    const rotated = [...ring.slice(first), ...ring.slice(0, first)];
    return [...rotated, rotated[0]!];
  };

  const cycles: string[][] = [];
  for (const component of components.filter((c) => c.length > 1).sort((a, b) => (a[0]! < b[0]! ? -1 : 1))) {
    const inside = new Set(component);
    const named = new Set<string>();
    for (const n of component) {
      if (named.has(n)) continue;
      const cycle = shortestCycle(n, inside);
      cycle.forEach((m) => named.add(m));
      cycles.push(cycle);
    }
  }
  return cycles;
}

describe('findCycles', () => {
  const graph = (edges: [string, string][]): Graph => {
    const g: Graph = new Map();
    for (const [a, b] of edges) {
      if (!g.has(a)) g.set(a, new Set());
      g.get(a)!.add(b);
    }
    return g;
  };

  it('finds none in a layered graph, and ignores self-loops', () => {
    expect(findCycles(graph([['model', 'ops'], ['ops', 'engine'], ['model', 'engine'], ['ops', 'ops']]))).toEqual([]);
  });

  it('names a two-folder cycle', () => {
    expect(findCycles(graph([['superlink', 'model'], ['model', 'superlink'], ['model', 'ops']]))).toEqual([['model', 'superlink', 'model']]);
  });

  it('names every node of a tangle, shortest cycles first, and separate tangles apart', () => {
    const g = graph([
      ['a', 'b'], ['b', 'c'], ['c', 'a'], ['c', 'd'], ['d', 'b'], ['d', 'e'],
      ['x', 'y'], ['y', 'x'],
    ]);
    expect(findCycles(g)).toEqual([
      ['a', 'b', 'c', 'a'],
      ['b', 'c', 'd', 'b'],
      ['x', 'y', 'x'],
    ]);
  });
});

describe('importsOf', () => {
  it('sees static, type-only, re-exported, import() type and dynamic imports', () => {
    const text = [
      "import fs from 'node:fs';",
      "import type { A } from './a.js';",
      "export { b } from '../b.js';",
      "export * from './c.js';",
      "type D = import('./d.js').D;",
      "const e = await import('./e.js');",
      "// import { f } from './f.js';",
    ].join('\n');
    expect(importsOf('x.ts', text)).toEqual(['node:fs', './a.js', '../b.js', './c.js', './d.js', './e.js']);
  });
});

describe('src layering', () => {
  const imports = srcImports();

  it('has imports to check', () => {
    expect(imports.length).toBeGreaterThan(100);
    expect(imports.some((i) => layerOf(i.file) === 'ops' && layerOf(i.target) === 'engine')).toBe(true);
  });

  it('has no cycle between the folders of src/', () => {
    const graph: Graph = new Map();
    const witness = new Map<string, Import>();
    for (const i of imports) {
      const [a, b] = [layerOf(i.file), layerOf(i.target)];
      if (a === b) continue;
      if (!graph.has(a)) graph.set(a, new Set());
      graph.get(a)!.add(b);
      const key = `${a} -> ${b}`;
      const seen = witness.get(key);
      if (!seen || i.file < seen.file) witness.set(key, i);
    }
    const report = findCycles(graph).map((cycle) => {
      const steps = cycle.slice(1).map((to, k) => {
        const i = witness.get(`${cycle[k]} -> ${to}`)!;
        return `  ${cycle[k]} -> ${to}: ${path.relative(path.dirname(SRC), i.file)} imports '${i.specifier}'`;
      });
      return [cycle.join(' -> '), ...steps].join('\n');
    });
    expect(report, `import cycles between folders of src/:\n${report.join('\n')}`).toEqual([]);
  });

  it('reaches src/ops/support/ from outside src/ops only through src/ops/index.ts', () => {
    const ops = path.join(SRC, 'ops');
    const outside = imports
      .filter((i) => (i.target === SUPPORT || i.target.startsWith(SUPPORT + path.sep)) && !i.file.startsWith(ops + path.sep))
      .map((i) => `${path.relative(path.dirname(SRC), i.file)} imports '${i.specifier}'`);
    expect(outside).toEqual([]);
  });
});
