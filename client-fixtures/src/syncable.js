// A sync protocol for Dexie.Syncable (npm `dexie-syncable`, Dexie's own sync add-on), showing that dukasync speaks
// Dexie's change model: Syncable's changes {type: 1 create | 2 update | 3 delete, table, key, obj | mods} become
// operations of POST /v1/scopes/{scope}/ops unchanged but for field names, and feed changes come back as Syncable
// creates (whole objects) and deletes.
//
// Exactly once: Syncable resends changes it has not seen accepted. The adapter stores each batch, with the
// sequence numbers and operation ids it gave it, in the Syncable context before sending; a resend of the same
// changes reuses them, so the server answers `duplicate` instead of applying twice.
//
// Usage: registerDukasyncProtocol(Dexie); db.syncable.connect('dukasync', serverUrl, {scope, token}).
// With the app's token source: registerDukasyncProtocol(Dexie, {fetchCredentials}) and connect without `token`
// (Syncable stores connect options, so a function cannot go there; the tokens stay in memory).
import { Api, ApiError } from './api.js';
import { Credentials } from './credentials.js';

const CREATE = 1;
const UPDATE = 2;
const DELETE = 3;

/**
 * Registers the protocol `dukasync` on the Dexie class that has Dexie.Syncable loaded.
 * @param {object} [o] `fetch` (injectable), `pollMs` (how often to sync again, default 2000), `encoding`,
 *   `fetchCredentials` (the app's token source, used when the connect options have no `token`).
 */
export function registerDukasyncProtocol(Dexie, { fetch, pollMs = 2000, encoding, fetchCredentials } = {}) {
  // One token source per server and scope, kept across sync calls: a fresh token is not fetched on every poll.
  const sources = new Map();
  const credentialsFor = (url, scope) => {
    const id = `${url}\n${scope}`;
    if (!sources.has(id)) sources.set(id, new Credentials({ fetchCredentials }));
    return sources.get(id);
  };
  Dexie.Syncable.registerSyncProtocol('dukasync', {
    sync(context, url, options, baseRevision, syncedRevision, changes, partial, applyRemoteChanges, onChangesAccepted, onSuccess, onError) {
      const auth = options.token || !fetchCredentials ? { token: options.token } : { credentials: credentialsFor(url, options.scope) };
      const api = new Api({ baseUrl: url, ...auth, fetch, encoding });
      const tables = new Set(options.tables ?? []);
      syncOnce({ context, api, scope: options.scope, tables, changes, cursor: syncedRevision ?? '0', applyRemoteChanges })
        .then(() => {
          onChangesAccepted();
          onSuccess({ again: pollMs });
        })
        .catch((err) => {
          // A retryable failure (offline, 503) tries again later; a refusal stops until reconnected.
          const retryable = err instanceof ApiError && err.retryable;
          onError(err, retryable ? pollMs : Infinity);
        });
    },
  });
}

/** Maps a Dexie.Syncable change to a dukasync operation (without seq and id). */
export function toOperation(change) {
  const base = { collection: change.table, key: String(change.key) };
  if (change.type === CREATE) return { type: 'create', ...base, data: change.obj };
  if (change.type === UPDATE) {
    const mods = Object.fromEntries(Object.entries(change.mods).map(([k, v]) => [k, v === undefined ? null : v]));
    return { type: 'update', ...base, mods };
  }
  if (change.type === DELETE) return { type: 'delete', ...base };
  throw new TypeError(`unknown Dexie.Syncable change type ${change.type}`);
}

/** Maps a feed change to a Dexie.Syncable change. */
export function fromFeedChange(c) {
  return c.op === 'upsert'
    ? { type: CREATE, table: c.collection, key: c.key, obj: c.data }
    : { type: DELETE, table: c.collection, key: c.key };
}

async function syncOnce({ context, api, scope, tables, changes, cursor, applyRemoteChanges }) {
  if (!context.clientId) {
    context.clientId = crypto.randomUUID();
    context.nextSeq = 1;
    await context.save();
  }
  if (changes.length) await push({ context, api, scope, changes });
  // Pull: every page is handed to Syncable with its cursor as the revision, which Syncable stores with the data.
  let since = cursor;
  for (;;) {
    let page;
    try {
      page = await api.changes(scope, since);
    } catch (err) {
      if (err instanceof ApiError && err.status === 410) {
        // Reset (§7.6): Syncable clears the local tables (`clear`), then we pull from the beginning.
        await applyRemoteChanges([], '0', false, true);
        since = '0';
        continue;
      }
      throw err;
    }
    const mine = page.changes.filter((c) => tables.size === 0 || tables.has(c.collection));
    await applyRemoteChanges(mine.map(fromFeedChange), page.cursor, page.has_more, false);
    since = page.cursor;
    if (!page.has_more) return;
  }
}

async function push({ context, api, scope, changes }) {
  const ops = changes.map(toOperation);
  const fingerprint = JSON.stringify(ops);
  let batch = context.pending;
  if (!batch || batch.fingerprint !== fingerprint) {
    // New changes: number them now and store the numbering before the server can see it. A stored batch that
    // is not being resent was answered earlier (Syncable only moves on after onChangesAccepted): its numbers are
    // used up.
    const first = context.nextSeq;
    batch = { fingerprint, ops: ops.map((op, i) => ({ seq: first + i, id: crypto.randomUUID(), ...op })) };
    context.pending = batch;
    context.nextSeq = first + ops.length;
    await context.save();
  }
  const answer = await api.pushOps(scope, { client_id: context.clientId, ops: batch.ops });
  const refused = answer.results.filter((r) => r.status === 'rejected' || (r.status === 'duplicate' && r.original === 'rejected'));
  context.pending = null;
  context.rejected = [...(context.rejected ?? []), ...refused].slice(-100);
  await context.save();
}
