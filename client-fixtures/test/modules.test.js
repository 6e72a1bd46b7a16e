// The package's service-worker module and its framework-neutral stores, in Node against a real server:
// - `registerOutboxSync` answers a Background Sync event for a scope by replaying that scope's outbox from the
//   database alone (token and server as stored), and leaves other tags alone;
// - `syncStateStore` follows the client's state; `deviceEventsStore` shows this device's conflicts, rejections and
//   set-aside operations live from IndexedDB.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { OWNER, api, startServer } from './harness.js';
import { device, eventually } from './devices.js';
import { registerOutboxSync, outboxSyncTag, requestOutboxSync } from '../src/sw.js';
import { Dexie, deviceEventsStore, syncStateStore } from '../src/index.js';

// Dexie's liveQuery runs only where a default IndexedDB exists (a browser, or `fake-indexeddb/auto` in Node); each
// test device here has its own, so give Dexie a default one as a page would have.
Dexie.dependencies.indexedDB ??= new IDBFactory();
Dexie.dependencies.IDBKeyRange ??= IDBKeyRange;

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

/** A sync event as a service worker receives it: `tag`, and `waitUntil` collecting what it must wait for. */
function syncEvent(tag) {
  const event = new Event('sync');
  event.tag = tag;
  event.held = [];
  event.waitUntil = (p) => event.held.push(p);
  return event;
}

async function customerOnServer(token, id) {
  let since = '0';
  for (;;) {
    const { body } = await api(server, token, 'GET', `/v1/scopes/retail/changes?since=${since}&collections=customers`);
    const hit = body.changes.findLast((c) => c.key === id);
    if (hit) return hit.op === 'upsert' ? hit.data : null;
    since = body.cursor;
    if (!body.has_more) return undefined;
  }
}

test('a Background Sync event replays the scope outbox from the stored database, with no page open', async () => {
  const token = server.token(OWNER, 'sw-phone');
  const indexedDB = new IDBFactory();
  // The page: three writes while offline, then the page closes.
  const page = await device(server, token, { indexedDB });
  page.net.offline = true;
  for (const n of [1, 2, 3]) await page.client.create('customers', { id: `sw-${n}`, name: `Offline ${n}` });
  await assert.rejects(page.client.push({ maxAttempts: 1 }), { code: 'network' });
  assert.equal(page.client.state.outbox, 3);
  await page.client.close();

  const worker = new EventTarget();
  const replays = [];
  const off = registerOutboxSync(worker, { indexedDB, IDBKeyRange, onReplay: (scope, err) => replays.push({ scope, err }) });
  const other = syncEvent('someone-elses-tag');
  worker.dispatchEvent(other);
  assert.equal(other.held.length, 0, 'other tags are left to the app');

  const event = syncEvent(outboxSyncTag('retail'));
  worker.dispatchEvent(event);
  assert.equal(event.held.length, 1, 'the worker is kept alive for the replay');
  await event.held[0];
  assert.deepEqual(replays, [{ scope: 'retail', err: null }]);
  for (const n of [1, 2, 3]) assert.equal((await customerOnServer(token, `sw-${n}`))?.name, `Offline ${n}`);

  // The page, back: its outbox is empty and the replay is recorded.
  const again = await device(server, token, { indexedDB });
  assert.equal(await again.db.local_outbox.count(), 0);
  assert.equal((await again.db.local_sync.get('lastReplay'))?.by, 'background-sync');
  await again.client.close();

  off();
  const late = syncEvent(outboxSyncTag('retail'));
  worker.dispatchEvent(late);
  assert.equal(late.held.length, 0, 'the returned function removes the listener');
});

test('requestOutboxSync registers the tag where Background Sync exists, and says so where it does not', async () => {
  const tags = [];
  assert.equal(await requestOutboxSync('retail', { sync: { register: async (t) => tags.push(t) } }), true);
  assert.deepEqual(tags, ['dukasync-outbox:retail']);
  assert.equal(await requestOutboxSync('retail', {}), false);
});

test('the stores follow the sync state and this device\'s conflicts, rejections and set-aside operations', async () => {
  const owner = await device(server, server.token(OWNER, 'stores-owner'));
  const cashier = await device(server, server.token('cashier.shop@duka.test', 'stores-cashier'));
  await owner.client.create('customers', { id: 'st-1', name: 'Original' });
  await owner.client.push();
  await cashier.client.pull();

  const state = syncStateStore(cashier.client);
  let notified = 0;
  const offState = state.subscribe(() => notified++);
  const initial = state.getSnapshot();
  assert.equal(state.getSnapshot(), initial, 'an unchanged state is the same object');

  const events = deviceEventsStore(cashier.client);
  const offEvents = events.subscribe(() => {});
  assert.equal(events.getSnapshot().loaded, false);
  await eventually('the first read', () => events.getSnapshot().loaded);
  assert.deepEqual(events.getSnapshot().conflicts, []);

  // A conflict (both edit the name from the same base), a rejection (a row the server does not have) and a
  // malformed operation (data.id differs from the key), all from the cashier's device.
  await owner.client.update('customers', 'st-1', { name: 'From the owner' });
  await owner.client.push();
  await cashier.client.update('customers', 'st-1', { name: 'From the cashier' });
  assert.equal(state.getSnapshot().outbox, 1);
  assert.ok(notified > 0);
  await cashier.client.update('customers', 'no-such-customer', { name: 'X' });
  const seq = (await cashier.db.local_sync.get('seq')).value;
  await cashier.db.transaction('rw', cashier.db.local_outbox, cashier.db.local_sync, async () => {
    await cashier.db.local_sync.put({ key: 'seq', value: seq + 1 });
    await cashier.db.local_outbox.add({ seq, op: { id: crypto.randomUUID(), type: 'put', collection: 'customers', key: 'bad-key', data: { id: 'other' } } });
  });
  await cashier.client.push();
  assert.equal(state.getSnapshot().outbox, 0);
  assert.notEqual(state.getSnapshot(), initial);

  const seen = await eventually('the events in the store', () => {
    const s = events.getSnapshot();
    return s.conflicts.length === 1 && s.rejections.length === 1 && s.deadLetters.length === 1 && s;
  });
  assert.equal(seen.conflicts[0].op.mods.name, 'From the cashier');
  assert.match(seen.conflicts[0].conflict_id, /^[0-9a-f-]{36}$/);
  assert.equal(seen.rejections[0].code, 'row_not_found');
  assert.equal(seen.deadLetters[0].code, 'key_mismatch');
  assert.equal(events.getSnapshot(), seen, 'an unchanged snapshot is the same object');

  offState();
  offEvents();
  await owner.client.close();
  await cashier.client.close();
});
