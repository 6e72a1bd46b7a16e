// The reference sync client for one scope (protocol/README.md §7, §8, §10).
//
// Invariants:
// - Every local write and its outbox entry (with the device's next sequence number) commit in one Dexie
//   transaction; an outbox entry leaves the outbox only after the server's answer names its sequence in
//   `last_seq`, and is deleted only once an answer's `durable_seq` covers it (a standby holds it, §10.3). Until
//   then it waits in `local_unconfirmed`, and goes back to the outbox if the server turns out to have forgotten it
//   (restored from its WAL archive after losing its disk).
// - A feed page and its cursor commit in one Dexie transaction, so the cursor never passes unapplied data.
// - Synced tables hold rows exactly as the feed sent them; pending local writes are re-applied on top ("rebased")
//   after each page, and the checksum is compared only when nothing local is pending.
// - A reset (410, or a checksum mismatch) discards synced rows and keeps the outbox.
import { Api, ApiError } from './api.js';
import { protocolSafe, rowHash, sum32 } from './checksum.js';
import { openScopeDb, readStored } from './schema.js';
import { pair } from './pair.js';

const rowId = (collection, key) => `${collection}\x1f${key}`;
const GENERIC = new Set(['create', 'put', 'update', 'delete']);
// Changes per page while catching up: the server's largest page (protocol §5). A 100,000-change initial sync is 10
// round trips instead of 200 at the server's default page size (benches/README.md, "Mobile links and floors").
const CATCH_UP_PAGE_SIZE = 10000;
// A long-poll answered empty sooner than this was ended by the server's bounds, not by its wait running out.
const EARLY_LONG_POLL_MS = 1000;

