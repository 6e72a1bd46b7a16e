// The POS demo page: pick products, record a sale paid in cash or M-Pesa, see stock, today's sales, the outbox
// and the sync state. Everything is read from the local Dexie database, so it works offline; the reference client
// (../src/client.js) syncs it, and the service worker (./sw.js) replays the outbox when the page is closed.
// Owners and managers also get "Review": the scope's open conflicts and rejections (protocol §11), each with its
// kind, detail, field diff and the decisions its kind allows; a decision reaches every phone through the feed.
import { Api } from '../src/api.js';
import { SyncClient } from '../src/client.js';
import { formatMoney, fromCents, fromMilli, toCents, toMilli } from '../src/decimal.js';

const $ = (selector) => document.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
};

// A link such as /app/#token=dks_...&scope=retail connects the phone; the hash is then removed from the address.
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get('token')) localStorage.setItem('dukasync.token', hash.get('token'));
if (hash.get('scope')) localStorage.setItem('dukasync.scope', hash.get('scope'));
if (hash.size) history.replaceState(null, '', location.pathname);

const token = localStorage.getItem('dukasync.token');
const scope = localStorage.getItem('dukasync.scope') ?? 'retail';
const cart = new Map(); // product id -> quantity
let method = 'cash';
let client;
let registration;

const outboxTag = `dukasync-outbox:${scope}`;

main().catch((err) => {
  $('#sync').textContent = 'Error';
  $('#sync').dataset.state = 'error';
  showError(err);
});

/** Shows an error with its code and the server's request id (the id in the server's log line), if it had one. */
function showError(err, box = $('#error')) {
  const parts = [err?.message ?? String(err)];
  if (err?.code) parts.push(el('code', {}, ` ${err.code}`));
  if (err?.requestId) parts.push(' · request ', el('code', { class: 'request-id' }, err.requestId));
  box.replaceChildren(...parts);
  box.dataset.code = err?.code ?? 'error';
  if (err?.requestId) box.dataset.requestId = err.requestId;
  else delete box.dataset.requestId;
  box.hidden = false;
}

function clearError() {
  $('#error').hidden = true;
}

async function main() {
  if (!token) return showSetup();
  registration = await registerWorker();
  client = await SyncClient.open({ scope, token });
  $('#pos').hidden = false;
  fillScopes();
  for (const type of ['state', 'changes', 'conflict', 'rejected', 'reset']) client.addEventListener(type, scheduleRender);
  // While the review is open, a change through the feed (another phone's decision) refreshes it.
  client.addEventListener('changes', () => !$('#review').hidden && refreshReview());
  addEventListener('online', () => client.nudge());
  wireControls();
  await render();
  // Background Sync covers a closed page; while the page is open it syncs itself. Where Background Sync is
  // missing, this is also the fallback that replays the outbox on app start.
  client.start();
  refreshCatalogue();
}

function showSetup() {
  $('#setup').hidden = false;
  $('#sync').textContent = 'Not connected';
  $('#setup').addEventListener('submit', (e) => {
    e.preventDefault();
    localStorage.setItem('dukasync.token', $('#setup-token').value.trim());
    localStorage.setItem('dukasync.scope', $('#setup-scope').value.trim());
    location.reload();
  });
}

async function registerWorker() {
  if (!('serviceWorker' in navigator)) return null;
  try {
    await navigator.serviceWorker.register('./sw.js', { type: 'module' });
  } catch (err) {
    // Offline the update check of an installed worker fails; that worker goes on serving.
    if (!navigator.serviceWorker.controller) throw err;
  }
  const reg = await navigator.serviceWorker.ready;
  if (!navigator.onLine) return reg;
  // This page's own files were fetched before the worker controlled it: hand their addresses over for caching.
  const files = performance
    .getEntriesByType('resource')
    .map((e) => new URL(e.name))
    .filter((u) => u.origin === location.origin && !u.pathname.startsWith('/v1/'))
    .map((u) => u.pathname);
  await ask(reg.active, { type: 'cache-shell', files: [location.pathname, ...files] });
  document.body.dataset.offlineReady = 'true';
  return reg;
}

function ask(worker, message) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => resolve(e.data);
    worker.postMessage(message, [channel.port2]);
  });
}

