// Enrollment by pairing code (protocol §3.3): an owner creates a code, a new phone redeems it with no token,
// opens its scope with the token it got, and syncs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../src/api.js';
import { SyncClient } from '../src/client.js';
import { OWNER, api, startServer } from './harness.js';
import { device } from './devices.js';

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

test('a phone pairs with a code, then pushes and pulls with the token it got', async () => {
  const owner = server.token(OWNER, 'owner-phone');
  const created = await api(server, owner, 'POST', '/v1/scopes/retail/pairing_codes', {
    email: 'pair.js@duka.test',
    name: 'Zawadi',
    role: 'cashier',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  const issued = await SyncClient.pair({ baseUrl: server.url, code: created.body.code, deviceName: 'zawadi-phone' });
  assert.match(issued.token, /^dks_[0-9a-f]{64}$/);
  assert.deepEqual(issued.scopes, [{ scope: 'retail', role: 'cashier' }]);
  await assert.rejects(
    SyncClient.pair({ baseUrl: server.url, code: created.body.code }),
    (err) => err instanceof ApiError && err.status === 400 && err.code === 'invalid_pairing_code',
  );

  const { client } = await device(server, issued.token, { scope: 'retail' });
  await client.pull();
  await client.create('customers', { id: 'paired-1', name: 'Baraka', credit_limit: '0.00' });
  await client.push({ maxAttempts: 3 });
  assert.equal(client.state.outbox, 0);
  const { status, body } = await api(server, owner, 'GET', '/v1/scopes/retail/changes?since=0&collections=customers&limit=1000');
  assert.equal(status, 200);
  assert.ok(body.changes.some((c) => c.key === 'paired-1' && c.data.name === 'Baraka'), 'the paired device pushed');
});