export class SyncClient extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.scope
   * @param {import('./vendor.js').Dexie} o.db from openScopeDb()
   * @param {Array<object>} o.collections the definitions `db` was opened for (`GET /v1/collections`)
   * @param {Api} o.api
   * @param {number} [o.batchSize] most operations per push
   * @param {number} [o.pageSize] most changes per long-poll page (the server's default when absent)
   * @param {number} [o.catchUpPageSize] most changes per page while catching up (a pull without `wait`): large,
   *   since on a mobile link each page costs a round trip (default 10000, the server's largest; `pageSize` when
   *   only that is given)
   * @param {number} [o.longPollSecs] `wait` of the live loop once caught up
   * @param {number} [o.confirmEveryMs] how often the live loop asks whether acknowledged operations are durable
   *   yet, while some are not (§10.3)
   * @param {{baseMs: number, maxMs: number}} [o.backoff] exponential backoff with full jitter
   */
  constructor({ scope, db, api, collections, batchSize = 100, pageSize, catchUpPageSize, longPollSecs = 25, confirmEveryMs = 5000, backoff = { baseMs: 500, maxMs: 30000 } }) {
    super();
    this.scope = scope;
    this.db = db;
    this.api = api;
    /** name → definition of every synced collection (protocol §9). */
    this.collections = new Map(collections.map((c) => [c.name, c]));
    /** The synced tables' names. */
    this.synced = [...this.collections.keys()];
    this.batchSize = batchSize;
    this.pageSize = pageSize;
    this.catchUpPageSize = catchUpPageSize ?? pageSize ?? CATCH_UP_PAGE_SIZE;
    this.longPollSecs = longPollSecs;
    this.confirmEveryMs = confirmEveryMs;
    this.backoff = backoff;
    this.state = { online: null, outbox: 0, unconfirmed: 0, pushing: false, pulling: false, lastSyncAt: null, head: null, error: null };
    this.#smallUntil = 0;
    this.#kick = null;
  }

  #smallUntil;
  #kick;
  /** Resolvers of the push backoff's current wait; `nudge()` ends it early. */
  #retryWaiters = new Set();
  #abort = null;
  #running = null;

  /** Exchanges a pairing code for a device token (protocol §3.3); then `open({ scope, token, baseUrl })`. */
  static pair(options) {
    return pair(options);
  }

  /**
   * Opens the scope's database and a client for it.
   *
   * With a fixed `token`, the token and server are stored with the data, so the service worker can replay the
   * outbox with no page open; pass them on first use (or to replace them).
   *
   * With `fetchCredentials` (an async callback returning `{token, expiresAt?}`, see src/credentials.js), tokens are
   * kept in memory only and never stored: the callback is asked when there is no token, after a 401 (the request
   * is then sent once more) and shortly before `expiresAt`. A service worker passes its own callback.
   *
   * @param {object} o
   * @param {string} o.scope
   * @param {string} [o.token]
   * @param {import('./credentials.js').FetchCredentials} [o.fetchCredentials]
   * @param {string} [o.baseUrl] the server; with `fetchCredentials`, the stored one when absent
   * @param {Array<object>} [o.collections] the collection definitions to use instead of asking the server for
   *   them (`GET /v1/collections`, or the stored ones when it cannot answer): for tests and for apps that ship them
   * @param {Record<string, string>} [o.appStores] the app's own Dexie tables beside the synced ones, in Dexie's
   *   syntax (`{ notes: 'id, createdAt' }`); a change raises the Dexie version. Absent: the stored ones are kept.
   */
  static async open({ scope, token, fetchCredentials, baseUrl, encoding, fetch, indexedDB, IDBKeyRange, namespace, collections: given, appStores, ...options }) {
    const idb = { indexedDB, IDBKeyRange, namespace };
    const stored = await readStored(scope, idb);
    let api;
    let auth = null;
    if (fetchCredentials) {
      api = new Api({ baseUrl: baseUrl ?? stored.auth?.baseUrl ?? '', fetchCredentials, encoding, fetch });
    } else {
      auth = token ? { key: 'auth', token, baseUrl: baseUrl ?? '' } : stored.auth;
      if (!auth) throw new Error(`no token stored for scope ${scope}`);
      api = new Api({ baseUrl: auth.baseUrl, token: auth.token, encoding, fetch });
    }
    const collections = given ?? (await currentCollections(api, stored));
    const db = await openScopeDb(scope, { collections, appStores, stored, ...idb });
    if (auth && auth !== stored.auth) await db.local_sync.put(auth);
    const client = new SyncClient({ scope, db, api, collections, ...options });
    // A collection this device did not know may have had changes that its pulls skipped (§1): pull all again.
    const known = new Set((stored.collections ?? []).map((c) => c.name));
    const cursor = (await db.local_sync.get('cursor'))?.value ?? '0';
    if (stored.collections && cursor !== '0' && client.synced.some((name) => !known.has(name))) {
      await client.reset('collections_changed');
    }
    client.state.outbox = await db.local_outbox.count();
    client.state.unconfirmed = await db.local_unconfirmed.count();
    return client;
  }

  /** The outbox's id, made on first use and kept with the data: one per scope database (sequences count per scope). */
  async clientId() {
    return this.db.transaction('rw', this.db.local_sync, async () => {
      const row = await this.db.local_sync.get('client');
      if (row) return row.value;
      const value = crypto.randomUUID();
      await this.db.local_sync.put({ key: 'client', value });
      return value;
    });
  }

  // ---- Local writes: applied to the local table at once and queued for the server in the same transaction.

  /** Dexie `add`: a new row (whole object, with its `id`). */
  async create(collection, row) {
    return this.#writeRow('create', collection, row);
  }

  /** Dexie `put`: replaces the row. */
  async put(collection, row) {
    return this.#writeRow('put', collection, row);
  }

  /** Dexie `update`: `mods` maps key paths to new values; `null` removes the field. */
  async update(collection, key, mods) {
    this.#checkWritable(collection);
    if (!mods || typeof mods !== 'object' || Object.keys(mods).length === 0) throw new TypeError('update needs mods');
    if (Object.keys(mods).some((p) => p === 'id' || p.startsWith('id.'))) throw new TypeError('the id cannot change');
    this.#checkSafe(mods);
    return this.#enqueue({ type: 'update', collection, key: String(key), mods }, [collection], true);
  }

  async delete(collection, key) {
    this.#checkWritable(collection);
    return this.#enqueue({ type: 'delete', collection, key: String(key) }, [collection], false);
  }

  /**
   * A named server command (e.g. `record_sale`, protocol §10). It has no local effect: its rows arrive through
   * the feed once the server has run it. `key` is the id the device chose for what it creates.
   */
  async command(name, key, args) {
    this.#checkSafe(args);
    return this.#enqueue({ type: 'command', command: name, key: String(key), args }, [], false);
  }

  async #writeRow(type, collection, row) {
    this.#checkWritable(collection);
    if (typeof row?.id !== 'string' || row.id === '') throw new TypeError('a row needs a string id');
    this.#checkSafe(row);
    return this.#enqueue({ type, collection, key: row.id, data: row }, [collection], true);
  }

  #checkWritable(collection) {
    const meta = this.collections.get(collection);
    if (!meta) throw new TypeError(`unknown collection ${collection}`);
    if (meta.writer !== 'device') throw new TypeError(`${collection} is written by the server only`);
  }

  #checkSafe(value) {
    if (!protocolSafe(value)) throw new TypeError('floats and unsafe integers are not allowed: use decimal strings');
  }

  async #enqueue(op, tables, withBase) {
    const { db } = this;
    const entry = await db.transaction('rw', [db.local_outbox, db.local_sync, db.local_versions, ...tables.map((t) => db.table(t))], async () => {
      const next = (await db.local_sync.get('seq'))?.value ?? 1;
      await db.local_sync.put({ key: 'seq', value: next + 1 });
      const wire = { id: crypto.randomUUID(), ...op };
      if (withBase) {
        const seen = await db.local_versions.get(rowId(op.collection, op.key));
        if (seen) wire.base_version = seen.version;
      }
      if (GENERIC.has(op.type)) await applyLocally(db, wire);
      const e = { seq: next, op: wire, at: new Date().toISOString() };
      await db.local_outbox.add(e);
      return e;
    });
    await this.#outboxChanged();
    return entry;
  }

  async #outboxChanged() {
    const [outbox, unconfirmed] = await Promise.all([this.db.local_outbox.count(), this.db.local_unconfirmed.count()]);
    this.#setState({ outbox, unconfirmed });
    this.#kick?.();
  }

  // ---- Push: replay the outbox in order until acknowledged.

  /**
   * Sends one batch from the head of the outbox and handles the answer. Resolves to `{done: true}` when the outbox
   * is empty. Throws ApiError when the server cannot be reached or refuses for a reason retrying cannot fix
   * (401, 409 `client_id_taken` / `sequence_gap`).
   */
  async pushOnce({ signal } = {}) {
    const limit = this.#smallUntil ? 1 : this.batchSize;
    const batch = await this.db.local_outbox.orderBy('seq').limit(limit).toArray();
    if (batch.length === 0) {
      // Another context (the service worker's Background Sync replay) may have emptied the outbox meanwhile.
      if (this.state.outbox !== 0) this.#setState({ outbox: 0 });
      return { done: true };
    }
    const body = { client_id: await this.clientId(), ops: batch.map((e) => ({ seq: e.seq, ...e.op })) };
    this.#setState({ pushing: true });
    let answer;
    try {
      answer = await this.api.pushOps(this.scope, body, { signal });
    } catch (err) {
      this.#setState({ pushing: false, online: !(err instanceof ApiError && err.status === 0) });
      if (!(err instanceof ApiError)) throw err;
      await this.#refused(err, batch);
      return { done: false };
    }
    await this.#acknowledge(answer, batch);
    if (this.#smallUntil && answer.last_seq >= this.#smallUntil) this.#smallUntil = 0;
    this.#setState({ pushing: false, online: true, lastSyncAt: new Date().toISOString(), error: null });
    return { done: false, answer };
  }

  /** Pushes until the outbox is empty, backing off on answers that are safe to retry. */
  async push({ signal, maxAttempts = Infinity } = {}) {
    let attempt = 0;
    for (;;) {
      try {
        const r = await this.pushOnce({ signal });
        if (r.done) return;
        attempt = 0;
      } catch (err) {
        if (!(err instanceof ApiError) || !err.retryable || ++attempt >= maxAttempts || signal?.aborted) throw err;
        await this.#retryWait(this.#delay(attempt), signal);
      }
    }
  }

  /**
   * Asks the server whether the acknowledged operations kept in `local_unconfirmed` are durable yet (an empty push,
   * §10.3), deletes those that are, and puts back in the outbox those the server no longer knows. Resolves to the
   * number still unconfirmed.
   */
  async confirm({ signal } = {}) {
    if ((await this.db.local_unconfirmed.count()) === 0) return 0;
    const answer = await this.api.pushOps(this.scope, { client_id: await this.clientId(), ops: [] }, { signal });
    await this.#acknowledge(answer, []);
    return this.db.local_unconfirmed.count();
  }

  async #acknowledge(answer, batch) {
    const { db } = this;
    const bySeq = new Map(batch.map((e) => [e.seq, e]));
    const fresh = [];
    // A server older than `durable_seq` (§10.3) has nothing beyond its own disk to wait for.
    const durable = answer.durable_seq ?? answer.last_seq;
    await db.transaction('rw', db.local_outbox, db.local_unconfirmed, db.local_events, db.local_sync, async () => {
      let acked = (await db.local_sync.get('acked'))?.value ?? 0;
      for (const r of answer.results) {
        for (const v of r.versions ?? []) acked = Math.max(acked, v);
        const status = r.status === 'duplicate' ? r.original : r.status;
        if ((status === 'conflict' || status === 'rejected') && !(await db.local_events.get(r.id))) {
          const event = { ...r, status, op: bySeq.get(r.seq)?.op, at: new Date().toISOString() };
          await db.local_events.put(event);
          fresh.push(event);
        }
      }
      await db.local_sync.put({ key: 'acked', value: acked });
      // Only now, with the server's answer in hand, may acknowledged entries leave the outbox; those no standby
      // holds yet are kept until one does.
      const ackedEntries = await db.local_outbox.where('seq').belowOrEqual(answer.last_seq).toArray();
      const ackedAt = new Date().toISOString();
      await db.local_unconfirmed.bulkPut(ackedEntries.filter((e) => e.seq > durable).map((e) => ({ ...e, ackedAt })));
      await db.local_outbox.where('seq').belowOrEqual(answer.last_seq).delete();
      await db.local_unconfirmed.where('seq').belowOrEqual(durable).delete();
      // Acknowledged once, unknown now: the server was restored from an archive that ends before them. They go
      // back in front of the unsent entries, with their sequences and ids, and are sent again.
      const forgotten = await db.local_unconfirmed.where('seq').above(answer.last_seq).toArray();
      if (forgotten.length) {
        await db.local_outbox.bulkPut(forgotten.map(({ ackedAt: _, ...e }) => e));
        await db.local_unconfirmed.bulkDelete(forgotten.map((e) => e.seq));
      }
    });
    for (const e of fresh) this.dispatchEvent(new CustomEvent(e.status, { detail: e }));
    await this.#outboxChanged();
  }

  /**
   * After 409 `sequence_gap`: when the entries from `expected_seq` on are kept here as acknowledged, the server
   * forgot them (a restore, §10): they go back in front of the outbox. Resolves to whether the gap is closed.
   */
  async #requeueFrom(expected) {
    const { db } = this;
    if (!Number.isInteger(expected)) return false;
    const closed = await db.transaction('rw', db.local_outbox, db.local_unconfirmed, async () => {
      const kept = await db.local_unconfirmed.where('seq').aboveOrEqual(expected).sortBy('seq');
      const first = (await db.local_outbox.orderBy('seq').first())?.seq;
      const next = kept.length ? kept[kept.length - 1].seq + 1 : expected;
      const contiguous = kept.every((e, i) => e.seq === expected + i);
      if (!contiguous || (first !== undefined && next !== first) || (first === undefined && kept.length === 0)) return false;
      await db.local_outbox.bulkPut(kept.map(({ ackedAt: _, ...e }) => e));
      await db.local_unconfirmed.bulkDelete(kept.map((e) => e.seq));
      // Those below `expected_seq` are in the restored server's history: nothing more to fear for them.
      await db.local_unconfirmed.where('seq').below(expected).delete();
      return true;
    });
    if (closed) await this.#outboxChanged();
    return closed;
  }

  async #refused(err, batch) {
    // Retrying later may help (no answer, 503), or only a person or a new token can help (401, also when
    // fetchCredentials failed or its fresh token was refused too; an outbox bound to another device; sequences
    // missing locally): either way the queue stays as it is.
    if (err.code === 'sequence_gap' && (await this.#requeueFrom(err.details?.expected_seq))) return;
    const keep = err.retryable || err.status === 401 || err.code === 'client_id_taken' || err.code === 'sequence_gap';
    if (keep) {
      this.#setState({ error: err.retryable ? null : errorState(err) });
      throw err;
    }
    // A 400 caused by one operation names it (protocol §10: `details.seq` and `details.index`): set exactly that
    // one aside. The ones before it were fine, and nothing of the batch was applied.
    const named = err.status === 400 && batch[err.details?.index];
    if (named && named.seq === err.details.seq) {
      await this.#deadLetter(named, err);
      return;
    }
    if (batch.length > 1) {
      // A batch refused as a whole without naming an operation (a body that does not decode, 413, 422): send one at
      // a time until the offender is found.
      this.#smallUntil = batch[batch.length - 1].seq;
      return;
    }
    await this.#deadLetter(batch[0], err);
  }

  /**
   * Moves an operation the server refused as malformed out of the queue, so the rest can go on. Its sequence was
   * not consumed (nothing of a refused batch is applied), so later entries move down by one; a sequence the server
   * already used for another payload (`payload_mismatch`) stays consumed. The entry need not be the first of the
   * outbox: entries before it keep their sequences.
   */
  async #deadLetter(entry, err) {
    const { db } = this;
    const consumed = err.code === 'payload_mismatch';
    const record = { id: entry.op.id, seq: entry.seq, op: entry.op, code: err.code, message: err.message, at: new Date().toISOString() };
    await db.transaction('rw', db.local_outbox, db.local_sync, db.local_dead_letter, async () => {
      const current = await db.local_outbox.get(entry.seq);
      if (current?.op.id !== entry.op.id) return; // someone else handled it
      await db.local_dead_letter.put(record);
      await db.local_outbox.delete(entry.seq);
      if (consumed) return;
      const later = await db.local_outbox.where('seq').above(entry.seq).sortBy('seq');
      await db.local_outbox.bulkDelete(later.map((e) => e.seq));
      await db.local_outbox.bulkAdd(later.map((e) => ({ ...e, seq: e.seq - 1 })));
      const next = (await db.local_sync.get('seq'))?.value ?? 1;
      await db.local_sync.put({ key: 'seq', value: next - 1 });
    });
    if (this.#smallUntil) this.#smallUntil -= 1;
    this.dispatchEvent(new CustomEvent('rejected', { detail: { ...record, status: 'rejected', deadLetter: true } }));
    await this.#outboxChanged();
  }

  // ---- Pull: page the feed; each page and its cursor in one transaction.

  /** Pulls one page (long-polling `wait` seconds when caught up). A 410 resets the scope and returns `{reset}`. */
  async pullOnce({ wait = 0, signal } = {}) {
    const since = (await this.db.local_sync.get('cursor'))?.value ?? '0';
    this.#setState({ pulling: true });
    let page;
    try {
      const limit = wait > 0 ? this.pageSize : this.catchUpPageSize;
      page = await this.api.changes(this.scope, since, { wait, limit, signal });
    } catch (err) {
      this.#setState({ pulling: false, online: !(err instanceof ApiError && err.status === 0) });
      if (err instanceof ApiError && err.status === 410) {
        await this.reset(err.details?.reason ?? 'reset_required');
        return { reset: true, has_more: true };
      }
      throw err;
    }
    const applied = await this.#applyPage(page, since);
    this.#setState({ pulling: false, online: true, head: page.head, lastSyncAt: new Date().toISOString() });
    if (applied && page.changes.length) this.dispatchEvent(new CustomEvent('changes', { detail: page }));
    return page;
  }

  /** Pulls until caught up (`has_more` false) and returns the last page. */
  async pull({ signal } = {}) {
    for (;;) {
      const page = await this.pullOnce({ signal });
      if (!page.has_more) return page;
    }
  }

  async #applyPage(page, since) {
    const { db } = this;
    return db.transaction('rw', [...this.synced.map((t) => db.table(t)), db.local_sync, db.local_versions, db.local_outbox], async () => {
      // Another pull of this client committed meanwhile: this page is not the continuation of the stored cursor.
      if (((await db.local_sync.get('cursor'))?.value ?? '0') !== since) return false;
      // Fold the page: the last change of a row wins (a page may hold several versions of one row).
      const last = new Map();
      for (const c of page.changes) {
        if (this.collections.has(c.collection)) last.set(rowId(c.collection, c.key), c); // unknown collections are skipped (§1)
      }
      const puts = new Map();
      const deletes = new Map();
      for (const c of last.values()) {
        const bucket = c.op === 'upsert' ? puts : deletes;
        if (!bucket.has(c.collection)) bucket.set(c.collection, []);
        bucket.get(c.collection).push(c);
      }
      for (const [collection, cs] of puts) await db.table(collection).bulkPut(cs.map((c) => c.data));
      for (const [collection, cs] of deletes) await db.table(collection).bulkDelete(cs.map((c) => c.key));
      const ups = [...last.values()].filter((c) => c.op === 'upsert');
      await db.local_versions.bulkPut(ups.map((c) => ({ id: rowId(c.collection, c.key), version: c.version })));
      await db.local_versions.bulkDelete([...last.values()].filter((c) => c.op === 'delete').map((c) => rowId(c.collection, c.key)));
      await rebase(db, new Set(last.keys()));
      await db.local_sync.put({ key: 'cursor', value: page.cursor, head: page.has_more ? null : page.head });
      return true;
    });
  }

  /** Discards every synced row and the cursor, keeps the outbox (whose pending writes are re-applied). §7.6 */
  async reset(reason) {
    const { db } = this;
    await db.transaction('rw', [...this.synced.map((t) => db.table(t)), db.local_sync, db.local_versions, db.local_outbox], async () => {
      for (const t of this.synced) await db.table(t).clear();
      await db.local_versions.clear();
      await db.local_sync.put({ key: 'cursor', value: '0', head: null });
      await rebase(db, null);
    });
    this.dispatchEvent(new CustomEvent('reset', { detail: { reason } }));
  }

  // ---- Divergence check (§8).

  /** The local checksum of each synced collection: { name: {checksum, count} }. */
  async localChecksums() {
    const sums = {};
    for (const name of this.synced) {
      const hashes = [];
      await this.db.table(name).each((row) => hashes.push(rowHash(name, row.id, row)));
      sums[name] = { checksum: sum32(hashes), count: hashes.length };
    }
    return sums;
  }

  /**
   * Compares the local copy with the server's checksum at `version` (the head of the last page). Skipped while
   * local writes are pending or acknowledged beyond that version, since the copy then rightly differs. A mismatch
   * resets the scope. Resolves to {ok: true} | {ok: false, mismatched} | {skipped: reason}.
   */
  async verify(version) {
    const { db } = this;
    const local = await db.transaction('r', [...this.synced.map((t) => db.table(t)), db.local_sync, db.local_outbox], async () => {
      const cursor = await db.local_sync.get('cursor');
      if (cursor?.head !== version) return { skipped: 'not caught up at this version' };
      if (await db.local_outbox.count()) return { skipped: 'local writes pending' };
      if (((await db.local_sync.get('acked'))?.value ?? 0) > version) return { skipped: 'own writes not pulled yet' };
      return { sums: await this.localChecksums() };
    });
    if (local.skipped) return local;
    const report = await this.api.checksum(this.scope, version);
    const server = new Map(report.collections.map((c) => [c.collection, c]));
    const mismatched = this.synced.filter((name) => {
      const s = server.get(name) ?? { checksum: 0, count: 0 };
      return s.checksum !== local.sums[name].checksum || s.count !== local.sums[name].count;
    });
    if (mismatched.length === 0) return { ok: true, checksum: report.checksum };
    this.dispatchEvent(new CustomEvent('divergence', { detail: { version, mismatched } }));
    await this.reset('divergence');
    return { ok: false, mismatched };
  }

  // ---- Reference snapshots with ETags.

  /**
   * A reference dataset (e.g. `products`), revalidated with If-None-Match. Resolves to {status, body}: 200 when
   * it changed, 304 when the stored copy is current, or 'offline' with the stored copy when the server cannot be
   * reached.
   */
  async reference(dataset, { signal } = {}) {
    const cached = await this.db.local_reference.get(dataset);
    try {
      const r = await this.api.reference(this.scope, dataset, cached?.etag, { signal });
      if (r.status === 304 && cached) return { status: 304, body: cached.body };
      // The snapshot carries its rows' checksum (§8): a damaged copy is refused rather than stored.
      const sum = sum32(r.body.rows.map((row) => rowHash(dataset, row.id, row)));
      if (sum !== r.body.checksum) throw new ApiError(200, 'checksum_mismatch', `snapshot ${dataset} fails its checksum`);
      await this.db.local_reference.put({ dataset, etag: r.etag, body: r.body });
      return { status: r.status, body: r.body };
    } catch (err) {
      if (cached && err instanceof ApiError && err.status === 0) return { status: 'offline', body: cached.body };
      throw err;
    }
  }

  // ---- The live loop: push whenever the outbox has entries, long-poll the feed, verify after catching up.

  start() {
    if (this.#running) return;
    this.#abort = new AbortController();
    const { signal } = this.#abort;
    this.#running = Promise.all([this.#pushLoop(signal), this.#pullLoop(signal)]);
  }

  async stop() {
    if (!this.#running) return;
    this.#abort.abort();
    this.#kick?.();
    await this.#running;
    this.#running = null;
  }

  /** Wakes the push loop (e.g. on the browser's `online` event), also from a retry's backoff. */
  nudge() {
    this.#kick?.();
    for (const wake of this.#retryWaiters) wake();
  }

  /** The backoff before a push is retried: `ms`, or until `nudge()`; rejects when `signal` aborts. */
  #retryWait(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const settle = (fn) => () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#retryWaiters.delete(wake);
        fn();
      };
      const wake = settle(resolve);
      const onAbort = settle(() => reject(signal.reason));
      const timer = setTimeout(wake, ms);
      this.#retryWaiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async #pushLoop(signal) {
    while (!signal.aborted) {
      const woken = new Promise((resolve) => {
        this.#kick = resolve;
      });
      if (await this.db.local_outbox.count()) {
        try {
          await this.push({ signal });
          continue;
        } catch (err) {
          if (signal.aborted) return;
          this.#setState({ error: errorState(err) });
          await Promise.race([woken, sleep(30000, signal).catch(() => {})]);
          continue;
        }
      }
      if (await this.db.local_unconfirmed.count()) {
        // Acknowledged but held by no standby yet (§10.3): ask again from time to time. A failure is not an error
        // to show; the next round asks again.
        await Promise.race([woken, sleep(this.confirmEveryMs, signal).catch(() => {})]);
        if (signal.aborted) return;
        await this.confirm({ signal }).catch(() => {});
        continue;
      }
      await woken; // stop() wakes it too
    }
  }

  async #pullLoop(signal) {
    let wait = 0;
    let attempt = 0;
    let early = 0;
    let verified = null;
    while (!signal.aborted) {
      try {
        const started = Date.now();
        const page = await this.pullOnce({ wait, signal });
        // An empty long-poll that came back at once was ended by the server's long-poll bounds (protocol §7.5:
        // too many waiting in the scope, or this device's newer long-poll replaced it): wait before the next
        // one, with backoff, instead of asking again at once.
        const endedEarly = wait > 0 && !page.reset && page.changes.length === 0 && Date.now() - started < EARLY_LONG_POLL_MS;
        attempt = 0;
        wait = 0;
        if (page.reset || page.has_more) continue;
        if (page.head !== verified) {
          const v = await this.verify(page.head);
          if (v.ok === false) continue;
          if (v.ok) verified = page.head;
        }
        wait = this.longPollSecs;
        if (endedEarly) await sleep(EARLY_LONG_POLL_MS + this.#delay(++early), signal).catch(() => {});
        else early = 0;
      } catch (err) {
        if (signal.aborted) return;
        const retryable = err instanceof ApiError && err.retryable;
        if (!retryable) this.#setState({ error: errorState(err) });
        await sleep(retryable ? this.#delay(++attempt) : 30000, signal).catch(() => {});
        wait = 0;
      }
    }
  }

  #delay(attempt) {
    const cap = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** (attempt - 1));
    return Math.random() * cap;
  }

  #setState(patch) {
    this.state = { ...this.state, ...patch };
    this.dispatchEvent(new CustomEvent('state', { detail: this.state }));
  }

  async close() {
    await this.stop();
    this.db.close();
  }
}

