// The local database: one Dexie database per scope (keys are unique only within a scope, §7.4). Synced tables hold
// rows exactly as the feed delivered them (the checksum hashes them as received); the client's own bookkeeping
// lives in tables named `local_*` and is never hashed. (Dexie reserves some `_` names, e.g. `_versions`.)
import { Dexie } from './vendor.js';

/** Synced collections (protocol/README.md §9): who may write them, and the Dexie indexes the app queries by. */
export const COLLECTIONS = {
  products: { writer: 'device', indexes: 'id, active' },
  price_lists: { writer: 'device', indexes: 'id' },
  payment_methods: { writer: 'device', indexes: 'id' },
  tax_rates: { writer: 'device', indexes: 'id' },
  accounts: { writer: 'server', indexes: 'id' },
  customers: { writer: 'device', indexes: 'id, name' },
  laundry_orders: { writer: 'device', indexes: 'id' },
  sales: { writer: 'server', indexes: 'id, sold_at' },
  payments: { writer: 'server', indexes: 'id' },
  expenses: { writer: 'server', indexes: 'id' },
  stock_movements: { writer: 'server', indexes: 'id, product_id' },
  stock_levels: { writer: 'server', indexes: 'id, product_id' },
  production_batches: { writer: 'server', indexes: 'id' },
  cylinder_exchanges: { writer: 'server', indexes: 'id' },
  journal_entries: { writer: 'server', indexes: 'id' },
  conflicts: { writer: 'server', indexes: 'id' },
};

export const SYNCED = Object.keys(COLLECTIONS);

/** The client's bookkeeping tables. */
const INTERNAL = {
  // key/value: `cursor` {value, head}, `client` {value: uuid}, `seq` {value: next sequence}, `auth` {token, baseUrl},
  // `acked` {value: highest feed version our acknowledged operations produced}
  local_sync: 'key',
  // one entry per local write, in order: {seq, op} where op is the wire operation without its seq
  local_outbox: 'seq',
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
 * Opens (creating if needed) the scope's Dexie database.
 * @param {object} [o] `indexedDB` and `IDBKeyRange` to use another IndexedDB (fake-indexeddb in tests); `namespace`.
 */
export function openScopeDb(scope, { indexedDB, IDBKeyRange, namespace } = {}) {
  const options = indexedDB ? { indexedDB, IDBKeyRange } : undefined;
  const db = new Dexie(databaseName(scope, namespace), options);
  const stores = { ...INTERNAL };
  for (const [name, c] of Object.entries(COLLECTIONS)) stores[name] = c.indexes;
  db.version(1).stores(stores);
  return db;
}