async function fillScopes() {
  let scopes = JSON.parse(localStorage.getItem('dukasync.scopes') ?? 'null');
  try {
    scopes = await new Api({ token }).scopes();
    localStorage.setItem('dukasync.scopes', JSON.stringify(scopes));
  } catch {
    // offline: the list from last time
  }
  const mine = (scopes ?? []).find((s) => s.id === scope);
  if (mine?.role === 'owner' || mine?.role === 'manager') {
    $('#open-review').hidden = false;
    refreshReviewBadge();
  }
  const select = $('#scope');
  select.replaceChildren(...(scopes ?? [{ id: scope, name: scope }]).map((s) => el('option', { value: s.id }, s.name)));
  select.value = scope;
  select.onchange = () => {
    localStorage.setItem('dukasync.scope', select.value);
    location.reload();
  };
}

/** Revalidates the product catalogue snapshot (If-None-Match: 304 when unchanged); shown as a note. */
async function refreshCatalogue() {
  try {
    const r = await client.reference('products');
    $('#catalogue').textContent = r.status === 304 ? 'catalogue current' : r.status === 'offline' ? 'catalogue (offline copy)' : 'catalogue updated';
    $('#catalogue').dataset.status = String(r.status);
    scheduleRender();
  } catch (err) {
    $('#catalogue').textContent = err.code === 'route_not_found' ? '' : 'catalogue unavailable';
    $('#catalogue').dataset.status = err.code ?? 'error';
    if (err.status > 0 && err.code !== 'route_not_found') showError(err);
  }
}

function wireControls() {
  for (const b of document.querySelectorAll('.method')) {
    b.addEventListener('click', () => {
      method = b.dataset.method;
      for (const o of document.querySelectorAll('.method')) o.setAttribute('aria-pressed', String(o === b));
      $('#mpesa-ref').hidden = method !== 'mpesa';
    });
  }
  $('#record-sale').addEventListener('click', recordSale);
  $('#open-review').addEventListener('click', openReview);
  $('#review-back').addEventListener('click', closeReview);
}

async function products() {
  const rows = await client.db.products.toArray();
  if (rows.length) return rows.filter((p) => p.active !== false);
  // Before the first pull: the catalogue snapshot, if one was fetched.
  const snapshot = await client.db.local_reference.get('products');
  return (snapshot?.body?.rows ?? []).filter((p) => p.active !== false);
}

async function recordSale() {
  const catalogue = new Map((await products()).map((p) => [p.id, p]));
  const lines = [...cart].map(([id, qty]) => ({ product_id: id, quantity: String(qty), unit_price: catalogue.get(id).price }));
  if (lines.length === 0) return;
  const total = lines.reduce((sum, l) => sum + toCents(l.unit_price) * BigInt(l.quantity), 0n);
  const payment = { method, amount: fromCents(total) };
  const reference = $('#mpesa-ref').value.trim();
  if (method === 'mpesa' && reference) payment.reference = reference;
  await client.command('record_sale', crypto.randomUUID(), {
    sold_at: new Date().toISOString(),
    lines,
    payments: [payment],
  });
  cart.clear();
  $('#mpesa-ref').value = '';
  // Ask for a replay when connectivity returns, even if this page is closed by then.
  await registration?.sync?.register(outboxTag).catch(() => {});
  await render();
}

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  queueMicrotask(async () => {
    pending = false;
    await render();
  });
}

async function render() {
  const db = client.db;
  const [catalogue, levels, sales, outbox, events, dead, decided] = await Promise.all([
    products(),
    db.stock_levels.toArray(),
    db.sales.toArray(),
    db.local_outbox.orderBy('seq').toArray(),
    db.local_events.toArray(),
    db.local_dead_letter.toArray(),
    db.conflicts ? db.conflicts.toArray() : [],
  ]);
  const pendingSales = outbox.filter((e) => e.op.type === 'command' && e.op.command === 'record_sale');
  // Decisions on conflicts arrive through the feed as `conflicts` rows (protocol §11).
  const resolutions = new Map(decided.filter((c) => c.status === 'resolved').map((c) => [c.id, c]));
  renderSync(outbox.length);
  renderProducts(catalogue, levels, pendingSales);
  renderCart(catalogue);
  renderToday(sales, pendingSales, flagsOf(events, resolutions));
  renderIssues(events, dead, resolutions);
}

/** Sale id -> 'flagged' (a conflict on it is open) or 'reviewed' (every conflict on it was decided). */
function flagsOf(events, resolutions) {
  const flags = new Map();
  for (const e of events) {
    if (e.status !== 'conflict' || e.op?.command !== 'record_sale') continue;
    const resolved = resolutions.has(e.conflict_id);
    if (!resolved || !flags.has(e.op.key)) flags.set(e.op.key, resolved ? 'reviewed' : 'flagged');
  }
  return flags;
}

