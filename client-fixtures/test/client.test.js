// The reference client (real Dexie on fake-indexeddb) against a real server: offline writes, lost answers,
// convergence of two devices, atomic pages, resets, conflicts, rejections, the live loop, MessagePack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { ApiError } from '../src/api.js';
import { replayOutbox } from '../src/sw.js';
import { OWNER, api, startServer } from './harness.js';
import { collect, device, eventually } from './devices.js';

const CASHIER = 'cashier.shop@duka.test';
let server;
let ownerToken;
let cashierToken;

before(async () => {
  server = await startServer();
  ownerToken = server.token(OWNER, 'owner-phone');
  cashierToken = server.token(CASHIER, 'shop-till');
});
after(() => server?.stop());

async function serverRows(collection, scope = 'retail') {
  const rows = new Map();
  let since = '0';
  for (;;) {
    const { status, body } = await api(server, ownerToken, 'GET', `/v1/scopes/${scope}/changes?since=${since}&collections=${collection}`);
    assert.equal(status, 200);
    for (const c of body.changes) {
      if (c.op === 'upsert') rows.set(c.key, c.data);
      else rows.delete(c.key);
    }
    since = body.cursor;
    if (!body.has_more) return rows;
  }
}

async function head(scope = 'retail') {
  const { body } = await api(server, ownerToken, 'GET', '/v1/scopes');
  return body.scopes.find((s) => s.id === scope).head;
}

async function catchUpAndVerify(client) {
  const page = await client.pull();
  const v = await client.verify(page.head);
  assert.deepEqual(v.ok, true, `verify: ${JSON.stringify(v)}`);
  return page;
}

test('two devices write offline, replay, and converge on the server checksum', async () => {
  const a = await device(server, ownerToken);
  const b = await device(server, cashierToken);
  await catchUpAndVerify(a.client);
  await catchUpAndVerify(b.client);

  a.net.offline = true;
  b.net.offline = true;
  await a.client.create('customers', { id: 'conv-a1', name: 'Wanjiku', credit_limit: '1000.00' });
  await a.client.put('customers', { id: 'conv-a2', name: 'Otieno', credit_limit: '0.00' });
  await a.client.update('customers', 'retail-cust-1', { phone: '+254711111111' });
  await b.client.create('customers', { id: 'conv-b1', name: 'Achieng', credit_limit: '250.00' });
  await b.client.delete('customers', 'retail-cust-2');
  // Offline: the writes are visible locally at once and stay queued.
  assert.equal((await a.db.customers.get('retail-cust-1')).phone, '+254711111111');
  await assert.rejects(a.client.pushOnce(), (e) => e instanceof ApiError && e.retryable && e.status === 0);
  assert.equal(await a.db.local_outbox.count(), 3);
  assert.equal(await b.db.local_outbox.count(), 2);

  a.net.offline = false;
  b.net.offline = false;
  await a.client.push();
  await b.client.push();
  assert.equal(await a.db.local_outbox.count(), 0);
  assert.equal(await b.db.local_outbox.count(), 0);
  const pa = await catchUpAndVerify(a.client);
  const pb = await catchUpAndVerify(b.client);
  assert.equal(pa.head, pb.head);

  const onServer = await serverRows('customers');
  const localA = Object.fromEntries((await a.db.customers.toArray()).map((r) => [r.id, r]));
  const localB = Object.fromEntries((await b.db.customers.toArray()).map((r) => [r.id, r]));
  assert.deepEqual(localA, Object.fromEntries(onServer));
  assert.deepEqual(localB, localA);
  assert.equal(localA['conv-b1'].name, 'Achieng');
  assert.equal(localA['retail-cust-1'].phone, '+254711111111');
  assert.ok(!('retail-cust-2' in localA));
  await a.client.close();
  await b.client.close();
});

