// A throwaway Dexie device for tests written in other languages (python/tests): it opens the reference SyncClient
// on a fresh fake IndexedDB, pulls the scope to its head through the real protocol, and prints the asked rows of
// one collection as they sit in its Dexie table, as JSON: {"<key>": row or null}.
//   node client-fixtures/tools/dexie-rows.mjs URL TOKEN SCOPE COLLECTION KEY...
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { SyncClient } from '../src/client.js';

const [url, token, scope, collection, ...keys] = process.argv.slice(2);
if (!collection || keys.length === 0) {
  process.stderr.write('usage: dexie-rows.mjs URL TOKEN SCOPE COLLECTION KEY...\n');
  process.exit(2);
}
const client = await SyncClient.open({ scope, token, baseUrl: url, indexedDB: new IDBFactory(), IDBKeyRange });
await client.pull();
const rows = {};
for (const key of keys) rows[key] = (await client.db.table(collection).get(key)) ?? null;
await client.close();
process.stdout.write(JSON.stringify(rows) + '\n');