function renderSync(queued) {
  const s = client.state;
  const offline = !navigator.onLine || s.online === false;
  const state = offline ? 'offline' : s.error ? 'error' : s.pushing ? 'syncing' : 'online';
  const label = { offline: 'Offline', error: 'Sync problem', syncing: 'Syncing', online: 'Online' }[state];
  const badge = $('#sync');
  badge.dataset.state = state;
  badge.dataset.outbox = String(queued);
  badge.textContent = `${label} · ${queued} queued`;
  badge.title = s.lastSyncAt ? `Last sync ${new Date(s.lastSyncAt).toLocaleTimeString()}` : 'Not synced yet';
  // Why sync stopped (a revoked token, an outbox bound to another device...), with the request id to quote.
  if (s.error) showError({ ...s.error, message: `Sync stopped: ${s.error.message}` }, $('#sync-error'));
  else $('#sync-error').hidden = true;
}

function renderProducts(catalogue, levels, pendingSales) {
  const stock = new Map(levels.map((l) => [l.product_id, toMilli(l.quantity)]));
  for (const e of pendingSales) {
    for (const l of e.op.args.lines) {
      if (stock.has(l.product_id)) stock.set(l.product_id, stock.get(l.product_id) - toMilli(l.quantity));
    }
  }
  $('#products').replaceChildren(
    ...catalogue.map((p) => {
      const left = stock.get(p.id);
      const tracked = p.track_stock !== false && left !== undefined;
      const low = tracked && left <= toMilli(p.reorder_level ?? '0');
      return el(
        'li',
        {},
        el(
          'button',
          { type: 'button', 'data-product': p.id, onclick: () => addToCart(p.id) },
          el('span', { class: 'name' }, p.name),
          el('span', { class: 'price' }, `KES ${formatMoney(p.price)}`),
          el('span', { class: `stock${low ? ' low' : ''}` }, tracked ? `${fromMilli(left)} ${p.unit ?? ''} in stock` : 'service'),
        ),
      );
    }),
  );
}

function addToCart(id) {
  cart.set(id, (cart.get(id) ?? 0) + 1);
  scheduleRender();
}

function changeQty(id, delta) {
  const q = (cart.get(id) ?? 0) + delta;
  if (q <= 0) cart.delete(id);
  else cart.set(id, q);
  scheduleRender();
}

function renderCart(catalogue) {
  const byId = new Map(catalogue.map((p) => [p.id, p]));
  let total = 0n;
  const rows = [];
  for (const [id, qty] of cart) {
    const p = byId.get(id);
    if (!p) continue;
    const amount = toCents(p.price) * BigInt(qty);
    total += amount;
    rows.push(
      el(
        'li',
        {},
        el('span', {}, p.name),
        el(
          'span',
          { class: 'qty' },
          el('button', { type: 'button', 'aria-label': 'less', onclick: () => changeQty(id, -1) }, '−'),
          el('span', {}, String(qty)),
          el('button', { type: 'button', 'aria-label': 'more', onclick: () => changeQty(id, 1) }, '+'),
        ),
        el('span', {}, formatMoney(fromCents(amount))),
      ),
    );
  }
  $('#cart-lines').replaceChildren(...rows);
  $('#cart-total').textContent = `KES ${formatMoney(fromCents(total))}`;
  $('#record-sale').disabled = rows.length === 0;
}

const isToday = (iso) => new Date(iso).toDateString() === new Date().toDateString();

function renderToday(sales, pendingSales, flags) {
  const list = [
    ...pendingSales.map((e) => ({ id: e.op.key, sold_at: e.op.args.sold_at, payments: e.op.args.payments, lines: e.op.args.lines, pending: true })),
    ...sales.filter((s) => s.status !== 'voided'),
  ].filter((s) => isToday(s.sold_at));
  list.sort((a, b) => (a.sold_at < b.sold_at ? 1 : -1));
  const byMethod = new Map();
  let total = 0n;
  for (const s of list) {
    for (const p of s.payments) {
      const c = toCents(p.amount);
      total += c;
      byMethod.set(p.method, (byMethod.get(p.method) ?? 0n) + c);
    }
  }
  $('#today-summary').textContent = `${list.length} sales · KES ${formatMoney(fromCents(total))}`;
  $('#by-method').replaceChildren(
    ...[...byMethod].map(([m, c]) => el('span', {}, `${m === 'mpesa' ? 'M-Pesa' : m[0].toUpperCase() + m.slice(1)} ${formatMoney(fromCents(c))}`)),
  );
  const ul = $('#today');
  ul.dataset.count = String(list.length);
  ul.dataset.synced = String(list.filter((s) => !s.pending).length);
  ul.replaceChildren(
    ...list.slice(0, 50).map((s) =>
      el(
        'li',
        { 'data-sale': s.id },
        el(
          'span',
          { class: 'what' },
          `${new Date(s.sold_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })} · ${itemCount(s.lines)}`,
          ...(s.pending ? [el('span', { class: 'tag' }, 'queued')] : []),
          ...(flags.has(s.id) ? [el('span', { class: `tag ${flags.get(s.id)}`, 'data-flag': flags.get(s.id) }, flags.get(s.id))] : []),
        ),
        el('strong', {}, formatMoney(fromCents(s.payments.reduce((sum, p) => sum + toCents(p.amount), 0n)))),
      ),
    ),
  );
}

