// The client with the app's token source (`fetchCredentials`) against a real server: a token revoked in the middle
// of a long outbox is replaced and every operation still lands exactly once, in order; concurrent 401s share one
// refresh; a failing callback pauses sync with the outbox intact; `expiresAt` refreshes before the server refuses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../src/api.js';
import { OWNER, api, startServer } from './harness.js';
import { device, eventually } from './devices.js';

let server;
let labels = 0;

before(async () => {
  server = await startServer();
});
after(() => server?.stop());

/** Issues a device token through the CLI, as an app backend would; returns it with its id (for revoking). */
function issue(device = 'cred-phone') {
  const label = `cred-${++labels}`;
  const token = server.cli('token', 'issue', '--email', OWNER, '--device', device, '--label', label).trim();
  const line = server.cli('token', 'list').split('\n').find((l) => l.trimEnd().endsWith(`  ${label}`));
  return { token, id: line.split(/\s+/)[0] };
}

/** Revokes a token and waits until the server refuses it (the revocation reaches the token cache by NOTIFY). */
async function revoke(issued) {
  server.cli('token', 'revoke', issued.id);
  await eventually('the server refuses the revoked token', async () => (await api(server, issued.token, 'GET', '/v1/scopes')).status === 401);
}

/** A fetchCredentials that issues a fresh token on each call and remembers them. */
function tokenSource() {
  const source = {
    issued: [],
    async fetchCredentials() {
      const t = issue();
      source.issued.push(t);
      return { token: t.token };
    },
  };
  return source;
}

/** Pretends `n` customers were created offline; returns the expected keys in sequence order. */
async function queueCustomers(client, n, prefix) {
  const keys = [];
  for (let i = 1; i <= n; i++) {
    const id = `${prefix}-${String(i).padStart(3, '0')}`;
    await client.create('customers', { id, name: `Customer ${i}`, credit_limit: '0.00' });
    keys.push(id);
  }
  return keys;
}

/** The feed's customers changes with keys of `prefix`, in feed order. */
async function feedKeys(token, prefix) {
  const keys = [];
  let since = '0';
  for (;;) {
    const { body } = await api(server, token, 'GET', `/v1/scopes/retail/changes?since=${encodeURIComponent(since)}&collections=customers&limit=1000`);
    for (const c of body.changes) if (c.key.startsWith(prefix)) keys.push(c.key);
    since = body.cursor;
    if (!body.has_more) return keys;
  }
}

function replayed(clientId) {
  return server
    .sql(`SELECT seq || ' ' || op_id || ' ' || (result->>'status') FROM replay_results WHERE client_id = '${clientId}' ORDER BY seq`)
    .trim()
    .split('\n')
    .filter(Boolean);
}

test('a token revoked twice in the middle of the outbox: refreshed each time, every operation applied once, in order', async () => {
  const source = tokenSource();
  const a = await device(server, null, { fetchCredentials: source.fetchCredentials, batchSize: 10 });
  a.net.offline = true;
  const keys = await queueCustomers(a.client, 200, 'cred');
  const expected = (await a.db.local_outbox.orderBy('seq').toArray()).map((e) => `${e.seq} ${e.op.id} applied`);
  const clientId = await a.client.clientId();

  // Between two batches, once the server has applied through sequence 50 and again through 130, the token in use
  // dies; the client learns it only from the next request's 401.
  const revokeAfter = [50, 130];
  a.net.beforeAnswer = async (req, res) => {
    if (req.method !== 'POST' || res.status !== 200 || revokeAfter.length === 0) return;
    if ((await res.json()).last_seq < revokeAfter[0]) return;
    revokeAfter.shift();
    await revoke(source.issued.at(-1));
  };
  a.net.offline = false;
  // push() alone, not the live loop: a pull meeting the dead token first would refresh it before any push met it.
  // Concurrent 401s are the next test's.
  await a.client.push();

  assert.deepEqual(revokeAfter, [], 'both revocations happened mid-outbox');
  assert.equal(source.issued.length, 3, 'one token at start, one per revocation (single flight)');
  assert.deepEqual(replayed(clientId), expected, 'each sequence applied once, with its own operation');
  assert.equal(server.sql(`SELECT last_seq FROM replay_clients WHERE client_id = '${clientId}'`).trim(), '200');
  assert.deepEqual(await feedKeys(source.issued.at(-1).token, 'cred-'), keys, 'feed order = sequence order, none doubled');
  assert.equal(await a.db.local_dead_letter.count(), 0);
  assert.equal(await a.db.local_events.count(), 0);
  assert.equal(a.client.state.error, null);
  // Once a fresh token was in use, no request went out with an older one.
  const tokens = source.issued.map((t) => t.token);
  let newest = -1;
  for (const r of a.net.sent) {
    const i = tokens.indexOf(r.token);
    assert.ok(i >= newest, `a request with token #${i} after token #${newest} was in use`);
    newest = i;
  }
  assert.equal(a.net.sent.filter((r) => r.method === 'POST' && r.status === 401).length, 2, 'each dead token met by a push');
  assert.equal(await a.db.local_outbox.count(), 0);
  await a.client.close();
});

