// Durability beyond the primary (protocol §10.3): the client keeps every acknowledged operation that no standby
// holds yet, and deletes it only once an answer's `durable_seq` covers it. The server here names a standby that is
// never connected (so nothing is confirmed), then is restarted without one (so everything is). What a restore does
// with the kept operations is driven for real in disk-loss.test.js.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './harness.js';
import { device, eventually } from './devices.js';

let server;
let token;

before(async () => {
  server = await startServer({ DUKASYNC_DURABLE_STANDBYS: 'dukasync_wal_absent', DUKASYNC_DURABLE_WAIT_MS: '100' });
  token = server.token();
});

after(async () => {
  await server?.stop();
});

test('acknowledged operations stay on the device until a standby holds them, then go', async (t) => {
  const { client, db } = await device(server, token, { confirmEveryMs: 50 });
  t.after(() => client.close());
  await client.create('customers', { id: 'dur-1', name: 'Wanjiku', credit_limit: '0.00' });
  await client.create('customers', { id: 'dur-2', name: 'Otieno', credit_limit: '0.00' });
  await client.push();

  // Applied on the server, out of the outbox, but kept: no standby has them.
  assert.equal(server.sql("SELECT count(*) FROM records WHERE collection = 'customers' AND key LIKE 'dur-%'").trim(), '2');
  assert.equal(await db.local_outbox.count(), 0);
  assert.deepEqual((await db.local_unconfirmed.toArray()).map((e) => [e.seq, e.op.key]), [[1, 'dur-1'], [2, 'dur-2']]);
  assert.deepEqual([client.state.outbox, client.state.unconfirmed], [0, 2]);
  assert.equal(await client.confirm(), 2, 'asking again confirms nothing while no standby is connected');

  // The server now has no standby to wait for (the primary's disk is all there is): the live loop asks again on
  // its own and the kept entries go.
  client.start();
  await server.restart({ DUKASYNC_DURABLE_STANDBYS: '' });
  client.api.baseUrl = server.url;
  await eventually('the kept operations are confirmed', () => client.state.unconfirmed === 0);
  assert.equal(await db.local_unconfirmed.count(), 0);
  // Nothing was sent twice: the server's sequence for this outbox is still 2, its rows still 2.
  assert.equal(server.sql("SELECT max(last_seq) FROM replay_clients").trim(), '2');
});
