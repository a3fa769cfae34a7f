/** Where the project's own files are, whether running from src/ (tests) or dist/src/ (built). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | null = null;

/** The folder holding this package's package.json and kernels/. */
export function projectRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'kernels'))) return (root = dir);
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the project root (package.json and kernels/) above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
