// Zero loss when the disk dies (issue 23, protocol §10.3, deploy/RUNBOOK.md "Lost disk"): devices record sales
// continuously against a server whose PostgreSQL streams its WAL to `pg_receivewal` (deploy/pitr.sh). The receiver
// stalls, then PostgreSQL's data directory is destroyed at a random moment while it runs, and the stalled receiver
// dies too (what it had been sent but not written is gone): the sales acknowledged meanwhile were only on the
// primary's disk. The runbook's restore brings the database back from the base backup and the received WAL; the
// devices reconnect and resend what the restored server lacks. Every sale any device was told was applied must
// then exist exactly once, with every journal entry balanced.
//
// The same run with the devices deleting an operation as soon as it is acknowledged (the answers' `durable_seq`
// removed on the way, as an older server would answer) loses sales: that run shows the harness catches the loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pitrCluster } from './cluster.js';
import { serviceEnv, startServerOn } from './harness.js';
import { device, eventually } from './devices.js';

const DEVICES = 4;
const PRODUCTS = ['r-maize-2kg', 'r-sugar-1kg', 'r-lpg-13kg-refill'];
const PRICES = { 'r-maize-2kg': '165.00', 'r-sugar-1kg': '180.00', 'r-lpg-13kg-refill': '2900.00' };

const random = (n) => Math.floor(Math.random() * n);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One run: sell, let the receiver lag, destroy the data directory, restore, resend. Resolves with what the run saw
 * and the server's answers to the checks.
 */
async function run(t, { naive }) {
  const cluster = await pitrCluster({ pgBin: serviceEnv().DUKASYNC_PG_BIN });
  t.after(() => cluster.stop());
  const server = await startServerOn(cluster.url, {
    DUKASYNC_DURABLE_STANDBYS: 'dukasync_wal',
    DUKASYNC_DURABLE_WAIT_MS: '300',
    // PostgreSQL is gone for a while: fail fast and let the devices retry.
    DUKASYNC_DB_MAX_CONNECTIONS: '8',
  });
  t.after(() => server.stop());

  /** op id → sale key, for every sale some device was told took effect (applied, or applied with a conflict). */
  const told = new Map();
  const keyOf = new Map();
  const created = [];
  const devices = [];
  for (let i = 0; i < DEVICES; i++) {
    const token = server.token('cashier.shop@duka.test', `till-${i}`);
    const d = await device(server, token, { confirmEveryMs: 100, longPollSecs: 2 });
    d.net.beforeAnswer = async (request, res) => {
      if (request.method !== 'POST' || !request.url.endsWith('/ops') || res.status !== 200) return;
      const answer = await res.json();
      for (const r of answer.results) {
        const status = r.status === 'duplicate' ? r.original : r.status;
        if ((status === 'applied' || status === 'conflict') && keyOf.has(r.id)) told.set(r.id, keyOf.get(r.id));
      }
    };
    if (naive) {
      // An answer without `durable_seq` reads as "durable at once": the device deletes on acknowledgement.
      const fetch = d.net.fetch;
      d.client.api.fetch = async (url, init) => {
        const res = await fetch(url, init);
        if (init?.method !== 'POST' || !String(url).endsWith('/ops') || res.status !== 200) return res;
        const { durable_seq: _, ...answer } = await res.json();
        return new Response(JSON.stringify(answer), { status: 200, headers: { 'content-type': 'application/json' } });
      };
    }
    d.client.start();
    devices.push(d);
    t.after(() => d.client.close());
  }

  let selling = true;
  const sellers = devices.map(async (d) => {
    while (selling) {
      const product = PRODUCTS[random(PRODUCTS.length)];
      const quantity = String(1 + random(3));
      const key = crypto.randomUUID();
      const amount = (Number(PRICES[product]) * Number(quantity)).toFixed(2);
      const entry = await d.client.command('record_sale', key, {
        lines: [{ product_id: product, quantity, unit_price: PRICES[product] }],
        payments: [{ method: random(2) ? 'cash' : 'mpesa', amount }],
      });
      keyOf.set(entry.op.id, key);
      created.push(key);
      d.client.nudge();
      await sleep(10 + random(40)); // a till's pace, not a wait for anything
    }
  });

  // Sales flow and are confirmed durable.
  await eventually('sales acknowledged on every device', () => told.size >= 5 * DEVICES, 30000);
  // The receiver stalls, sales go on being acknowledged without being held by it.
  await cluster.receiver.pause();
  const destroyAfter = told.size + 3 + random(20);
  await eventually('sales acknowledged while the receiver lags', () => told.size >= destroyAfter, 30000);
  const unconfirmed = devices.reduce((n, d) => n + d.client.state.unconfirmed, 0);
  // The disk dies at a moment of the run's choosing: the data directory goes while PostgreSQL runs.
  const destroyedAt = Date.now();
  await cluster.destroy();
  const toldBeforeDestroy = new Map(told);
  // The stalled receiver never writes what it had been sent: without this, resumed, it would (from its socket
  // buffers), and the restore would often lack nothing.
  process.kill(cluster.receiver.pid(), 'SIGKILL');

  // Hold the devices off while the restored database is inspected, so it shows the recovery point.
  for (const d of devices) d.net.offline = true;
  const restore = await cluster.restore();
  const present = new Set(
    (await cluster.psql("SELECT op_id FROM journal_entries WHERE kind = 'sale'", { db: 'dukasync' })).split('\n').filter(Boolean),
  );
  const lost = [...toldBeforeDestroy.keys()].filter((id) => !present.has(id));
  for (const d of devices) d.net.offline = false;

  // Sales go on after the restore; then the devices drain their outboxes and have every operation confirmed.
  await sleep(300);
  selling = false;
  await Promise.all(sellers);
  for (const d of devices) d.client.nudge();
  // A device that deleted what the server lost cannot close the gap in its sequence (protocol §10, "After a
  // server restore"): it stops at 409 sequence_gap.
  const settled = (d) =>
    (d.client.state.outbox === 0 && d.client.state.unconfirmed === 0) || (naive && d.client.state.error?.code === 'sequence_gap');
  await eventually('every device has sent everything and had it confirmed', () => devices.every(settled), 60000);

  const sql = (q) => cluster.psql(q, { db: 'dukasync' });
  const counts = new Map(
    (await sql("SELECT op_id, count(*) FROM journal_entries WHERE kind = 'sale' GROUP BY op_id"))
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('|'))
      .map(([id, n]) => [id, Number(n)]),
  );
  const sales = new Set((await sql("SELECT key FROM records WHERE scope_id = 'retail' AND collection = 'sales'")).split('\n').filter(Boolean));
  const unbalanced = await sql(
    'SELECT count(*) FROM (SELECT entry_id FROM journal_lines GROUP BY scope_id, entry_id HAVING sum(debit) <> sum(credit)) u',
  );
  return { told, toldBeforeDestroy, unconfirmed, lost, restore, destroyedAt, counts, sales, created, unbalanced };
}