test('an answer lost after the server applied the batch is replayed and applied once', async () => {
  const a = await device(server, ownerToken);
  await catchUpAndVerify(a.client);
  for (const n of [1, 2, 3]) await a.client.create('customers', { id: `lost-${n}`, name: `Customer ${n}` });
  const before = await head();

  a.net.loseAnswers = 1;
  await assert.rejects(a.client.pushOnce(), (e) => e instanceof ApiError && e.status === 0);
  // The server acted, the device does not know: nothing may be deleted from the outbox.
  assert.equal(await a.db.local_outbox.count(), 3);
  assert.equal(await head(), before + 3);

  const r = await a.client.pushOnce();
  assert.deepEqual(r.answer.results.map((x) => [x.status, x.original]), [
    ['duplicate', 'applied'],
    ['duplicate', 'applied'],
    ['duplicate', 'applied'],
  ]);
  assert.equal(r.answer.last_seq, 3);
  assert.equal(await a.db.local_outbox.count(), 0);
  assert.equal(await head(), before + 3, 'the replay changed nothing');
  await catchUpAndVerify(a.client);
  await a.client.close();
});

test('two quick edits of one row before the next pull both land, the second last, with no conflict', async () => {
  const a = await device(server, ownerToken);
  await a.client.put('products', { id: 'own-edits', name: 'Gas 6kg', price: '1.00' });
  await a.client.push();
  await catchUpAndVerify(a.client); // the row's version is now known: the base of both edits

  await a.client.update('products', 'own-edits', { price: '2.00' });
  await a.client.update('products', 'own-edits', { price: '3.00' });
  const sent = await a.db.local_outbox.orderBy('seq').toArray();
  assert.equal(sent[0].op.base_version, sent[1].op.base_version, 'both edits carry the same base');
  await a.client.push();
  assert.equal((await serverRows('products')).get('own-edits').price, '3.00');
  const { body } = await api(server, ownerToken, 'GET', '/v1/admin/conflicts?scope=retail');
  assert.deepEqual(body.conflicts.filter((c) => c.key === 'own-edits'), []);
  await catchUpAndVerify(a.client);
  assert.equal((await a.db.table('products').get('own-edits')).price, '3.00');
  await a.client.close();
});

test('a page that fails to apply leaves the cursor where it was, and the next pull applies it whole', async () => {
  const a = await device(server, ownerToken);
  const b = await device(server, ownerToken, { pageSize: 1000 });
  await catchUpAndVerify(a.client);
  await catchUpAndVerify(b.client);
  await a.client.create('customers', { id: 'page-1', name: 'First' });
  await a.client.create('customers', { id: 'page-poison', name: 'Second' });
  await a.client.push();

  const cursorBefore = (await b.db.local_sync.get('cursor')).value;
  let failing = true;
  b.db.customers.hook('creating', (key) => {
    if (failing && key === 'page-poison') throw new Error('disk full (injected)');
  });
  await assert.rejects(b.client.pullOnce(), /disk full/);
  assert.equal((await b.db.local_sync.get('cursor')).value, cursorBefore, 'the cursor did not move');
  assert.equal(await b.db.customers.get('page-1'), undefined, 'no row of the failed page was kept');

  failing = false;
  await catchUpAndVerify(b.client);
  assert.equal((await b.db.customers.get('page-poison')).name, 'Second');
  assert.equal((await b.db.customers.get('page-1')).name, 'First');
  await a.client.close();
  await b.client.close();
});

test('conflicts and rejections reach the app, and a malformed operation is set aside so the queue goes on', async () => {
  const a = await device(server, ownerToken);
  const b = await device(server, cashierToken);
  await a.client.create('customers', { id: 'cf-1', name: 'Original', phone: '+254700000009' });
  await a.client.push();
  await catchUpAndVerify(a.client);
  await catchUpAndVerify(b.client);

  // Both edit the same field from the same base version; customers are client_wins, so B's value stands.
  const conflicts = collect(b.client, 'conflict');
  await a.client.update('customers', 'cf-1', { name: 'From A' });
  await a.client.push();
  await b.client.update('customers', 'cf-1', { name: 'From B' });
  await b.client.push();
  assert.equal(conflicts.length, 1);
  assert.match(conflicts[0].conflict_id, /^[0-9a-f-]{36}$/);
  assert.equal(conflicts[0].op.mods.name, 'From B');
  assert.equal((await serverRows('customers')).get('cf-1').name, 'From B');

  // An update of a row the server does not have can never apply: rejected, and the sequence moves on.
  const rejected = collect(a.client, 'rejected');
  await a.client.update('customers', 'no-such-customer', { name: 'X' });
  // A malformed operation (data.id differs from the key) slipped into the outbox by a buggy app version.
  const seq = (await a.db.local_sync.get('seq')).value;
  await a.db.transaction('rw', a.db.local_outbox, a.db.local_sync, async () => {
    await a.db.local_sync.put({ key: 'seq', value: seq + 1 });
    await a.db.local_outbox.add({
      seq,
      op: { id: crypto.randomUUID(), type: 'put', collection: 'customers', key: 'bad-key', data: { id: 'other' } },
    });
  });
  await a.client.create('customers', { id: 'after-poison', name: 'Still synced' });
  await a.client.push();

  assert.equal(await a.db.local_outbox.count(), 0);
  assert.deepEqual(rejected.map((r) => r.code).sort(), ['key_mismatch', 'row_not_found']);
  const dead = await a.db.local_dead_letter.toArray();
  assert.equal(dead.length, 1);
  assert.equal(dead[0].code, 'key_mismatch');
  assert.equal((await serverRows('customers')).get('after-poison').name, 'Still synced');
  assert.deepEqual((await a.db.local_events.toArray()).map((e) => e.code).filter(Boolean), ['row_not_found']);
  await catchUpAndVerify(a.client);
  await a.client.close();
  await b.client.close();
});