function itemCount(lines) {
  const n = lines.reduce((sum, l) => sum + toMilli(l.quantity), 0n);
  return `${fromMilli(n)} item${n === 1000n ? '' : 's'}`;
}

function renderIssues(events, dead, resolutions) {
  const items = [
    ...events.map((e) => {
      const decided = resolutions.get(e.conflict_id);
      const what = `${e.status}: ${e.code ?? e.op?.command ?? e.op?.type} ${e.message ?? ''}`.trim();
      return el(
        'li',
        { 'data-conflict': e.conflict_id, 'data-resolved': String(Boolean(decided)) },
        decided ? `${what} · reviewed: ${decisionLabel(decided.decision)}` : what,
      );
    }),
    ...dead.map((d) => el('li', {}, `not sent: ${d.code} ${d.message ?? ''}`.trim())),
  ];
  $('#issues').hidden = items.length === 0;
  $('#issue-list').replaceChildren(...items.slice(-10));
}

// ---- The review (owners and managers): conflicts admin, protocol §11 ----

const KINDS = {
  field_conflict: 'Edited on two devices',
  rejected_operation: 'Rejected',
  oversold_stock: 'Sold more than in stock',
  stale_price: 'Sold at an old price',
  unknown_product: 'Sold an unknown product',
  implausible_time: 'Phone clock was wrong',
  rejected_backend_write: 'Rejected backend write',
};
/** The decisions each kind allows (§11): a field conflict picks values; every other kind is accepted as seen. */
const DECISIONS = { field_conflict: ['keep_server', 'take_client', 'merge'] };
const decisionsFor = (kind) => DECISIONS[kind] ?? ['accept'];
const DECISION_LABELS = { keep_server: 'Keep server', take_client: "Take the phone's", merge: 'Merge', accept: 'Accept' };
const decisionLabel = (d) => DECISION_LABELS[d] ?? d;
const kindLabel = (kind) => KINDS[kind] ?? kind.replaceAll('_', ' ');
const admin = () => new Api({ token });

async function refreshReviewBadge() {
  try {
    const { conflicts } = await admin().conflicts({ scope, status: 'open', limit: 200 });
    $('#review-badge').textContent = conflicts.length ? String(conflicts.length) : '';
  } catch {
    // offline, or no longer an owner: the badge stays as it was
  }
}

async function openReview() {
  $('#pos').hidden = true;
  $('#review').hidden = false;
  $('#review-detail').hidden = true;
  await refreshReview();
}

function closeReview() {
  $('#review').hidden = true;
  $('#pos').hidden = false;
  clearError();
}

const movedOn = new Map(); // conflict id -> the row version now, after a 409 row_moved_on
async function refreshReview() {
  let page;
  try {
    page = await admin().conflicts({ scope, status: 'open', limit: 200 });
  } catch (err) {
    return showError(err);
  }
  const list = page.conflicts;
  $('#review-count').textContent = `${list.length} open`;
  $('#review-badge').textContent = list.length ? String(list.length) : '';
  $('#review-list').dataset.count = String(list.length);
  $('#review-list').replaceChildren(
    ...list.map((c) =>
      el(
        'li',
        {},
        el(
          'button',
          { type: 'button', 'data-conflict': c.id, 'data-kind': c.kind, onclick: () => openConflict(c.id) },
          el('span', { class: 'kind' }, kindLabel(c.kind), el('code', {}, c.kind)),
          el('span', {}, `${c.collection} · ${c.key}`),
          el('small', {}, new Date(c.created_at).toLocaleString()),
        ),
      ),
    ),
  );
}

const show = (v) => (v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));

