// Collections declared in a file (issue 21): adding one is an edit of the file and a restart, no Rust and no
// migration, and the client builds its Dexie schema from `GET /v1/collections` (no hand-kept copy). A device that
// synced before the edit upgrades its Dexie database on its next open, gets the new table and its index, and pulls
// everything again so nothing the old definitions skipped is missing; its outbox survives. The new collection's
// JSON Schema is enforced on the server. Real server binary, real Dexie on fake-indexeddb.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { ROOT, api, startServer } from './harness.js';
import { device, eventually } from './devices.js';
import { SyncClient } from '../src/client.js';

// The shipped file plus one collection, as an operator would add it.
const DELIVERIES = `
[[collection]]
name = "water_deliveries"
key = "id"
writer = "device"
rights = { create = ["owner", "manager", "cashier"], update = ["owner", "manager"], delete = ["owner"] }
conflict_policy = "server_wins"
indexes = ["route", "[route+day]"]
[collection.schema]
type = "object"
required = ["id", "route", "litres"]
properties.litres = { type = "string", pattern = '^[0-9]+(\\.[0-9]+)?$' }
`;

let server;
let file;

before(async () => {
  server = await startServer();
  const dir = mkdtempSync(path.join(tmpdir(), 'dukasync-collections-'));
  file = path.join(dir, 'collections.toml');
  writeFileSync(file, readFileSync(path.join(ROOT, 'deploy', 'collections.toml'), 'utf8') + DELIVERIES);
});
after(() => server?.stop());

test('a collection added to the file reaches Dexie after a restart, and devices that synced before catch up', async () => {
  const token = server.token('owner@duka.test', 'owner-phone');
  const indexedDB = new IDBFactory();
  const open = () =>
    SyncClient.open({ scope: 'water', token, baseUrl: server.url, indexedDB, IDBKeyRange, backoff: { baseMs: 20, maxMs: 200 } });

  // Before the edit: the built-in definitions, no such table.
  let phone = await open();
  await phone.pull();
  const products = await phone.db.products.count();
  assert.ok(products > 0, 'the demo products were pulled');
  assert.equal(phone.db.tables.some((t) => t.name === 'water_deliveries'), false);
  const versionBefore = phone.db.verno;
  const oldDefinitions = (await phone.db.local_sync.get('collections')).value;
  // A write queued offline before the restart must survive the schema upgrade.
  await phone.put('customers', { id: 'c-queued', name: 'Queued before the upgrade' });
  await phone.close();

  // The edit and a restart: the same database, no migration.
  await server.restart({ DUKASYNC_COLLECTIONS_FILE: file });
  const served = await api(server, token, 'GET', '/v1/collections');
  assert.equal(served.status, 200);
  const def = served.body.collections.find((c) => c.name === 'water_deliveries');
  assert.deepEqual(def.indexes, ['route', '[route+day]']);

  // A second device (a cashier) writes a delivery; the server keeps it in the feed.
  const cashier = await device(server, server.token('cashier.water@duka.test', 'water-till'), { scope: 'water' });
  await cashier.client.create('water_deliveries', { id: 'd-1', route: 'Kilimani', day: '2026-12-04', litres: '400' });
  await cashier.client.push();
  assert.equal(await cashier.client.db.local_outbox.count(), 0, 'the delivery was accepted');

  // The first phone, still running a build that knows only the old definitions (as when its fetch of them failed),
  // pulls past the delivery: it skips the change of a collection it does not know (§1).
  phone = await SyncClient.open({ scope: 'water', token, baseUrl: server.url, indexedDB, IDBKeyRange, collections: oldDefinitions });
  assert.equal(phone.db.verno, versionBefore);
  await phone.pull();
  await phone.close();

  // Reopened with the server's definitions: its Dexie version goes up, the table and compound index exist, and it
  // pulls everything again, so the delivery it skipped arrives (without the reset, it never would).
  phone = await SyncClient.open({ scope: 'water', token, baseUrl: server.url, indexedDB, IDBKeyRange });
  assert.equal(phone.db.verno, versionBefore + 1);
  const table = phone.db.table('water_deliveries');
  assert.deepEqual(table.schema.indexes.map((i) => i.name).sort(), ['[route+day]', 'route']);
  assert.equal(await phone.db.local_outbox.count(), 1, 'the queued write survived the upgrade');
  await phone.pull();
  const byRoute = await table.where('[route+day]').equals(['Kilimani', '2026-12-04']).toArray();
  assert.deepEqual(byRoute, [{ id: 'd-1', route: 'Kilimani', day: '2026-12-04', litres: '400' }]);
  assert.equal(await phone.db.products.count(), products, 'the reset pulled the old collections again');
  await phone.push();
  await eventually('the queued customer on the server', async () => {
    const page = await api(server, token, 'GET', '/v1/scopes/water/changes?since=0&limit=1000');
    return page.body.changes.some((c) => c.key === 'c-queued');
  });
  await phone.close();

  // Opened offline with nothing to fetch from: the stored definitions, no upgrade.
  const offline = await SyncClient.open({
    scope: 'water',
    indexedDB,
    IDBKeyRange,
    fetch: () => Promise.reject(new TypeError('fetch failed: offline')),
  });
  assert.equal(offline.db.verno, versionBefore + 1);
  assert.equal(await offline.db.table('water_deliveries').count(), 1);
  await offline.close();
  await cashier.client.close();
});

test("the new collection's schema is enforced: a bad row refuses the batch with its path, nothing written", async () => {
  const token = server.token('owner@duka.test', 'owner-phone-2');
  const head = (await api(server, token, 'GET', '/v1/scopes/water/changes?since=0&limit=1')).body.head;
  const push = await api(server, token, 'POST', '/v1/scopes/water/ops', {
    client_id: crypto.randomUUID(),
    ops: [
      { seq: 1, id: crypto.randomUUID(), type: 'create', collection: 'water_deliveries', key: 'd-ok', data: { id: 'd-ok', route: 'A', litres: '5' } },
      { seq: 2, id: crypto.randomUUID(), type: 'create', collection: 'water_deliveries', key: 'd-bad', data: { id: 'd-bad', route: 'A', litres: 5 } },
    ],
  });
  assert.equal(push.status, 400);
  assert.equal(push.body.error.code, 'schema_violation');
  assert.deepEqual(push.body.error.details, { seq: 2, index: 1, path: '/litres' });
  assert.equal((await api(server, token, 'GET', '/v1/scopes/water/changes?since=0&limit=1')).body.head, head);
});
