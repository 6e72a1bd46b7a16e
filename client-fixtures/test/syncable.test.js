// Dexie.Syncable (Dexie's own sync add-on) syncing a plain Dexie database with a real server through the
// `dukasync` protocol adapter: local Dexie writes reach the server, server changes reach Dexie, and a lost answer
// does not apply a change twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import 'fake-indexeddb/auto';
import { registerDukasyncProtocol } from '../src/syncable.js';
import { OWNER, api, startServer } from './harness.js';
import { eventually, network } from './devices.js';

// dexie-observable reads the browser's `self` when it loads.
globalThis.self ??= globalThis;
const { default: Dexie } = await import('dexie');
await import('dexie-observable');
await import('dexie-syncable');

let server;
let token;
const net = network();

before(async () => {
  server = await startServer();
  token = server.token(OWNER, 'syncable-phone');
  registerDukasyncProtocol(Dexie, { fetch: net.fetch, pollMs: 100 });
});
after(() => server?.stop());

async function customerChanges(since = '0') {
  const { body } = await api(server, token, 'GET', `/v1/scopes/retail/changes?since=${since}&collections=customers`);
  return body;
}

async function serverCustomer(key) {
  let found;
  for (const c of (await customerChanges()).changes) if (c.key === key) found = c.op === 'upsert' ? c.data : undefined;
  return found;
}

test('Dexie.Syncable syncs a Dexie database both ways, exactly once', async () => {
  const db = new Dexie('syncable-device');
  db.version(1).stores({ customers: 'id', products: 'id' });
  await db.open();
  await db.syncable.connect('dukasync', server.url, { scope: 'retail', token, tables: ['customers', 'products'] });

  // Server to Dexie: the demo data arrives as Syncable creates.
  await eventually('demo products in Dexie', async () => (await db.products.count()) === 7);
  assert.equal((await db.products.get('r-sugar-1kg')).price, '180.00');
  await eventually('demo customers in Dexie', async () => (await db.customers.count()) === 2);

  // Dexie to server: create, update with a key path, delete, as Dexie.Observable recorded them.
  await db.customers.add({ id: 'syn-1', name: 'Via Syncable', address: { city: 'Nakuru' } });
  await db.customers.update('syn-1', { 'address.city': 'Nairobi' });
  await db.customers.delete('retail-cust-2');
  await eventually('Syncable writes on the server', async () => (await serverCustomer('syn-1'))?.address?.city === 'Nairobi');
  assert.equal(await serverCustomer('retail-cust-2'), undefined);

  // Another device's write comes back into Dexie.
  const other = await api(server, token, 'POST', '/v1/scopes/retail/ops', {
    client_id: crypto.randomUUID(),
    ops: [{ seq: 1, id: crypto.randomUUID(), type: 'put', collection: 'customers', key: 'syn-remote', data: { id: 'syn-remote', name: 'From elsewhere' } }],
  });
  assert.equal(other.status, 200);
  await eventually('remote write in Dexie', () => db.customers.get('syn-remote'));

  // The answer to the next push is lost after the server applied it; Syncable resends, the server answers duplicate.
  const storedResults = () =>
    Number(
      server.sql(`SELECT count(*) FROM replay_results r JOIN replay_clients c USING (scope_id, client_id)
                  JOIN devices d ON d.id = c.device_id WHERE d.name = 'syncable-phone'`),
    );
  const resultsBefore = storedResults();
  const before = (await customerChanges()).cursor;
  net.loseAnswers = 1;
  const postsBefore = net.posts;
  await db.customers.add({ id: 'syn-lost', name: 'Answer lost once' });
  await eventually('lost-answer write on the server and acknowledged', async () => net.posts >= postsBefore + 2 && (await serverCustomer('syn-lost')));
  const after = (await customerChanges(before)).changes.filter((c) => c.key === 'syn-lost');
  assert.equal(after.length, 1, 'one feed change');
  assert.equal(storedResults(), resultsBefore + 1, 'the resend was answered from the stored result, not applied again');

  await db.syncable.disconnect(server.url);
  db.close();
});