test('the data directory dies while devices sell: every sale a device was told was applied exists once after the restore', async (t) => {
  const r = await run(t, { naive: false });
  t.diagnostic(
    `recovery point: ${r.lost.length} of ${r.toldBeforeDestroy.size} acknowledged sales were not in the restored database ` +
      `(${r.unconfirmed} unconfirmed on the devices at the destroy); restore ${r.restore.ms} ms ` +
      `(pitr.sh restore ${r.restore.restoreMs} ms, recovery ${r.restore.recoveryMs} ms, then a new base backup)`,
  );
  assert.ok(r.unconfirmed > 0, 'the run had acknowledged sales that only the primary held when the disk died');
  assert.ok(r.lost.length > 0, 'the restored database lacked some of them: the devices had to resend');
  const missing = [...r.told.keys()].filter((id) => r.counts.get(id) !== 1);
  assert.deepEqual(missing.map((id) => [id, r.counts.get(id) ?? 0]), [], 'every sale a device was told took effect exists exactly once');
  assert.ok([...r.counts.values()].every((n) => n === 1), 'no sale was posted twice');
  assert.deepEqual(r.created.filter((key) => !r.sales.has(key)), [], 'every sale the devices recorded reached the server');
  assert.equal(r.sales.size, r.created.length);
  assert.equal(r.unbalanced, '0', 'every journal entry balances');
});

test('the same run with devices that delete on acknowledgement loses sales (the harness sees the loss)', async (t) => {
  const r = await run(t, { naive: true });
  const missing = [...r.told.keys()].filter((id) => r.counts.get(id) !== 1);
  t.diagnostic(`${missing.length} acknowledged sales lost by devices that did not keep them`);
  assert.ok(r.lost.length > 0, 'the restore lacked acknowledged sales');
  assert.ok(missing.length > 0, 'and with nothing kept on the devices, they are gone for good');
  assert.equal(r.unbalanced, '0');
});