/**
 * What `state.error` holds: the protocol's code (`client` for a failure of the client itself), the message, the
 * HTTP status, and the server's request id when the answer carried one (to quote when reporting a problem).
 */
function errorState(err) {
  const e = { code: err?.code ?? 'client', message: err?.message ?? String(err) };
  if (err instanceof ApiError) e.status = err.status;
  if (err?.requestId) e.requestId = err.requestId;
  return e;
}

/**
 * The server's collection definitions, or the stored ones when the server cannot answer now (offline, or a
 * slow network at start: the stored copy is used after 5 s). With none stored, the server must answer.
 */
async function currentCollections(api, stored) {
  try {
    return await api.collections({ timeoutMs: stored.collections ? 5000 : 30000 });
  } catch (err) {
    if (stored.collections) return stored.collections;
    throw err;
  }
}

/** Applies a generic operation to the local table, as Dexie would have. */
async function applyLocally(db, op) {
  const table = db.table(op.collection);
  if (op.type === 'create' || op.type === 'put') await table.put(op.data);
  else if (op.type === 'delete') await table.delete(op.key);
  else if (op.type === 'update') {
    // Dexie removes a field whose new value is undefined; the protocol says null.
    const mods = Object.fromEntries(Object.entries(op.mods).map(([k, v]) => [k, v === null ? undefined : v]));
    await table.update(op.key, mods);
  }
}

/** Re-applies pending generic writes to rows a page touched (all of them when `touched` is null). */
async function rebase(db, touched) {
  const pending = await db.local_outbox.orderBy('seq').toArray();
  for (const { op } of pending) {
    if (!GENERIC.has(op.type)) continue;
    if (touched && !touched.has(rowId(op.collection, op.key))) continue;
    await applyLocally(db, op);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
