// The ERP's writes reach a Dexie device (issue 21): a row written with `dukasync_api.put` in a committed SQL
// transaction (what the Django helper runs inside `transaction.atomic()`), and a plain INSERT/UPDATE/DELETE of a
// table with a capture trigger (`dukasync capture install`, what a Django ORM save does) land in the device's
// IndexedDB; a rolled-back transaction never does. Real Dexie on fake-indexeddb, the real server, psql.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './harness.js';
import { device, eventually } from './devices.js';

let server;
let cashierToken;

before(async () => {
  server = await startServer();
  cashierToken = server.token('cashier.water@duka.test', 'water-till');
  // The ERP's own table, as Django's migration creates it, and the capture trigger an operator installs.
  server.sql(`CREATE TABLE erp_product (id bigserial PRIMARY KEY, business varchar(40) NOT NULL,
              name varchar(200) NOT NULL, price numeric(12,2) NOT NULL, active boolean NOT NULL DEFAULT true)`);
  server.cli('capture', 'install', '--table', 'erp_product', '--collection', 'products', '--key', 'id',
    '--scope-column', 'business', '--columns', 'name,price,active', '--allow-device-writes');
});
after(() => server?.stop());

/** Pulls until `check()` holds (bounded): the device's own pull loop, observed through its Dexie tables. */
async function pullUntil(client, what, check) {
  return eventually(what, async () => {
    await client.pull();
    return check();
  });
}

test('a committed SQL write reaches the Dexie device, a rolled-back one never does', async () => {
  const { client, db } = await device(server, cashierToken, { scope: 'water' });
  await client.pull();
  server.sql(`BEGIN;
    SELECT dukasync_api.put('water', 'customers', 'erp-rolled-back', '{"id": "erp-rolled-back", "name": "Never"}');
    ROLLBACK;`);
  server.sql(`BEGIN;
    SELECT dukasync_api.put('water', 'customers', 'erp-committed',
                            '{"id": "erp-committed", "name": "Wambui", "credit_limit": "2000.00"}', 'django:test');
    COMMIT;`);
  const row = await pullUntil(client, 'the committed write in Dexie', () => db.customers.get('erp-committed'));
  assert.deepEqual(row, { id: 'erp-committed', name: 'Wambui', credit_limit: '2000.00' });
  // Applied in commit order per scope: the rolled-back write, had it been queued, would be in by now.
  assert.equal(await db.customers.get('erp-rolled-back'), undefined);
  assert.equal(server.sql(`SELECT count(*) FROM dukasync_api.pending_writes`).trim(), '0');
});

test("a captured table's insert, update and delete reach the Dexie device", async () => {
  const { client, db } = await device(server, cashierToken, { scope: 'water' });
  await client.pull();
  const id = server.sql(`INSERT INTO erp_product (business, name, price) VALUES ('water', 'Mandazi', 20.5)
                         RETURNING id`).trim();
  const row = await pullUntil(client, 'the inserted product in Dexie', () => db.products.get(id));
  assert.deepEqual(row, { id, name: 'Mandazi', price: '20.50', active: true });

  server.sql(`UPDATE erp_product SET price = 25 WHERE id = ${id}`);
  await pullUntil(client, 'the new price in Dexie', async () => (await db.products.get(id))?.price === '25.00');

  server.sql(`DELETE FROM erp_product WHERE id = ${id}`);
  await pullUntil(client, 'the product gone from Dexie', async () => (await db.products.get(id)) === undefined);
});
