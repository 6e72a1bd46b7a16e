// The POS demo's service worker (a module worker; it imports the same client the page uses).
// - Replays each scope's outbox on Background Sync (`dukasync-outbox:<scope>`), so sales recorded offline reach
//   the server when connectivity returns even if no page is open: the package's `./sw` module
//   (`@dukasync/client/sw`), as an app's own Workbox or vite-plugin-pwa worker would use it.
// - Caches the app shell (network first, the cached copy offline) and reference snapshots (the cached 200 offline).
import { registerOutboxSync } from '../src/sw.js';

const SHELL = 'dukasync-shell-v1';
const REFERENCE = 'dukasync-reference-v1';

// The page and what an installed app needs to start (manifest, icons); the modules the page imports are added by
// the page's `cache-shell` message below.
const INSTALL = ['./', './app.js', './style.css', './manifest.webmanifest', './icons/icon-192.png', './icons/icon-512.png', './icons/maskable-512.png'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(INSTALL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// The page lists the files it loaded before this worker controlled it; they make up the shell.
self.addEventListener('message', (event) => {
  if (event.data?.type !== 'cache-shell') return;
  // One by one: addAll() would store nothing if any file failed (a stray 404 such as a favicon).
  const files = [...new Set(event.data.files)];
  event.waitUntil(
    caches
      .open(SHELL)
      .then((c) => Promise.allSettled(files.map((f) => c.add(f))))
      .then((results) => {
        const failed = files.filter((_, i) => results[i].status === 'rejected');
        event.ports[0]?.postMessage({ ok: failed.length === 0, cached: files.length - failed.length, failed });
      }),
  );
});

registerOutboxSync(self);

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (/^\/v1\/scopes\/[^/]+\/reference\//.test(url.pathname)) return event.respondWith(reference(event.request));
  if (url.pathname.startsWith('/v1/')) return; // the API: never cached here
  event.respondWith(shell(event.request));
});

async function shell(request) {
  const cache = await caches.open(SHELL);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw err;
  }
}

// Conditional requests pass through untouched, so the page sees the server's 304. Only full 200 answers are
// stored; offline, the stored one is served (the page then uses it as its copy).
async function reference(request) {
  const cache = await caches.open(REFERENCE);
  try {
    const response = await fetch(request);
    if (response.status === 200) await cache.put(request.url, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(request.url);
    if (cached) return cached;
    throw err;
  }
}
