// Node uses the package by name, as an ERP script or a test would: `node node-check.mjs <baseUrl> <token>`.
// Opens a client (fake-indexeddb stands in for the browser's IndexedDB), writes through the outbox, pushes,
// pulls, and prints what it saw as one JSON line.
import 'fake-indexeddb/auto';
import { SyncClient, fromCents, toCents, storesFor } from '@dukasync/client';
import { outboxSyncTag } from '@dukasync/client/sw';
import { SyncProvider } from '@dukasync/client/react';

const [baseUrl, token, id] = process.argv.slice(2);
const client = await SyncClient.open({ scope: 'retail', token, baseUrl, appStores: { notes: 'id, createdAt' } });
await client.create('customers', { id, name: 'From the packed package', credit_limit: fromCents(toCents('999.99') + 1n) });
await client.push();
const page = await client.pull();
await client.db.table('notes').put({ id: 'n1', createdAt: new Date().toISOString() });
console.log(
  JSON.stringify({
    head: page.head,
    outbox: client.state.outbox,
    customer: await client.db.table('customers').get(id),
    products: await client.db.table('products').count(),
    notes: await client.db.table('notes').count(),
    tag: outboxSyncTag('retail'),
    stores: Object.keys(storesFor([{ name: 'x', indexes: [] }], { notes: 'id' })),
    react: typeof SyncProvider,
  }),
);
await client.close();
