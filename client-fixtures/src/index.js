// The package's main entry (`@dukasync/client`): everything an app needs in a page, a worker or Node. React
// bindings are in `./react.js` (`@dukasync/client/react`), the service-worker helpers in `./sw.js`
// (`@dukasync/client/sw`), the Dexie.Syncable protocol in `./syncable.js` (`@dukasync/client/syncable`).
export { SyncClient } from './client.js';
export { Api, ApiError } from './api.js';
export { Credentials } from './credentials.js';
export { pair } from './pair.js';
export { INTERNAL_TABLES, databaseName, openScopeDb, readStored, storesFor } from './schema.js';
export { canonical, protocolSafe, rowHash, sum32 } from './checksum.js';
export { formatMoney, fromCents, fromMilli, quantity, toCents, toMilli } from './decimal.js';
export { deviceEventsStore, syncStateStore } from './stores.js';
// The Dexie the client uses (the app's own, as a peer dependency), for apps that want the very same class.
export { Dexie, liveQuery } from './vendor.js';