test('a refused batch names its bad operation, which alone is set aside without resending one at a time', async () => {
  const a = await device(server, ownerToken);
  await catchUpAndVerify(a.client);
  const rejected = collect(a.client, 'rejected');
  a.net.offline = true;
  await a.client.create('customers', { id: 'named-1', name: 'Before' });
  // A string the server can never store (PostgreSQL refuses U+0000), between two good operations.
  await a.client.create('customers', { id: 'named-2', name: 'Nul\u0000Char' });
  await a.client.create('customers', { id: 'named-3', name: 'After' });
  a.net.offline = false;
  const postsBefore = a.net.posts;
  await a.client.push();

  // One refused batch naming the operation, then the other two in one batch: no bisecting.
  assert.equal(a.net.posts - postsBefore, 2);
  assert.equal(await a.db.local_outbox.count(), 0);
  const dead = await a.db.local_dead_letter.toArray();
  assert.deepEqual(dead.map((d) => [d.code, d.op.key]), [['nul_not_allowed', 'named-2']]);
  assert.deepEqual(rejected.map((r) => r.code), ['nul_not_allowed']);
  const rows = await serverRows('customers');
  assert.equal(rows.get('named-1').name, 'Before');
  assert.equal(rows.get('named-3').name, 'After');
  assert.equal(rows.has('named-2'), false);
  // The refused row was written locally before it was sent: the divergence check finds it, and the reset drops it.
  const resets = collect(a.client, 'reset');
  const page = await a.client.pull();
  assert.deepEqual(await a.client.verify(page.head), { ok: false, mismatched: ['customers'] });
  assert.deepEqual(resets, [{ reason: 'divergence' }]);
  await catchUpAndVerify(a.client);
  assert.equal(await a.db.customers.get('named-2'), undefined);
  await a.client.close();
});

test('a checksum mismatch resets and reconverges', async () => {
  const a = await device(server, ownerToken);
  const page = await catchUpAndVerify(a.client);
  const resets = collect(a.client, 'reset');
  // Local corruption (a bug, a manual edit) that no feed change would ever repair.
  const sugar = await a.db.products.get('r-sugar-1kg');
  await a.db.products.put({ ...sugar, price: '1.00' });
  const v = await a.client.verify(page.head);
  assert.deepEqual(v, { ok: false, mismatched: ['products'] });
  assert.deepEqual(resets, [{ reason: 'divergence' }]);
  await catchUpAndVerify(a.client);
  assert.equal((await a.db.products.get('r-sugar-1kg')).price, '180.00');
  await a.client.close();
});

