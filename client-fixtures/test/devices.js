// Test devices: a SyncClient on its own fake IndexedDB, behind a network the test controls (offline, answers lost
// after the server acted on the request).
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { SyncClient } from '../src/client.js';

export function network() {
  const net = {
    offline: false,
    /** The next N POSTs reach the server, but their answers are lost on the way back. */
    loseAnswers: 0,
    posts: 0,
    /** When each long-poll (a GET with a non-zero `wait`) was sent, in milliseconds. */
    longPolls: [],
    /** Every request in the order it was sent: method, URL, the bearer token, and the answer's status once known. */
    sent: [],
    /** Runs (request, response) before an answer reaches the client (e.g. to revoke a token between batches). */
    beforeAnswer: null,
    async fetch(url, init = {}) {
      if (net.offline) throw new TypeError('fetch failed: offline');
      if ((init.method ?? 'GET') === 'GET' && /[?&]wait=[1-9]/.test(String(url))) net.longPolls.push(Date.now());
      const request = { method: init.method ?? 'GET', url: String(url), token: bearer(init.headers), status: null };
      net.sent.push(request);
      const res = await fetch(url, init);
      request.status = res.status;
      if (net.beforeAnswer) await net.beforeAnswer(request, res.clone());
      if (init.method === 'POST') {
        net.posts += 1;
        if (net.loseAnswers > 0) {
          net.loseAnswers -= 1;
          await res.arrayBuffer();
          throw new TypeError('fetch failed: connection reset after the request was sent');
        }
      }
      return res;
    },
  };
  return net;
}

function bearer(headers = {}) {
  return /^Bearer (.*)$/.exec(headers.Authorization ?? '')?.[1] ?? null;
}

const definitions = new Map();
/**
 * The server's collection definitions, asked once per server, so that opening a test device sends nothing on its
 * own network: tests that count requests count only what they drive. collections.test.js covers the fetch itself.
 */
async function collectionsOf(server) {
  if (!definitions.has(server.url)) {
    const res = await fetch(`${server.url}/v1/collections`, { headers: { Authorization: `Bearer ${server.token()}` } });
    if (!res.ok) throw new Error(`GET /v1/collections answered ${res.status}`);
    definitions.set(server.url, (await res.json()).collections);
  }
  return definitions.get(server.url);
}

/** A device of `scope` with its own IndexedDB and network. */
export async function device(server, token, { scope = 'retail', encoding, ...options } = {}) {
  const net = network();
  const client = await SyncClient.open({
    collections: await collectionsOf(server),
    scope,
    token,
    baseUrl: server.url,
    encoding,
    fetch: net.fetch,
    indexedDB: new IDBFactory(),
    IDBKeyRange,
    backoff: { baseMs: 20, maxMs: 200 },
    longPollSecs: 5,
    ...options,
  });
  return { client, net, db: client.db };
}

/** Resolves once `check()` returns a truthy value; fails after `ms` with `what`. Polls observable state. */
export async function eventually(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Collects a client's events of one type. */
export function collect(client, type) {
  const seen = [];
  client.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}
