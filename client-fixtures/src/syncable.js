// A sync protocol for Dexie.Syncable (npm `dexie-syncable`, Dexie's own sync add-on), showing that dukasync speaks
// Dexie's change model: Syncable's changes {type: 1 create | 2 update | 3 delete, table, key, obj | mods} become
// operations of POST /v1/scopes/{scope}/ops unchanged but for field names, and feed changes come back as Syncable
// creates (whole objects) and deletes.
//
// Exactly once: Syncable resends changes it has not seen accepted. The adapter stores each batch, with the
// sequence numbers and operation ids it gave it, in the Syncable context before sending; a resend of the same
// changes, alone or followed by changes made since, reuses them, so the server answers `duplicate` instead of
// applying twice. (Syncable merges unsent changes of one key into one: a resend whose first changes were merged
// with later ones no longer matches, and is numbered anew.)
//
// Durability (protocol §10.3): Syncable forgets a change once the adapter reports it accepted, and it has no
// place to keep accepted changes, so this adapter accepts on `last_seq` and ignores `durable_seq`: after a restore
// from the WAL archive, its changes acknowledged but not yet held by a standby are lost. Use SyncClient (which
// keeps them in `local_unconfirmed`) where that matters.
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
 *
 * After the first sync (push what is queued, pull until caught up) the adapter stays connected in Syncable's
 * "react" pattern: one long-poll (`wait`, protocol §7.5) is always waiting on the feed, so a change on the server
 * reaches Dexie as soon as it commits, and Syncable hands over local changes as they are made (`react`), pushed at
 * once. An error ends both and asks Syncable to reconnect after `pollMs` (retryable) or stops (a refusal).
 *
 * @param {object} [o] `fetch` (injectable), `longPollSecs` (how long each pull waits for a change, default 25; 0
 *   polls every `pollMs` instead, as before), `pollMs` (delay before reconnecting after a retryable error, and the
 *   poll interval without long-polls; default 2000), `encoding`, `fetchCredentials` (the app's token source, used
 *   when the connect options have no `token`).
 */
export function registerDukasyncProtocol(Dexie, { fetch, pollMs = 2000, longPollSecs = 25, encoding, fetchCredentials } = {}) {
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
      const scope = options.scope;
      // Everything this connection started stops with it: Syncable may call sync() again after an error while
      // an old long-poll or push is still out, and an old continuation must then act on nothing.
      const abort = new AbortController();
      let stopped = false;
      const stop = () => {
        stopped = true;
        abort.abort();
      };
      const fail = (err) => {
        if (stopped) return;
        stop();
        // A retryable failure (offline, 503) reconnects later; a refusal stops until connected again.
        const retryable = err instanceof ApiError && err.retryable;
        onError(err, retryable ? pollMs : Infinity);
      };
      const pull = { api, scope, tables, applyRemoteChanges, signal: abort.signal };
      syncOnce({ context, ...pull, changes, cursor: syncedRevision ?? '0' })
        .then((cursor) => {
          if (stopped) return;
          onChangesAccepted();
          if (longPollSecs <= 0) return onSuccess({ again: pollMs });
          onSuccess({
            // Local changes, handed over by Syncable one batch at a time (the next after `accepted()`).
            react(reacted, _base, _partial, accepted) {
              if (stopped) return;
              push({ context, api, scope, changes: reacted, signal: abort.signal })
                .then(() => stopped || accepted())
                .catch(fail);
            },
            disconnect: stop,
          });
          listen({ ...pull, cursor, longPollSecs, pollMs, stopped: () => stopped }).catch(fail);
        })
        .catch(fail);
    },
  });
}

/** Long-polls the feed from `cursor` until stopped, handing every page to Syncable as it arrives. */
async function listen({ api, scope, tables, applyRemoteChanges, signal, cursor, longPollSecs, pollMs, stopped }) {
  while (!stopped()) {
    const sent = Date.now();
    const since = cursor;
    cursor = await pullPages({ api, scope, tables, applyRemoteChanges, signal, cursor, wait: longPollSecs });
    // An empty answer that came back at once (the server's long-poll bounds, §7.5): wait a little first.
    if (!stopped() && cursor === since && Date.now() - sent < 1000) await pause(pollMs, signal);
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
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

/** The first sync of a connection: push what Syncable gave, then pull until caught up. Resolves to the cursor. */
async function syncOnce({ context, api, scope, tables, changes, cursor, applyRemoteChanges, signal }) {
  if (!context.clientId) {
    context.clientId = crypto.randomUUID();
    context.nextSeq = 1;
    await context.save();
  }
  if (changes.length) await push({ context, api, scope, changes, signal });
  return pullPages({ api, scope, tables, applyRemoteChanges, signal, cursor, wait: 0 });
}

/**
 * Pulls pages from `cursor` until one has no more (the first may long-poll for `wait` seconds); every page is
 * handed to Syncable with its cursor as the revision, which Syncable stores with the data. Resolves to the cursor.
 */
async function pullPages({ api, scope, tables, applyRemoteChanges, signal, cursor, wait }) {
  let since = cursor;
  for (;;) {
    let page;
    try {
      page = await api.changes(scope, since, { wait, signal });
    } catch (err) {
      if (err instanceof ApiError && err.status === 410) {
        // Reset (§7.6): Syncable clears the local tables (`clear`), then we pull from the beginning.
        await applyRemoteChanges([], '0', false, true);
        since = '0';
        wait = 0;
        continue;
      }
      throw err;
    }
    const mine = page.changes.filter((c) => tables.size === 0 || tables.has(c.collection));
    await applyRemoteChanges(mine.map(fromFeedChange), page.cursor, page.has_more, false);
    since = page.cursor;
    if (!page.has_more) return since;
    wait = 0;
  }
}

async function push({ context, api, scope, changes, signal }) {
  const ops = changes.map(toOperation);
  const prints = ops.map((op) => JSON.stringify(op));
  let batch = context.pending;
  // The stored batch is being resent when Syncable's changes start with it: Syncable gives every change it has not
  // seen accepted, and after a reconnect that may be the lost batch plus changes made since. (A context stored by
  // an older adapter has only the whole batch's fingerprint.)
  const stored = batch?.prints ?? (batch && batch.fingerprint === `[${prints.join(',')}]` ? prints : []);
  const resent = stored.length > 0 && stored.length <= prints.length && stored.every((p, i) => p === prints[i]);
  if (!resent || stored.length < prints.length) {
    // New changes: number them now and store the numbering before the server can see it. The resent ones keep
    // their numbers and ids (the server may have applied them, and then answers `duplicate`). A stored batch that
    // is not being resent was answered earlier (Syncable only moves on after it was accepted): its numbers are
    // used up.
    const kept = resent ? batch.ops : [];
    const first = context.nextSeq;
    const fresh = ops.slice(kept.length).map((op, i) => ({ seq: first + i, id: crypto.randomUUID(), ...op }));
    batch = { prints, ops: [...kept, ...fresh] };
    context.pending = batch;
    context.nextSeq = first + fresh.length;
    await context.save();
  }
  const answer = await api.pushOps(scope, { client_id: context.clientId, ops: batch.ops }, { signal });
  const refused = answer.results.filter((r) => r.status === 'rejected' || (r.status === 'duplicate' && r.original === 'rejected'));
  context.pending = null;
  context.rejected = [...(context.rejected ?? []), ...refused].slice(-100);
  await context.save();
}