test('a server change reaches Syncable through a waiting long-poll, not a poll', async () => {
  const db = new Dexie('syncable-longpoll');
  db.version(1).stores({ customers: 'id' });
  await db.open();
  const isChanges = (r) => r.method === 'GET' && r.url.includes('/v1/scopes/retail/changes');
  const first = net.sent.length; // the requests of this connection (an aborted one of the last test stays unanswered)
  await db.syncable.connect('dukasync', server.url, { scope: 'retail', token, tables: ['customers'] });
  await eventually('demo customers in Dexie', async () => (await db.customers.count()) >= 2);

  // Caught up, the adapter holds one long-poll open on the feed (`wait` > 0, no answer yet).
  const waiting = await eventually('a long-poll waiting on the feed', () =>
    net.sent.slice(first).find((r) => isChanges(r) && /[?&]wait=[1-9]/.test(r.url) && r.status === null),
  );
  const sentBefore = net.sent.length;
  const other = await api(server, token, 'POST', '/v1/scopes/retail/ops', {
    client_id: crypto.randomUUID(),
    ops: [{ seq: 1, id: crypto.randomUUID(), type: 'put', collection: 'customers', key: 'lp-remote', data: { id: 'lp-remote', name: 'Right away' } }],
  });
  assert.equal(other.status, 200);
  await eventually('remote write in Dexie', () => db.customers.get('lp-remote'));

  // The long-poll sent before the write answered it; at most its successor was sent since (no pull cadence).
  assert.equal(waiting.status, 200, 'the waiting long-poll delivered the change');
  const since = net.sent.slice(sentBefore).filter(isChanges);
  assert.ok(since.length <= 1, `pulls after the write: ${since.map((r) => r.url).join(', ')}`);
  assert.ok(since.every((r) => /[?&]wait=[1-9]/.test(r.url)), 'the next pull is a long-poll too');

  // A local write is pushed at once (Syncable's react), while the long-poll keeps waiting.
  await db.customers.add({ id: 'lp-local', name: 'Pushed on change' });
  await eventually('local write on the server', async () => (await serverCustomer('lp-local'))?.name === 'Pushed on change');

  await db.syncable.disconnect(server.url);
  db.close();
});

test('a lost batch resent with newer changes after it keeps its numbers and applies once', async () => {
  const db = new Dexie('syncable-resend-more');
  db.version(1).stores({ customers: 'id' });
  await db.open();
  await db.syncable.connect('dukasync', server.url, { scope: 'retail', token, tables: ['customers'] });
  await eventually('demo customers in Dexie', async () => (await db.customers.count()) >= 2);
  const applied = () =>
    Number(
      server.sql(`SELECT count(*) FROM replay_results r JOIN replay_clients c USING (scope_id, client_id)
                  JOIN devices d ON d.id = c.device_id WHERE d.name = 'syncable-phone'`),
    );
  const before = applied();
  const cursor = (await customerChanges()).cursor;

  // The answer to the push of `more-1` is lost after the server applied it; while that push is out, `more-2` is
  // written, so Syncable's resend after reconnecting holds both.
  net.loseAnswers = 1;
  net.beforeAnswer = async (request) => {
    if (request.method !== 'POST') return;
    net.beforeAnswer = null;
    await db.customers.add({ id: 'more-2', name: 'Written while the answer was lost' });
  };
  await db.customers.add({ id: 'more-1', name: 'Answer lost' });
  await eventually('both on the server', async () => (await serverCustomer('more-1')) && (await serverCustomer('more-2')));
  await eventually('both acknowledged', async () => applied() >= before + 2);
  const changes = (await customerChanges(cursor)).changes.filter((c) => c.key.startsWith('more-'));
  assert.deepEqual(changes.map((c) => c.key).sort(), ['more-1', 'more-2'], 'one feed change each');
  assert.equal(applied(), before + 2, 'more-1 was answered from its stored result, not applied again');

  await db.syncable.disconnect(server.url);
  db.close();
});
