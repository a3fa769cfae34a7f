/**
 * The page to try the server in a browser, as llama.cpp's server has one: GET / is the HTML, and
 * /page/* its style and scripts. The scripts are src/server/page/*.ts compiled by PAGE_BUILD_COMMAND
 * to dist/page/. Everything is read once here, so serving never touches the disk and a request
 * can only name a file in this table.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { projectRoot } from '../paths.js';

export const PAGE_BUILD_COMMAND = 'tsc -p src/server/page';

const SOURCE_DIR = 'src/server/page';
const BUILD_DIR = 'dist/page';

/**
 * Only this origin's scripts, styles and API; images may be data: URLs (the upload, the made
 * pictures). The page needs nothing else, so a script injected through a model's answer could not run.
 */
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer | string;
}

export function registerPage(app: FastifyInstance): void {
  const root = projectRoot();
  const assets = new Map<string, Asset>([
    ['/', { type: 'text/html; charset=utf-8', body: fs.readFileSync(path.join(root, SOURCE_DIR, 'index.html')) }],
    ['/page/style.css', { type: 'text/css; charset=utf-8', body: fs.readFileSync(path.join(root, SOURCE_DIR, 'style.css')) }],
  ]);
  for (const [name, body] of builtScripts(path.join(root, BUILD_DIR))) assets.set(`/page/${name}`, { type: 'text/javascript; charset=utf-8', body });
  if (!assets.has('/page/main.js')) {
    app.log.warn(`the page's scripts are not built (no ${BUILD_DIR}/main.js): run ${PAGE_BUILD_COMMAND}`);
    assets.set('/page/main.js', { type: 'text/javascript; charset=utf-8', body: notBuiltScript() });
  }

  for (const [url, asset] of assets) {
    app.get(url, (_request, reply) => {
      reply.header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').header('content-security-policy', CONTENT_SECURITY_POLICY);
      return reply.type(asset.type).send(asset.body);
    });
  }
}

/** [file name, contents] of each compiled script; none when the page was never built. */
function builtScripts(dir: string): [string, Buffer][] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.js'))
    .map((name) => [name, fs.readFileSync(path.join(dir, name))]);
}

/** Says on the page itself why it does nothing, where the person trying it looks. */
function notBuiltScript(): string {
  const message = `This page's script is not built: run "npx ${PAGE_BUILD_COMMAND}" in the project, then restart the server.`;
  return `document.getElementById('status').textContent = ${JSON.stringify(message)};\n`;
}
