// A tiny same-origin server for the POS demo: serves client-fixtures' files (the page, the client modules and the
// packages they depend on) and forwards /v1/* to a dukasync server, so the page, its service worker and the API
// share one origin (no CORS preflights, and the service worker sees API requests).
//
// The client imports its dependencies by bare specifier (`dexie`, `@noble/hashes/blake3.js`) as an npm package
// must. Browsers cannot resolve those, and module service workers have no import maps, so served JavaScript has
// its bare specifiers rewritten to `/node_modules/...` paths, as Vite's dev server does.
//
//   node dev/serve.js --upstream http://127.0.0.1:8080 [--port 8090]
//   then open http://127.0.0.1:8090/app/#token=dks_...&scope=retail
//
// With `--dir <folder>` (or `startProxy({ dir })`) it serves a built app instead, e.g. the example's `vite build`
// output: the files as they are at the root, `index.html` for `/` and for paths that are not files.
import http from 'node:http';
import { createReadStream, readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, parse } from 'es-module-lexer';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Only these folders are served: the demo, the client, and the packages the client depends on (its own
// dependencies and peers). Everything else (tests, artifacts, other packages) is 404.
const PACKAGE = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
const DEPENDENCIES = [...Object.keys(PACKAGE.dependencies ?? {}), ...Object.keys(PACKAGE.peerDependencies ?? {})];
const SERVED = ['app/', 'src/', ...DEPENDENCIES.map((name) => `node_modules/${name}/`)];

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
  '.map': 'application/json',
};

/**
 * Starts the server. Resolves to { url, close() }.
 * @param {object} o `upstream` (dukasync's base URL), `port` (0 picks a free one), `host`, `dir` (a built app to
 *   serve instead of the demo).
 */
export async function startProxy({ upstream, port = 0, host = '127.0.0.1', dir }) {
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/v1/') || req.url === '/v1') return forward(req, res, target);
    (dir ? serveBuilt(req, res, path.resolve(dir)) : serveFile(req, res)).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const { port: bound } = server.address();
  return {
    url: `http://${host}:${bound}`,
    close: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}

function forward(req, res, target) {
  const headers = { ...req.headers, host: target.host };
  const upstream = http.request(
    { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'unavailable', message: 'the dukasync server cannot be reached' } }));
    } else res.destroy();
  });
  req.on('aborted', () => upstream.destroy());
  req.pipe(upstream);
}

async function serveFile(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405);
    return res.end();
  }
  let rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
  if (rel === '') {
    res.writeHead(302, { location: '/app/' });
    return res.end();
  }
  if (rel.endsWith('/')) rel += 'index.html';
  const file = path.resolve(ROOT, rel);
  const inside = path.relative(ROOT, file).split(path.sep).join('/');
  if (inside.startsWith('..') || !SERVED.some((p) => inside.startsWith(p))) return notFound(res);
  const info = await stat(file).catch(() => null);
  if (!info?.isFile()) return notFound(res);
  const headers = {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    // The service worker decides what is cached; the browser's HTTP cache stays out of the way.
    'cache-control': 'no-cache',
  };
  if (/\.m?js$/.test(file)) {
    const body = Buffer.from(await rewriteBareImports(await readFile(file, 'utf8')));
    res.writeHead(200, { ...headers, 'content-length': body.length });
    return res.end(req.method === 'HEAD' ? undefined : body);
  }
  res.writeHead(200, { ...headers, 'content-length': info.size });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file).pipe(res);
}

/** A built app (no import rewriting): its files, and its `index.html` for `/` and any path that is not a file. */
async function serveBuilt(req, res, dir) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405);
    return res.end();
  }
  const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
  let file = path.resolve(dir, rel);
  if (path.relative(dir, file).startsWith('..')) return notFound(res);
  let info = await stat(file).catch(() => null);
  if (!info?.isFile()) {
    if (path.extname(rel)) return notFound(res);
    file = path.join(dir, 'index.html');
    info = await stat(file).catch(() => null);
    if (!info?.isFile()) return notFound(res);
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache', 'content-length': info.size });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file).pipe(res);
}

const isBare = (spec) => !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(spec);

/** Replaces the bare specifiers of a module's static and dynamic imports (and re-exports) by served paths. */
export async function rewriteBareImports(source) {
  await init;
  const [imports] = parse(source);
  let out = '';
  let at = 0;
  for (const i of imports) {
    // `n` is the specifier's value when it is a plain string literal; dynamic imports of expressions stay as they are.
    if (i.n === undefined || !isBare(i.n)) continue;
    const quoted = i.d > -1; // a dynamic import's s..e spans the string literal with its quotes
    out += source.slice(at, i.s) + (quoted ? JSON.stringify(resolveBare(i.n)) : resolveBare(i.n));
    at = i.e;
  }
  return out + source.slice(at);
}

/**
 * The served path of a bare specifier (`dexie`, `@noble/hashes/blake3.js`), resolved as a browser bundler would: a
 * package's `module` entry first, then its `exports` under the conditions browser, module, import, default.
 */
export function resolveBare(spec) {
  const parts = spec.split('/');
  const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  const sub = spec.slice(name.length);
  const pkg = readPackage(name);
  // `exports` is a path, an object of conditions (for `.` alone), or an object of subpaths (keys starting with `.`).
  const subpaths = pkg.exports && typeof pkg.exports === 'object' && Object.keys(pkg.exports).some((k) => k.startsWith('.'));
  const exported = (key) => pick(subpaths ? pkg.exports[key] : key === '.' ? pkg.exports : undefined);
  const target = sub ? (exported('.' + sub) ?? '.' + sub) : (pkg.module ?? exported('.') ?? pkg.main ?? 'index.js');
  return '/' + path.posix.join('node_modules', name, target);
}

const packages = new Map();
function readPackage(name) {
  if (!packages.has(name)) {
    let pkg = {};
    try {
      pkg = JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8'));
    } catch {
      // not installed: the browser then gets a 404 naming the path, which says what is missing
    }
    packages.set(name, pkg);
  }
  return packages.get(name);
}

function pick(entry) {
  if (typeof entry === 'string') return entry;
  if (!entry || typeof entry !== 'object') return undefined;
  for (const condition of ['browser', 'module', 'import', 'default']) {
    const found = condition in entry ? pick(entry[condition]) : undefined;
    if (found) return found;
  }
  return undefined;
}

function notFound(res) {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const dir = arg('dir', undefined);
  const proxy = await startProxy({ upstream: arg('upstream', 'http://127.0.0.1:8080'), port: Number(arg('port', 8090)), dir });
  console.log(`${dir ? `${dir} on ${proxy.url}/` : `POS demo on ${proxy.url}/app/`}  (API forwarded to ${arg('upstream', 'http://127.0.0.1:8080')})`);
}