async function openConflict(id, { keepError = false } = {}) {
  if (!keepError) clearError();
  let c;
  try {
    c = await admin().conflict(id);
  } catch (err) {
    return showError(err);
  }
  const box = $('#review-detail');
  box.dataset.conflict = c.id;
  box.dataset.kind = c.kind;
  box.dataset.status = c.status;
  const who = c.operation ? `${c.operation.user?.name ?? c.operation.user?.email ?? ''} on ${c.operation.device?.name ?? 'a device'}` : 'the server';
  const parts = [
    el('h2', {}, el('span', { class: 'kind' }, kindLabel(c.kind), el('code', {}, c.kind))),
    el(
      'dl',
      { class: 'facts' },
      el('dt', {}, 'Row'),
      el('dd', {}, `${c.collection} · ${c.key}`),
      el('dt', {}, 'By'),
      el('dd', {}, who),
      el('dt', {}, 'When'),
      el('dd', {}, new Date(c.created_at).toLocaleString()),
      ...detailFacts(c.detail),
    ),
  ];
  if (c.diff?.length) parts.push(diffTable(c.diff));
  if (c.client && !c.diff?.length) parts.push(el('details', {}, el('summary', {}, 'What the phone sent'), el('pre', {}, JSON.stringify(c.client, null, 1))));
  if (c.status === 'resolved') {
    const r = c.resolution?.record ?? {};
    parts.push(el('p', { class: 'resolved' }, `Resolved: ${decisionLabel(r.decision)}${r.note ? ` (${r.note})` : ''}`));
  } else {
    parts.push(...decisionControls(c));
  }
  box.replaceChildren(...parts);
  box.hidden = false;
  box.scrollIntoView?.({ block: 'start' });
}

/** The kind's `detail` as facts: products oversold, the lines at an old price, a rejection's code and message. */
function detailFacts(detail) {
  if (!detail) return [];
  const facts = [];
  for (const [k, v] of Object.entries(detail)) {
    const value = Array.isArray(v)
      ? v.map((item) => (item && typeof item === 'object' ? Object.entries(item).map(([a, b]) => `${a} ${show(b)}`).join(', ') : show(item))).join('; ')
      : show(v);
    facts.push(el('dt', {}, k.replaceAll('_', ' ')), el('dd', { 'data-detail': k }, value));
  }
  return facts;
}

/** base / phone / server values of every path in conflict (and every other field that differs). */
function diffTable(diff) {
  return el(
    'table',
    { class: 'diff' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Field'), el('th', {}, 'Before'), el('th', {}, 'Phone'), el('th', {}, 'Server'))),
    el(
      'tbody',
      {},
      ...diff.map((d) =>
        el(
          'tr',
          { 'data-path': d.path },
          el('th', {}, d.path),
          el('td', {}, show(d.base)),
          el('td', { class: show(d.client) !== show(d.base) ? 'changed' : '' }, show(d.client)),
          el('td', { class: show(d.server) !== show(d.base) ? 'changed' : '' }, show(d.server)),
        ),
      ),
    ),
  );
}

function decisionControls(c) {
  const controls = [];
  let merged;
  if (decisionsFor(c.kind).includes('merge')) {
    // Prefilled with the server's values of the conflicting fields; edit to the values wanted.
    const start = Object.fromEntries((c.diff ?? []).filter((d) => c.fields.includes(d.path)).map((d) => [d.path, d.server]));
    merged = el('textarea', { id: 'merge-value', 'aria-label': 'Merged values (JSON)' });
    merged.value = JSON.stringify(start, null, 1);
    controls.push(el('label', {}, 'Merged values (for Merge)', merged));
  }
  const note = el('input', { id: 'resolve-note', placeholder: 'Note (optional)', maxlength: '1000' });
  controls.push(note);
  controls.push(
    el(
      'div',
      { class: 'decisions' },
      ...decisionsFor(c.kind).map((d) =>
        el('button', { type: 'button', class: 'primary', 'data-decision': d, onclick: () => resolve(c, d, note.value.trim(), merged?.value) }, decisionLabel(d)),
      ),
    ),
  );
  return controls;
}

async function resolve(c, decision, note, mergedText) {
  clearError();
  // Decided against the row as recorded (the server's default), unless it moved on and was shown again since.
  const body = { decision };
  if (movedOn.has(c.id)) body.expected_version = movedOn.get(c.id);
  if (note) body.note = note;
  if (decision === 'merge') {
    try {
      body.value = JSON.parse(mergedText);
    } catch {
      return showError(new Error('the merged values are not valid JSON'));
    }
  }
  try {
    await admin().resolveConflict(c.id, body);
  } catch (err) {
    // The row moved on, or someone else decided first: show the conflict as it is now (the error stays shown);
    // a decision made after that is made against the row's version now.
    if (err.code === 'row_moved_on' && err.details?.conflict?.current) movedOn.set(c.id, err.details.conflict.current.version);
    if (err.status === 409) await openConflict(c.id, { keepError: true });
    showError(err);
    return;
  }
  await openConflict(c.id);
  await refreshReview();
  client.nudge();
}
