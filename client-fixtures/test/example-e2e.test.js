// The example app (examples/react-vite, a Vite + React + TypeScript app on the package as a developer installs it)
// driven end to end in headless Chromium against a real server (issue 22's check): the app is installed from an
// `npm pack` tarball and built with `vite build` (test/example.js, shared with package.test.js), and its `dist/`
// is served same-origin with `/v1` forwarded to dukasync (dev/serve.js with `dir`).
//
// The owner creates a pairing code through the API (as an owner's phone would); a cashier's phone (its own browser
// profile) enrolls with it, goes offline, sells more than the stock, comes back online; the owner's phone (a second
// profile) sees the oversold sale in the review and accepts it; the cashier's phone shows the decision, which
// reached it through the feed. Screenshots: artifacts/example-*.png. If Chromium cannot start, this fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OWNER, api } from './harness.js';
import { ARTIFACTS, phonesBehindProxy } from './phones.js';
import { buildExample, installExample } from './example.js';

const LPG = 'r-lpg-13kg-refill';

let installed;
let stack;
let server;
let proxy;
/** Starts (or restarts) a phone: see phones.js. */
const launch = (profile, options) => stack.launch(profile, options);

before(async () => {
  installed = installExample();
  stack = await phonesBehindProxy('example-e2e', { dir: buildExample() });
  ({ server, proxy } = stack);
});

after(async () => {
  await stack?.stop();
  installed?.cleanup();
});

test('the example app: enroll by code, sell offline, the owner accepts the oversold sale, the cashier sees it', async () => {
  const ownerToken = server.token(OWNER, 'owner-api');
  // Two refills of LPG 13 kg left in the shop.
  const adjusted = await api(server, ownerToken, 'POST', '/v1/scopes/retail/ops', {
    client_id: crypto.randomUUID(),
    ops: [{ seq: 1, id: crypto.randomUUID(), type: 'command', command: 'adjust_stock', key: 'count-1', args: { product_id: LPG, quantity: '-98', reason: 'stock count' } }],
  });
  assert.equal(adjusted.body.results?.[0]?.status, 'applied', JSON.stringify(adjusted.body));

  // The owner's phone makes a pairing code for a new cashier (protocol §3.3).
  const created = await api(server, ownerToken, 'POST', '/v1/scopes/retail/pairing_codes', {
    email: 'wanjiru.till@duka.test',
    name: 'Wanjiru',
    role: 'cashier',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  // The cashier's phone: no token yet, so the app asks for the server and the code.
  const till = await launch('till');
  const cashier = till.page;
  await cashier.goto(`${proxy.url}/`);
  await cashier.waitForSelector('#enroll');
  assert.equal(await cashier.inputValue('#enroll [name="server"]'), proxy.url, 'the server defaults to the page origin');
  await cashier.fill('#enroll [name="code"]', created.body.code.toLowerCase());
  await cashier.fill('#enroll [name="device"]', 'wanjiru-till');
  await cashier.click('#enroll button[type="submit"]');
  await cashier.waitForSelector('main[data-role="cashier"]');
  // The enrollment is kept: a reload opens the scope with the paired token, no form.
  await cashier.reload();
  await cashier.waitForSelector('main[data-role="cashier"]');
  assert.equal(await cashier.$('#enroll'), null);
  await cashier.waitForSelector(`button[data-product="${LPG}"][data-stock="2"]`);
  await cashier.waitForSelector('#sync[data-state="online"]');
  assert.equal(await cashier.$('#review-list'), null, 'a cashier gets no review');
  const { body: tokens } = await api(server, ownerToken, 'GET', '/v1/scopes/retail/tokens');
  assert.ok(tokens.tokens.some((t) => t.device_name === 'wanjiru-till' && !t.revoked_at), 'the paired device has its token');

  // Offline: three refills of the two, queued.
  await till.context.setOffline(true);
  await cashier.waitForSelector('#sync[data-state="offline"]');
  for (let i = 0; i < 3; i++) await cashier.click(`button[data-product="${LPG}"]`);
  await cashier.click('#record-sale');
  await cashier.waitForSelector('#sync[data-outbox="1"]');
  await cashier.waitForSelector('#sales li[data-pending="true"]');
  await cashier.waitForSelector(`button[data-product="${LPG}"][data-stock="-1"]`);
  await cashier.screenshot({ path: path.join(ARTIFACTS, 'example-offline-sale.png'), fullPage: true });

  // Back online: the sale is sent, applied (the money was taken) and flagged.
  await till.context.setOffline(false);
  await cashier.waitForSelector('#sync[data-outbox="0"]');
  const flagged = await cashier.waitForSelector('#sales li[data-pending="false"] [data-flag="flagged"]');
  const saleId = await flagged.evaluate((n) => n.closest('li').dataset.sale);
  const conflictId = await flagged.getAttribute('data-conflicts');
  assert.match(conflictId, /^[0-9a-f-]{36}$/);
  assert.match(await flagged.textContent(), /flagged for review/);
  const { body: sales } = await api(server, ownerToken, 'GET', '/v1/scopes/retail/changes?since=0&collections=sales&limit=1000');
  assert.ok(sales.changes.some((c) => c.key === saleId), 'the server has the sale');

  // The owner's phone (a second profile): the review lists the oversold sale with its kind.
  const ownerPhone = await launch('owner');
  const o = ownerPhone.page;
  await o.goto(`${proxy.url}/#token=${server.token(OWNER, 'owner-phone')}`);
  await o.waitForSelector('main[data-role="owner"]');
  const item = await o.waitForSelector(`#review-list button[data-conflict="${conflictId}"]`);
  assert.equal(await item.getAttribute('data-kind'), 'oversold_stock');
  assert.match(await item.textContent(), new RegExp(`Sold more than in stock.*sales · ${saleId}`));

  // Its detail (what was oversold, by whom) and only the decision the kind allows (§11).
  await item.click();
  await o.waitForSelector(`#review-detail[data-conflict="${conflictId}"][data-kind="oversold_stock"][data-status="open"]`);
  const detail = JSON.parse(await o.textContent('#review-detail [data-detail]'));
  assert.deepEqual(detail.products, [{ product_id: LPG, stock_after: '-1' }]);
  assert.match(await o.textContent('#review-detail'), /by Wanjiru on wanjiru-till/);
  assert.deepEqual(await o.$$eval('#review-detail [data-decision]', (bs) => bs.map((b) => b.dataset.decision)), ['accept']);
  await o.screenshot({ path: path.join(ARTIFACTS, 'example-review.png'), fullPage: true });

  await o.click('#review-detail [data-decision="accept"]');
  await o.waitForSelector(`#review-detail[data-conflict="${conflictId}"][data-status="resolved"]`);
  assert.match(await o.textContent('#review-detail .resolved'), /Resolved: accept/);
  await o.waitForSelector(`#review-list button[data-conflict="${conflictId}"]`, { state: 'detached' });
  const { body: decided } = await api(server, ownerToken, 'GET', `/v1/admin/conflicts/${conflictId}`);
  assert.equal(decided.status, 'resolved');
  assert.equal(decided.resolution.record.decision, 'accept');

  // The cashier's phone, through its feed: the sale is marked reviewed, with the decision.
  const reviewed = await cashier.waitForSelector(`#sales li[data-sale="${saleId}"] [data-flag="reviewed"]`);
  assert.match(await reviewed.textContent(), /reviewed: accept/);
  await cashier.screenshot({ path: path.join(ARTIFACTS, 'example-cashier-reviewed.png'), fullPage: true });

  assert.deepEqual(till.errors, []);
  assert.deepEqual(ownerPhone.errors, []);
});
