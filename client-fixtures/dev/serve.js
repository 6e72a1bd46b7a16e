// A tiny same-origin server for the POS demo: serves client-fixtures' files (the page, the client modules and the
// three vendor packages they import) and forwards /v1/* to a dukasync server, so the page, its service worker and
// the API share one origin (no CORS preflights, and the service worker sees API requests).
//
//   node dev/serve.js --upstream http://127.0.0.1:8080 [--port 8090]
//   then open http://127.0.0.1:8090/app/#token=dks_...&scope=retail
import http from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Only these folders are served; everything else (tests, artifacts, other packages) is 404.
const SERVED = ['app/', 'src/', 'node_modules/dexie/dist/', 'node_modules/@noble/hashes/', 'node_modules/@msgpack/msgpack/dist.esm/'];

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/**
 * Starts the server. Resolves to { url, close() }.
 * @param {object} o `upstream` (dukasync's base URL), `port` (0 picks a free one), `host`.
 */
export async function startProxy({ upstream, port = 0, host = '127.0.0.1' }) {
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/v1/') || req.url === '/v1') return forward(req, res, target);
    serveFile(req, res).catch(() => {
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
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': info.size,
    // The service worker decides what is cached; the browser's HTTP cache stays out of the way.
    'cache-control': 'no-cache',
  });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file).pipe(res);
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
  const proxy = await startProxy({ upstream: arg('upstream', 'http://127.0.0.1:8080'), port: Number(arg('port', 8090)) });
  console.log(`POS demo on ${proxy.url}/app/  (API forwarded to ${arg('upstream', 'http://127.0.0.1:8080')})`);
}