test('a cursor older than a compaction gets 410: the device resets, keeps its outbox, and reconverges', async () => {
  const a = await device(server, ownerToken);
  const b = await device(server, ownerToken);
  await catchUpAndVerify(a.client);
  a.net.offline = true;
  await a.client.create('customers', { id: 'kept-offline', name: 'Written offline' });
  for (let i = 0; i < 5; i++) await b.client.update('customers', 'retail-cust-1', { name: `Mama Njoki ${i}` });
  await b.client.push();
  server.cli('compact', '--scope', 'retail', '--below', String(await head()));

  a.net.offline = false;
  const resets = collect(a.client, 'reset');
  await a.client.pull();
  assert.deepEqual(resets, [{ reason: 'expired' }]);
  assert.equal(await a.db.local_outbox.count(), 1, 'the outbox survived the reset');
  assert.equal((await a.db.customers.get('kept-offline')).name, 'Written offline', 'pending writes stay visible');
  assert.equal((await a.db.customers.get('retail-cust-1')).name, 'Mama Njoki 4');
  await a.client.push();
  await catchUpAndVerify(a.client);
  assert.equal((await serverRows('customers')).get('kept-offline').name, 'Written offline');
  await a.client.close();
  await b.client.close();
});

test('the live loop pushes local writes and long-polls the other device’s writes', async (t) => {
  const a = await device(server, ownerToken);
  const b = await device(server, cashierToken);
  // Stopped even when an assertion fails: a live loop left running keeps the test process alive.
  t.after(() => Promise.all([a.client.close(), b.client.close()]));
  a.client.start();
  b.client.start();
  await b.client.create('customers', { id: 'live-1', name: 'Arrives by long-poll' });
  const row = await eventually('live-1 on device A', () => a.db.customers.get('live-1'));
  assert.equal(row.name, 'Arrives by long-poll');
  // The state follows the table: it is updated once the acknowledged entries' deletion has committed.
  await eventually('B outbox empty', async () => (await b.db.local_outbox.count()) === 0 && b.client.state.outbox === 0);
});

test('the same client over MessagePack pulls, pushes and verifies', async () => {
  const a = await device(server, ownerToken, { encoding: 'msgpack' });
  await catchUpAndVerify(a.client);
  await a.client.create('customers', { id: 'mp-1', name: 'Über MessagePack', credit_limit: '10.00' });
  await a.client.push();
  await catchUpAndVerify(a.client);
  assert.equal((await serverRows('customers')).get('mp-1').name, 'Über MessagePack');
  await a.client.close();
});

test('floats and server-only collections are refused before they reach the outbox', async () => {
  const a = await device(server, ownerToken);
  await assert.rejects(a.client.put('customers', { id: 'f', credit_limit: 10.5 }), /floats/);
  await assert.rejects(a.client.put('sales', { id: 's' }), /server only/);
  assert.equal(await a.db.local_outbox.count(), 0);
  await a.client.close();
});

test('a sale is a command: queued offline, run by the server, its rows arrive through the feed', async () => {
  const a = await device(server, cashierToken);
  await catchUpAndVerify(a.client);
  a.net.offline = true;
  const key = crypto.randomUUID();
  await a.client.command('record_sale', key, {
    sold_at: new Date().toISOString(),
    lines: [{ product_id: 'r-maize-2kg', quantity: '3', unit_price: '165.00' }],
    payments: [{ method: 'mpesa', amount: '495.00', reference: 'QX12ABC' }],
  });
  assert.equal(await a.db.sales.get(key), undefined, 'a command has no local effect');
  // Sold more LPG than the shop holds, offline: still applied (the money was taken), flagged as a conflict.
  const conflicts = collect(a.client, 'conflict');
  await a.client.command('record_sale', crypto.randomUUID(), {
    lines: [{ product_id: 'r-lpg-13kg-refill', quantity: '101', unit_price: '2900.00' }],
    payments: [{ method: 'cash', amount: '292900.00' }],
  });
  a.net.offline = false;
  await a.client.push();
  await catchUpAndVerify(a.client);

  const sale = await a.db.sales.get(key);
  assert.equal(sale.status, 'posted');
  assert.equal(sale.total, '495.00');
  const entry = await a.db.journal_entries.get(sale.journal_entry_id);
  const cents = (s) => BigInt(s.replace('.', ''));
  const sum = (side) => entry.lines.reduce((t, l) => t + cents(l[side]), 0n);
  assert.equal(sum('debit'), sum('credit'), 'the entry balances');
  assert.deepEqual(entry.lines.find((l) => l.account === '1010'), { account: '1010', debit: '495.00', credit: '0.00' });
  assert.equal((await a.db.stock_levels.get('r-maize-2kg')).quantity, '97');
  assert.equal((await a.db.stock_levels.get('r-lpg-13kg-refill')).quantity, '-1');
  assert.equal(conflicts.length, 1);
  assert.equal(conflicts[0].op.command, 'record_sale');
  await a.client.close();
});

