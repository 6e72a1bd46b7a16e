// The app's own Dexie tables beside the synced ones (`appStores`): made with the scope's database, versioned with
// it (a changed table or index raises the Dexie version like changed server definitions do), left alone by pulls,
// kept when a service worker opens the database without knowing them, and refused when their names clash with
// synced or bookkeeping tables. Real server, real Dexie on fake-indexeddb.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { startServer } from './harness.js';
import { SyncClient } from '../src/client.js';

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

test('app tables live beside the synced ones, and an added index raises the version and keeps the rows', async () => {
  const token = server.token('owner@duka.test', 'notes-phone');
  const indexedDB = new IDBFactory();
  const open = (extra) => SyncClient.open({ scope: 'retail', token, baseUrl: server.url, indexedDB, IDBKeyRange, ...extra });

  let phone = await open({ appStores: { notes: 'id, createdAt' } });
  await phone.pull();
  const products = await phone.db.table('products').count();
  assert.ok(products > 0, 'the synced tables were pulled');
  const first = phone.db.verno;
  await phone.db.table('notes').bulkPut([
    { id: 'n1', createdAt: '2026-12-01', title: 'Call the supplier' },
    { id: 'n2', createdAt: '2026-12-03', title: 'Count the sugar' },
  ]);
  const recent = await phone.db.table('notes').where('createdAt').above('2026-12-02').toArray();
  assert.deepEqual(recent.map((n) => n.id), ['n2']);
  // A synced write and a pull do not touch the app's table.
  await phone.put('customers', { id: 'c-notes', name: 'Beside the notes' });
  await phone.push();
  await phone.pull();
  assert.equal(await phone.db.table('notes').count(), 2);
  await phone.close();

  // Same declaration: same version.
  phone = await open({ appStores: { notes: 'id,createdAt' } });
  assert.equal(phone.db.verno, first, 'an unchanged declaration keeps the Dexie version');
  await phone.close();

  // An added index and a new table: a new Dexie version, rows kept, the index usable.
  phone = await open({ appStores: { notes: 'id, createdAt, title', drafts: '++n' } });
  assert.equal(phone.db.verno, first + 1);
  assert.equal(await phone.db.table('notes').count(), 2, 'the rows survived the upgrade');
  const byTitle = await phone.db.table('notes').where('title').equals('Count the sugar').toArray();
  assert.deepEqual(byTitle.map((n) => n.id), ['n2']);
  await phone.db.table('drafts').add({ text: 'half a sale' });
  assert.equal(await phone.db.table('products').count(), products, 'the synced rows survived too');
  assert.equal(await phone.db.local_outbox.count(), 0);
  await phone.close();

  // A service worker opens the database knowing nothing of the app's tables: they stay, at the same version.
  phone = await open({});
  assert.equal(phone.db.verno, first + 1);
  assert.equal(await phone.db.table('notes').where('title').equals('Call the supplier').count(), 1);
  assert.equal(await phone.db.table('drafts').count(), 1);
  await phone.close();

  // Declaring fewer tables drops the ones left out, with a new version.
  phone = await open({ appStores: { notes: 'id, createdAt, title' } });
  assert.equal(phone.db.verno, first + 2);
  assert.equal(phone.db.tables.some((t) => t.name === 'drafts'), false);
  assert.equal(await phone.db.table('notes').count(), 2);
  await phone.close();
});

test('app tables may not clash with synced or bookkeeping tables', async () => {
  const token = server.token('owner@duka.test', 'clash-phone');
  const indexedDB = new IDBFactory();
  const open = (appStores) => SyncClient.open({ scope: 'retail', token, baseUrl: server.url, indexedDB, IDBKeyRange, appStores });
  await assert.rejects(open({ customers: 'id, name' }), /app table customers clashes with the synced collection customers/);
  await assert.rejects(open({ local_notes: 'id' }), /reserved for the sync client/);
  await assert.rejects(open({ local_outbox: 'seq' }), /reserved/);
  await assert.rejects(open({ notes: '' }), /needs a Dexie store string/);
  // Nothing was half made: a valid declaration still opens.
  const phone = await open({ notes: 'id' });
  assert.ok(phone.db.tables.some((t) => t.name === 'notes'));
  await phone.close();
});
