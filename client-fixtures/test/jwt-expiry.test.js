// A token that expires in the middle of a long outbox (issue 20): the app's fetchCredentials hands out short-lived
// JWTs signed with the ERP's HS256 secret (what the Django token view does, protocol §3.2); the first one expires
// after the first batch was acknowledged and before the second is sent. The client meets the server's 401, asks
// the app once for a fresh token, sends the batch again, and every queued operation lands exactly once, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { api, startServer } from './harness.js';
import { device, eventually } from './devices.js';

const SECRET = 'js-tests-only-secret-of-at-least-32-bytes';
const AUDIENCE = 'dukasync-js-tests';
const ERP_USER = 'erp-user-77';

let server;

before(async () => {
  // No leeway: a JWT is refused from its `exp` on, so the moment it expires is the moment the test waits for.
  server = await startServer({
    DUKASYNC_JWT_HS256_SECRET: SECRET,
    DUKASYNC_JWT_AUDIENCE: AUDIENCE,
    DUKASYNC_JWT_LEEWAY_SECS: '0',
  });
  server.cli('user-add', '--email', 'jwt.cashier@duka.test', '--name', 'JWT Cashier', '--scope', 'retail', '--role',
    'cashier', '--external-id', ERP_USER);
});
after(() => server?.stop());

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

/** An HS256 JWT for the ERP user on `device`, valid for `seconds` from now. */
function sign(device, seconds) {
  const iat = Math.floor(Date.now() / 1000);
  const claims = { sub: ERP_USER, device, aud: AUDIENCE, iat, exp: iat + seconds };
  const unsigned = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', SECRET).update(unsigned).digest('base64url');
  return { token: `${unsigned}.${signature}`, exp: claims.exp };
}

test('a JWT that expires mid-outbox is refreshed on its 401 and every operation lands once, in order', async () => {
  const phone = `pwa-${randomUUID()}`;
  const issued = [];
  const a = await device(server, null, {
    batchSize: 20,
    // The first token lives 5 s (long enough for the first batch); the ones after it an hour. No `expiresAt` is
    // given, so the client learns of the expiry only from the server's 401.
    fetchCredentials: async () => {
      issued.push(sign(phone, issued.length === 0 ? 5 : 3600));
      return { token: issued.at(-1).token };
    },
  });
  const keys = [];
  for (let i = 1; i <= 100; i++) {
    keys.push(`jwt-${String(i).padStart(3, '0')}`);
    await a.client.create('customers', { id: keys.at(-1), name: `Customer ${i}`, credit_limit: '0.00' });
  }
  // After the first batch's answer, hold the client until the first token has expired on the server's clock.
  let held = false;
  a.net.beforeAnswer = async (req) => {
    if (req.method !== 'POST' || held) return;
    held = true;
    const expired = issued[0].exp * 1000;
    await eventually('the first token to expire', async () => Date.now() >= expired && (await api(server, issued[0].token, 'GET', '/v1/scopes')).status === 401);
  };
  await a.client.push();

  const posts = a.net.sent.filter((r) => r.method === 'POST');
  assert.equal(posts[0].token, issued[0].token);
  assert.equal(posts[0].status, 200, 'the first batch went through with the first token');
  assert.ok(posts.some((r) => r.token === issued[0].token && r.status === 401), 'a later batch met the expired token');
  assert.equal(issued.length, 2, 'one refresh, on the 401');
  assert.equal(await a.db.local_outbox.count(), 0);
  assert.equal(await a.db.local_dead_letter.count(), 0);

  // The server holds each operation once, in sequence order.
  const owner = server.token();
  const seen = [];
  for (let since = '0'; ; ) {
    const page = (await api(server, owner, 'GET', `/v1/scopes/retail/changes?since=${since}&limit=1000`)).body;
    seen.push(...page.changes.filter((c) => c.key.startsWith('jwt-')).map((c) => c.key));
    if (!page.has_more) break;
    since = page.cursor;
  }
  assert.deepEqual(seen, keys);
  await a.client.close();
});
