// The local database: one Dexie database per scope (keys are unique only within a scope, §7.4). Synced tables hold
// rows exactly as the feed delivered them (the checksum hashes them as received); the client's own bookkeeping
// lives in tables named `local_*` and is never hashed. (Dexie reserves some `_` names, e.g. `_versions`.)
//
// The synced tables are not written here: they are the server's collection definitions (`GET /v1/collections`,
// protocol §9), kept in `local_sync` under `collections` so a device that opens offline (or a service worker)
// uses the last ones it saw. When the definitions change, the Dexie version goes up by one and the tables and
// indexes follow them (protocol §1, "Changed definitions").
import { Dexie } from './vendor.js';

/** The client's bookkeeping tables. */
const INTERNAL = {
  // key/value: `cursor` {value, head}, `client` {value: uuid}, `seq` {value: next sequence}, `auth` {token, baseUrl},
  // `acked` {value: highest feed version our acknowledged operations produced},
  // `collections` {value: the definitions, stores: the Dexie stores they gave}
  local_sync: 'key',
  // one entry per local write, in order: {seq, op} where op is the wire operation without its seq
  local_outbox: 'seq',
  // outbox entries the server acknowledged but no standby holds yet (protocol §10.3), kept to resend after a
  // restore: {seq, op, ackedAt}
  local_unconfirmed: 'seq',
  // row versions last seen in the feed, for `base_version`: {id: collection + '\x1f' + key, version}
  local_versions: 'id',
  // operations the server refused as a batch (400/413/422), moved aside so the queue goes on
  local_dead_letter: 'id, seq',
  // conflicts and rejections reported by the server, for the app to show: {id: op id, seq, status, ...}
  local_events: 'id, seq',
  // reference snapshots: {dataset, etag, body}
  local_reference: 'dataset',
};

export const INTERNAL_TABLES = Object.keys(INTERNAL);

/** The database name of a scope; `namespace` keeps several users or test devices apart. */
export function databaseName(scope, namespace = 'dukasync') {
  return `${namespace}:${scope}`;
}

/**
 * The Dexie stores for a set of definitions: the key path `id`, then the collection's indexes; then the app's own
 * tables (`appStores`, Dexie's syntax: `{ notes: 'id, createdAt' }`), which may not clash with a synced table nor
 * take a name the client reserves (`local_*`, and `_*`, which Dexie uses).
 * @param {Array<{name: string, indexes?: string[]}>} collections as served by `GET /v1/collections`
 * @param {Record<string, string>} [appStores]
 */
export function storesFor(collections, appStores = {}) {
  const stores = { ...INTERNAL };
  for (const c of collections) {
    if (c.name in stores) throw new Error(`collection ${c.name} clashes with a table of the client`);
    stores[c.name] = ['id', ...(c.indexes ?? [])].join(', ');
  }
  for (const [name, spec] of Object.entries(appStores ?? {})) {
    if (name.startsWith('local_') || name.startsWith('_')) {
      throw new Error(`app table ${name}: names starting with local_ or _ are reserved for the sync client and Dexie`);
    }
    if (name in stores) throw new Error(`app table ${name} clashes with the synced collection ${name}: choose another name`);
    if (typeof spec !== 'string' || spec.trim() === '') throw new TypeError(`app table ${name} needs a Dexie store string such as 'id, createdAt'`);
    stores[name] = spec.split(',').map((part) => part.trim()).join(', ');
  }
  return stores;
}

/**
 * What is stored of a scope's database without changing it: its Dexie version (0 when it does not exist), the
 * stored credentials, the collection definitions with the stores they gave, and the app's own stores.
 */
export async function readStored(scope, { indexedDB, IDBKeyRange, namespace } = {}) {
  const options = indexedDB ? { indexedDB, IDBKeyRange } : undefined;
  const probe = new Dexie(databaseName(scope, namespace), options); // no version: Dexie's dynamic mode
  const none = { auth: null, collections: null, stores: null, appStores: null };
  try {
    await probe.open();
  } catch (err) {
    if (err?.name === 'NoSuchDatabaseError') return { verno: 0, ...none };
    throw err;
  }
  try {
    if (!probe.tables.some((t) => t.name === 'local_sync')) return { verno: probe.verno, ...none };
    const [auth, defs] = await Promise.all([probe.table('local_sync').get('auth'), probe.table('local_sync').get('collections')]);
    return {
      verno: probe.verno,
      auth: auth ?? null,
      collections: defs?.value ?? null,
      stores: defs?.stores ?? null,
      appStores: defs?.appStores ?? null,
    };
  } finally {
    probe.close();
  }
}

/** Whether two sets of stores are the same, whatever the order of their names. */
const sameStores = (a, b) => a !== null && b !== null && JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
const sortKeys = (o) => Object.fromEntries(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));

/**
 * Opens (creating or upgrading if needed) the scope's Dexie database for `collections`, or for the stored
 * definitions when none are given, plus the app's own tables. A change of definitions or of the app's tables is a
 * new Dexie version: new tables and indexes are made, tables no longer declared are dropped (with their rows).
 * Resolves to the open database.
 *
 * `appStores` absent keeps the app tables stored with the database (so a service worker that opens the database
 * without knowing them changes nothing); `{}` declares none, and drops the ones there were.
 *
 * @param {string} scope
 * @param {object} [o]
 * @param {Array<object>} [o.collections] definitions from `GET /v1/collections`
 * @param {Record<string, string>} [o.appStores] the app's own tables and indexes, in Dexie's syntax
 * @param {object} [o.stored] the result of `readStored()`, when the caller already read it
 * @param {IDBFactory} [o.indexedDB] another IndexedDB (fake-indexeddb in tests), with `o.IDBKeyRange`
 * @param {string} [o.namespace]
 */
export async function openScopeDb(scope, { collections, appStores, stored, indexedDB, IDBKeyRange, namespace } = {}) {
  const before = stored ?? (await readStored(scope, { indexedDB, IDBKeyRange, namespace }));
  const defs = collections ?? before.collections;
  if (!defs) throw new Error(`the collections of scope ${scope} are unknown here: connect to the server once`);
  const app = appStores ?? before.appStores ?? {};
  const stores = storesFor(defs, app);
  const same = sameStores(before.stores, stores);
  const options = indexedDB ? { indexedDB, IDBKeyRange } : undefined;
  const db = new Dexie(databaseName(scope, namespace), options);
  if (same) {
    db.version(before.verno).stores(stores);
  } else {
    const dropped = Object.keys(before.stores ?? {}).filter((name) => !(name in stores));
    db.version(before.verno + 1).stores({ ...stores, ...Object.fromEntries(dropped.map((name) => [name, null])) });
  }
  await db.open();
  if (!same) await db.local_sync.put({ key: 'collections', value: defs, stores, appStores: app });
  return db;
}
