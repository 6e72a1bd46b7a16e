// CORS from a real browser (protocol §3.5): a page served from another loopback origin (another port) pushes and
// pulls against the server when its origin is in DUKASYNC_CORS_ORIGINS; a page from an origin not listed cannot
// (its fetch rejects, and nothing reaches the server). Debian's Chromium driven by playwright-core, as in
// browser.test.js. If Chromium cannot start, these tests fail; they never skip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { OWNER, api, startServer } from './harness.js';
import { ARGS, CHROMIUM } from './phones.js';


let server;
let browser;
const pages = [];

/** A loopback server that serves one empty page: an origin of its own (its port). */
async function pageServer() {
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>another origin</title>');
  });
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  pages.push(s);
  return `http://127.0.0.1:${s.address().port}`;
}

let allowed;
let other;

before(async () => {
  allowed = await pageServer();
  other = await pageServer();
  server = await startServer({ DUKASYNC_CORS_ORIGINS: allowed });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  for (const s of pages) await new Promise((resolve) => s.close(resolve));
});

/** Runs, in a page of `origin`, a push of customer `key` and then a pull of the scope from zero. */
async function pushAndPullFrom(origin, token, key) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(origin);
    return await page.evaluate(
      async ({ url, token, key, clientId }) => {
        try {
          const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
          const op = { seq: 1, id: crypto.randomUUID(), type: 'put', collection: 'customers', key, data: { id: key, name: 'Njoki' } };
          const push = await fetch(`${url}/v1/scopes/retail/ops`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ client_id: clientId, ops: [op] }),
          });
          const pushed = await push.json();
          const pull = await fetch(`${url}/v1/scopes/retail/changes?since=0&collections=customers`, {
            headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
          });
          const page = await pull.json();
          return {
            ok: true,
            pushStatus: push.status,
            pushed,
            requestId: push.headers.get('x-request-id'),
            pulled: page.changes.find((c) => c.key === key)?.data ?? null,
          };
        } catch (e) {
          return { ok: false, error: `${e.name}: ${e.message}` };
        }
      },
      { url: server.url, token, key, clientId: crypto.randomUUID() },
    );
  } finally {
    await context.close();
  }
}

test('a page of an allowed origin pushes and pulls', async () => {
  const token = server.token(OWNER, 'erp-pwa');
  const r = await pushAndPullFrom(allowed, token, 'cors-allowed');
  assert.equal(r.ok, true, r.error);
  assert.equal(r.pushStatus, 200);
  assert.equal(r.pushed.results[0].status, 'applied');
  assert.ok(r.requestId, 'x-request-id is exposed to the page');
  assert.deepEqual(r.pulled, { id: 'cors-allowed', name: 'Njoki' });
});

test('a page of another origin cannot call the server', async () => {
  const token = server.token(OWNER, 'stranger-page');
  const r = await pushAndPullFrom(other, token, 'cors-other');
  assert.equal(r.ok, false);
  assert.match(r.error, /TypeError/);
  // The preflight failed, so the push never reached the server.
  const { body } = await api(server, token, 'GET', '/v1/scopes/retail/changes?since=0&collections=customers');
  assert.equal(body.changes.find((c) => c.key === 'cors-other'), undefined);
});