test('concurrent requests that meet a 401 share one refresh', async () => {
  const issued = [];
  let release;
  const gate = new Promise((r) => (release = r));
  const a = await device(server, null, {
    fetchCredentials: async () => {
      if (issued.length === 1) await gate; // the refresh: held until all three requests were refused
      issued.push(issue());
      return { token: issued.at(-1).token };
    },
  });
  await a.client.pull();
  assert.equal(issued.length, 1);
  await a.client.create('customers', { id: 'flight-1', name: 'Flight', credit_limit: '0.00' });
  await revoke(issued[0]);
  const refused = () => a.net.sent.filter((r) => r.status === 401).length;
  // No 401 reaches the client before all three requests went out with the dead token: each of them meets it.
  const dead = issued[0].token;
  const sentBefore = a.net.sent.filter((r) => r.token === dead).length;
  a.net.beforeAnswer = (req) => req.status === 401 && eventually('three sent', () => a.net.sent.filter((r) => r.token === dead).length >= 3 + sentBefore);
  const all = Promise.all([a.client.pushOnce(), a.client.pullOnce(), a.client.reference('products')]);
  await eventually('three requests refused', () => refused() === 3);
  release();
  await all;
  assert.equal(issued.length, 2, 'one refresh for three refusals');
  assert.equal(await a.db.local_outbox.count(), 0);
  assert.deepEqual(
    a.net.sent.filter((r) => r.status !== 401).slice(-3).map((r) => r.token),
    [issued[1].token, issued[1].token, issued[1].token],
  );
  await a.client.close();
});

test('a failing fetchCredentials pauses sync with the outbox intact; a later attempt asks again and drains it', async () => {
  let mode = 'throw';
  let calls = 0;
  const source = tokenSource();
  const a = await device(server, null, {
    fetchCredentials: async () => {
      calls += 1;
      if (mode === 'throw') throw new Error('ERP backend says: session expired');
      if (mode === 'null') return null;
      if (mode === 'revoked') {
        const t = issue();
        await revoke(t);
        return { token: t.token };
      }
      return source.fetchCredentials();
    },
  });
  await queueCustomers(a.client, 5, 'paused');
  const before = await a.db.local_outbox.toArray();

  await assert.rejects(a.client.push(), (e) => e instanceof ApiError && e.code === 'credentials_unavailable' && /session expired/.test(e.message));
  assert.equal(a.client.state.error.code, 'credentials_unavailable');
  assert.equal(calls, 1);
  mode = 'null';
  await assert.rejects(a.client.push(), (e) => e.code === 'credentials_unavailable');
  assert.equal(calls, 2, 'the next attempt asks again');
  // Tokens the server refuses: one asked for because there was none, one after its 401; the retry's 401 is then
  // the answer (no loop).
  mode = 'revoked';
  await assert.rejects(a.client.push(), (e) => e instanceof ApiError && e.status === 401 && e.code === 'unauthorized');
  assert.equal(calls, 4);
  assert.deepEqual(a.net.sent.map((r) => r.status), [401, 401], 'each refused token sent once');
  assert.equal(a.client.state.error.code, 'unauthorized');
  assert.deepEqual(await a.db.local_outbox.toArray(), before, 'the outbox is untouched');
  assert.equal(server.sql(`SELECT count(*) FROM replay_clients WHERE client_id = '${await a.client.clientId()}'`).trim(), '0');

  mode = 'ok';
  await a.client.push();
  assert.equal(calls, 5, 'the refused token was dropped, so the next attempt asked for a new one');
  assert.equal(await a.db.local_outbox.count(), 0);
  assert.equal(a.client.state.error, null);
  assert.deepEqual(await feedKeys(source.issued[0].token, 'paused-'), before.map((e) => e.op.key));
  await a.client.close();
});

test('expiresAt: a token due for refresh is replaced before it is sent, not after a 401', async () => {
  const issued = [];
  const a = await device(server, null, {
    fetchCredentials: async () => {
      issued.push(issue());
      // The first token claims to expire now (the server would still take it): the next request must not use it.
      return { token: issued.at(-1).token, expiresAt: issued.length === 1 ? new Date() : Date.now() + 3600_000 };
    },
  });
  await a.client.pullOnce();
  await a.client.pullOnce();
  await a.client.pullOnce();
  assert.equal(issued.length, 2);
  assert.deepEqual(
    a.net.sent.map((r) => r.token),
    [issued[0].token, issued[1].token, issued[1].token],
  );
  assert.ok(a.net.sent.every((r) => r.status === 200));
  await a.client.close();
});

test('no callback: a fixed token is stored and a 401 stops the queue as before', async () => {
  const t = issue('fixed-phone');
  const a = await device(server, t.token);
  assert.equal((await a.db.local_sync.get('auth')).token, t.token);
  await a.client.create('customers', { id: 'fixed-1', name: 'Fixed', credit_limit: '0.00' });
  await revoke(t);
  await assert.rejects(a.client.push(), (e) => e instanceof ApiError && e.status === 401 && e.code === 'unauthorized');
  assert.equal(a.net.sent.length, 1, 'no retry without a callback');
  assert.equal(await a.db.local_outbox.count(), 1);
  await a.client.close();
});
