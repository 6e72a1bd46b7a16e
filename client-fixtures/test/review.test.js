// The owner's review on the phone, in headless Chromium against a real server behind the demo proxy: a cashier's
// phone sells more than the stock while offline and comes back online; the owner's phone (a second profile) opens
// the review, sees the oversold sale with its kind and detail and only the decision its kind allows, accepts it;
// the cashier's phone shows the decision, which reached it through the feed. A field conflict shows its diff and
// its three decisions, and an error the page shows carries the server's request id.
// Screenshots: artifacts/review-*.png. If Chromium cannot start, this fails; it never skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OWNER, api } from './harness.js';
import { eventually } from './devices.js';
import { ARTIFACTS, phonesBehindProxy } from './phones.js';

const CASHIER = 'cashier.shop@duka.test';
const LPG = 'r-lpg-13kg-refill';

let stack;
let server;
let proxy;
/** Starts (or restarts) a phone: see phones.js. */
const launch = (profile, options) => stack.launch(profile, options);

before(async () => {
  stack = await phonesBehindProxy('review');
  ({ server, proxy } = stack);
});

after(() => stack?.stop());

/** Sends operations as a device of its own (a new client id each call). */
async function push(token, ops) {
  const r = await api(server, token, 'POST', '/v1/scopes/retail/ops', {
    client_id: crypto.randomUUID(),
    ops: ops.map((op, i) => ({ seq: i + 1, id: crypto.randomUUID(), ...op })),
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.results;
}

test("the owner resolves a cashier's oversold sale on the phone, and the cashier's phone shows it", async () => {
  const ownerToken = server.token(OWNER, 'owner-api');
  // Two refills of LPG 13 kg left in the shop.
  await push(ownerToken, [{ type: 'command', command: 'adjust_stock', key: 'count-1', args: { product_id: LPG, quantity: '-98', reason: 'stock count' } }]);

  // A field conflict too: two devices edit a customer's name from the same version.
  const { body: feed } = await api(server, ownerToken, 'GET', '/v1/scopes/retail/changes?since=0&collections=customers');
  const customer = feed.changes.find((c) => c.key === 'retail-cust-1');
  const edit = (name) => ({ type: 'update', collection: 'customers', key: 'retail-cust-1', mods: { name }, base_version: customer.version });
  await push(ownerToken, [edit('Mama Njoki (server)')]);
  const [fieldConflict] = await push(ownerToken, [edit('Njoki (phone)')]);
  assert.equal(fieldConflict.status, 'conflict');

  // The cashier's phone: online first (the shop's data and the shell), then offline, sells 3 of the 2 refills.
  const till = await launch('till');
  const cashier = till.page;
  await cashier.goto(`${proxy.url}/app/#token=${server.token(CASHIER, 'shop-till')}&scope=retail`);
  await cashier.waitForSelector('body[data-offline-ready="true"]');
  await cashier.waitForSelector(`button[data-product="${LPG}"] .stock:text("2 refill in stock")`);
  await cashier.waitForSelector('#sync[data-state="online"]');
  assert.equal(await cashier.isHidden('#open-review'), true, 'a cashier gets no review');
  await till.context.setOffline(true);
  for (let i = 0; i < 3; i++) await cashier.click(`button[data-product="${LPG}"]`);
  await cashier.click('#record-sale');
  await cashier.waitForSelector('#sync[data-outbox="1"]');
  await till.context.setOffline(false);
  await cashier.waitForSelector('#sync[data-outbox="0"]');
  // The server applied the sale (the money was taken) and flagged it: the phone marks it until it is reviewed.
  const flagged = await cashier.waitForSelector('#today [data-flag="flagged"]');
  const saleId = await flagged.evaluate((n) => n.closest('li').dataset.sale);
  const conflictId = await cashier.getAttribute('#issue-list li[data-resolved="false"]', 'data-conflict');
  assert.match(conflictId, /^[0-9a-f-]{36}$/);

  // The owner's phone: the review lists the oversold sale with its kind.
  const owner = await launch('owner');
  const o = owner.page;
  await o.goto(`${proxy.url}/app/#token=${server.token(OWNER, 'owner-phone')}&scope=retail`);
  await o.waitForSelector('#review-badge:text("2")');
  await o.click('#open-review');
  const item = await o.waitForSelector(`#review-list button[data-conflict="${conflictId}"]`);
  assert.equal(await item.getAttribute('data-kind'), 'oversold_stock');
  const itemText = await item.textContent();
  assert.match(itemText, /Sold more than in stock/);
  assert.match(itemText, new RegExp(`sales · ${saleId}`));
  assert.ok(await o.$('#review-list button[data-kind="field_conflict"]'), 'the field conflict is listed too');

  // Its detail: the products oversold, what the phone sent, and only `accept` (protocol §11).
  await item.click();
  await o.waitForSelector(`#review-detail[data-conflict="${conflictId}"][data-kind="oversold_stock"]`);
  assert.equal(await o.textContent('#review-detail [data-detail="products"]'), `product_id ${LPG}, stock_after -1`);
  assert.match(await o.textContent('#review-detail .facts'), /Kevin Mutua on shop-till/);
  const decisions = () => o.$$eval('#review-detail [data-decision]', (bs) => bs.map((b) => b.dataset.decision));
  assert.deepEqual(await decisions(), ['accept']);
  await o.screenshot({ path: path.join(ARTIFACTS, 'review-oversold.png'), fullPage: true });

  await o.fill('#resolve-note', 'gas came in this morning');
  await o.click('#review-detail [data-decision="accept"]');
  await o.waitForSelector(`#review-detail[data-conflict="${conflictId}"][data-status="resolved"]`);
  assert.match(await o.textContent('#review-detail .resolved'), /Resolved: Accept \(gas came in this morning\)/);
  await o.waitForSelector(`#review-list button[data-conflict="${conflictId}"]`, { state: 'detached' });
  const { body: decided } = await api(server, ownerToken, 'GET', `/v1/admin/conflicts/${conflictId}`);
  assert.equal(decided.status, 'resolved');
  assert.equal(decided.resolution.record.decision, 'accept');

  // The cashier's phone, through its feed: the decision is shown and the sale's flag is cleared.
  await cashier.waitForSelector(`#issue-list li[data-conflict="${conflictId}"][data-resolved="true"]`);
  assert.match(await cashier.textContent(`#issue-list li[data-conflict="${conflictId}"]`), /reviewed: Accept/);
  await cashier.waitForSelector(`#today li[data-sale="${saleId}"] [data-flag="reviewed"]`);
  await cashier.screenshot({ path: path.join(ARTIFACTS, 'review-cashier.png'), fullPage: true });

  // The field conflict: the diff of base / phone / server, and its three decisions.
  await o.click('#review-list button[data-kind="field_conflict"]');
  await o.waitForSelector('#review-detail[data-kind="field_conflict"]');
  const row = await o.$$eval('#review-detail tr[data-path="name"] td', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(row, [customer.data.name, 'Njoki (phone)', 'Mama Njoki (server)']);
  assert.deepEqual(await decisions(), ['keep_server', 'take_client', 'merge']);
  // A refused decision (a merged field that is not in conflict) shows the server's error with its request id.
  await o.fill('#merge-value', '{"phone": "0700000000"}');
  await o.click('#review-detail [data-decision="merge"]');
  const shown = await o.waitForSelector('#error[data-code="invalid_value"]');
  const [requestId, text] = await shownError(shown);
  assert.match(requestId, /^[0-9a-f-]{36}$/);
  assert.match(text, new RegExp(`request ${requestId}`));
  await o.screenshot({ path: path.join(ARTIFACTS, 'review-field-conflict.png'), fullPage: true });
  await o.fill('#merge-value', '{"name": "Mama Njoki"}');
  await o.click('#review-detail [data-decision="merge"]');
  await o.waitForSelector('#review-detail[data-kind="field_conflict"][data-status="resolved"]');
  assert.equal(await o.isHidden('#error'), true);
  await o.waitForSelector('#review-list[data-count="0"]', { state: 'attached' });

  assert.deepEqual(till.errors, []);
  assert.deepEqual(owner.errors, []);
});

// The error box's request id and text, read at one moment: a second refused request (the revoked till's pull
// after its push) may render its own error between two separate reads.
function shownError(box) {
  return box.evaluate((el) => [el.dataset.requestId, el.textContent]);
}

test('a sync error is shown with the request id of the refused request', async () => {
  const ownerToken = server.token(OWNER, 'owner-revoker');
  const phone = await launch('revoked');
  const p = phone.page;
  await p.goto(`${proxy.url}/app/#token=${server.token(CASHIER, 'revoked-till')}&scope=retail`);
  await p.waitForSelector('#sync[data-state="online"]');
  assert.equal(await p.isHidden('#sync-error'), true);

  // The owner revokes the till's token; its next push is refused.
  const { body } = await api(server, ownerToken, 'GET', '/v1/scopes/retail/tokens');
  const revoked = body.tokens.find((t) => t.device_name === 'revoked-till' && !t.revoked_at);
  assert.equal((await api(server, ownerToken, 'POST', `/v1/scopes/retail/tokens/${revoked.id}/revoke`)).status, 200);
  await p.click('button[data-product="r-bread-400"]');
  await p.click('#record-sale');
  const shown = await p.waitForSelector('#sync-error[data-code="unauthorized"]');
  const [requestId, text] = await shownError(shown);
  assert.match(requestId, /^[0-9a-f-]{36}$/);
  assert.match(text, new RegExp(`Sync stopped: .* · request ${requestId}`));
  await p.screenshot({ path: path.join(ARTIFACTS, 'review-sync-error.png'), fullPage: true });
  assert.deepEqual(phone.errors, []);
});
