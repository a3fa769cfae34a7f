/**
 * The project as a user gets it from npm: `npm pack`, the tarball installed in a fresh project, and
 * there the README's API example compiled against the installed types and run, and the `visionllm` bin.
 */
import { spawnSync, type SpawnSyncOptions, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_DIR, ensureBuilt } from './helpers.js';

const ROOT = path.resolve(TEST_DIR, '..');
const NAME = 'visionllm-webgpu';
const HAS_NPM = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;
if (!HAS_NPM) console.warn('test/package.test.ts: skipped, npm is not on PATH');

function run(command: string, args: string[], cwd: string, options: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 120_000, ...options }) as SpawnSyncReturns<string>;
  if (r.error) throw new Error(`${command} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): SpawnSyncReturns<string> {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** The README's first ```ts block: its API example, read at test time because it changes. */
function readmeExample(): string {
  const block = /^```ts\n([\s\S]*?)^```$/m.exec(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  if (!block) throw new Error('README.md has no ```ts block');
  return block[1]!;
}

/** Every file under `dir`, as paths relative to ROOT with '/' separators (as npm lists them). */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    return e.isDirectory() ? filesUnder(rel) : [rel];
  });
}

let tmp: string;
let app: string; // the user's project
let packed: string[]; // the tarball's paths

beforeAll(() => {
  if (!HAS_NPM) return;
  ensureBuilt([path.join(ROOT, 'dist', 'src', 'index.js'), path.join(ROOT, 'dist', 'src', 'cli.js')]);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'visionllm-pack-'));
  app = path.join(tmp, 'app');
  fs.mkdirSync(app);

  const pack = ok(run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT), 'npm pack');
  const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  packed = info!.files.map((f) => f.path);

  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }, null, 2));
  // npm ci filled npm's cache with every dependency; the network is only a fallback.
  const install = ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(tmp, info!.filename)];
  ok(run('npm', install, app, { timeout: 240_000 }), `npm ${install.join(' ')}`);
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!HAS_NPM)('npm pack', () => {
  it('holds the built library, its kernels and both embedded checkpoints, and no tests, goldens or sources', () => {
    for (const f of ['package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli.js']) expect(packed).toContain(f);
    for (const folder of ['kernels', 'weights/miniature', 'weights/tiny']) {
      expect(packed.filter((f) => f.startsWith(`${folder}/`)).sort()).toEqual(filesUnder(folder).sort());
    }
    for (const weights of ['weights/miniature', 'weights/tiny']) {
      for (const f of ['config.json', 'model.safetensors', 'example.png']) expect(packed).toContain(`${weights}/${f}`);
    }
    // Shipped besides: the serve command's web page (its HTML and CSS, read from src/server/page; its built script).
    const shipped = (f: string) => /^src\/server\/page\/[^/]+\.(html|css)$/.test(f) || /^dist\/page\/[^/]+\.js$/.test(f);
    const stray = packed.filter((f) => /^((src|bench|scripts|test)\/|dist\/(?!src\/))/.test(f) && !shipped(f));
    expect(stray).toEqual([]);
  });
});

describe.skipIf(!HAS_NPM)('the installed package', () => {
  it('points main, types, exports and bin at files it holds', () => {
    const installed = path.join(app, 'node_modules', NAME);
    const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    const entry = pkg.exports['.'];
    // tsc would find index.d.ts beside index.js without "types": check the condition names a real file.
    for (const f of [pkg.main, pkg.types, entry.types, entry.import, pkg.bin.visionllm]) {
      expect(fs.existsSync(path.join(installed, f)), f).toBe(true);
    }
    expect(fs.existsSync(path.join(app, 'node_modules', '.bin', 'visionllm'))).toBe(true);
  });

  it("runs the README's API example, type-checked against the installed types", () => {
    fs.writeFileSync(path.join(app, 'example.ts'), readmeExample());
    fs.copyFileSync(path.join(TEST_DIR, 'fixtures', 'images', 'small.jpg'), path.join(app, 'photo.jpg'));
    // The example loads 'weights/tiny', a checkpoint directory relative to the user's project: the
    // package's own copy stands in for it, so the example runs as the README prints it.
    fs.symlinkSync(path.join(app, 'node_modules', NAME, 'weights'), path.join(app, 'weights'), 'dir');
    const tsconfig = {
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        strict: true,
        noEmit: false,
        outDir: 'out',
        // The user's own @types/node (the example writes to process.stdout); this repo's stands in.
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        types: ['node'],
      },
      files: ['example.ts'],
    };
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    ok(run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], app), 'tsc -p app');

    const r = ok(run(process.execPath, [path.join('out', 'example.js')], app), 'node out/example.js');
    expect(r.stdout.trim()).not.toBe(''); // the streamed answer, then one line per decoder output
    expect(r.stderr).not.toMatch(/Error/);
  }, 180_000);

  it('has the visionllm bin: `npx visionllm --help` prints the usage', () => {
    // --no: a missing bin fails here rather than fetching a package of that name.
    const r = ok(run('npx', ['--no', '--', 'visionllm', '--help'], app), 'npx visionllm --help');
    expect(r.stdout).toMatch(/^usage: visionllm/m);
  });

  it('`npx visionllm` finds its default weights and picture inside node_modules', () => {
    const r = ok(run('npx', ['--no', '--', 'visionllm', '--max-new-tokens', '2'], app), 'npx visionllm');
    const installed = path.join(app, 'node_modules', NAME);
    expect(r.stderr).toContain(`loaded ${path.join(installed, 'weights', 'miniature')}`);
    expect(r.stderr).toContain(`image: ${path.join(installed, 'weights', 'miniature', 'example.png')}`);
    expect(r.stdout).toMatch(/^ASSISTANT: \S/m);
  }, 120_000);
});