test('a long-poll the server ends at once (its bounds, protocol §7.5) is not asked again at once', async () => {
  const busy = await startServer({ DUKASYNC_MAX_LONGPOLLS_PER_SCOPE: '1' });
  const token = busy.token(OWNER, 'owner-phone');
  const other = busy.token(CASHIER, 'shop-till');
  const { body } = await api(busy, other, 'GET', '/v1/scopes/retail/changes?since=0&limit=1');
  const head = await api(busy, other, 'GET', `/v1/scopes/retail/changes?since=${encodeURIComponent(body.cursor)}&limit=10000`);
  // Another device takes the scope's only long-poll place.
  const hold = new AbortController();
  const parked = fetch(`${busy.url}/v1/scopes/retail/changes?since=${encodeURIComponent(head.body.cursor)}&wait=30`, {
    headers: { Authorization: `Bearer ${other}` },
    signal: hold.signal,
  }).catch(() => null);
  const waiters = async () => {
    const text = await (await fetch(`${busy.url}/metrics`)).text();
    return Number(text.match(/^dukasync_longpoll_waiters (\d+)/m)?.[1] ?? 0);
  };
  await eventually('the other device parked', async () => (await waiters()) === 1);

  const a = await device(busy, token, { longPollSecs: 25 });
  a.client.start();
  await eventually('four long-polls sent', () => a.net.longPolls.length >= 4, 20000);
  const t = a.net.longPolls;
  assert.ok(t[3] - t[0] >= 3000, `long-polls at +${t.map((x) => x - t[0]).join(', +')} ms: each ended at once, then asked again without waiting`);
  await a.client.stop();
  await a.client.close();
  hold.abort();
  await parked;
  busy.stop();
});


test("an outbox the service worker replayed reads 0 on the page's client, and nudge() ends a push's backoff", { timeout: 20000 }, async () => {
  const indexedDB = new IDBFactory();
  // The page's client: its push fails offline and then waits a minute before retrying.
  const page = await device(server, ownerToken, { indexedDB, backoff: { baseMs: 60000, maxMs: 60000 } });
  page.net.offline = true;
  await page.client.create('customers', { id: 'sw-replayed-1', name: 'Replayed by the worker', credit_limit: '0.00' });
  const pushing = page.client.push();
  await eventually('the offline push failed', () => page.client.state.online === false);

  // Background Sync: the service worker opens the same database (the stored token) and sends the outbox.
  await replayOutbox('retail', { baseUrl: server.url, indexedDB, IDBKeyRange, collections: [...page.client.collections.values()] });
  assert.equal(await page.db.local_outbox.count(), 0);
  assert.ok((await serverRows('customers')).has('sw-replayed-1'));
  assert.equal(page.client.state.outbox, 1, "the page's client has not looked yet");

  // Back online: the page nudges its client, which stops waiting and finds nothing left to send.
  page.net.offline = false;
  page.client.nudge();
  await pushing;
  assert.equal(page.client.state.outbox, 0);
  assert.equal(page.net.posts, 0, 'nothing was sent twice');
  await page.client.close();
});

test('catching up asks for large pages, a long-poll for the usual one', async () => {
  const a = await device(server, ownerToken);
  const pulls = () => a.net.sent.filter((r) => r.method === 'GET' && r.url.includes('/changes?')).map((r) => new URL(r.url).searchParams);
  await a.client.pullOnce();
  await a.client.pullOnce({ wait: 1 });
  const [catchUp, longPoll] = pulls();
  // Each page costs a round trip on a mobile link: 10 instead of 200 for a 100,000-change scope.
  assert.equal(catchUp.get('limit'), '10000');
  assert.equal(catchUp.get('wait'), '0');
  assert.equal(longPoll.get('limit'), null, 'the server default page for a long-poll');
  await a.client.close();

  const b = await device(server, ownerToken, { pageSize: 7 });
  await b.client.pullOnce();
  assert.equal(new URL(b.net.sent.find((r) => r.url.includes('/changes?')).url).searchParams.get('limit'), '7', 'pageSize alone sets both');
  await b.client.close();
});
