// Background Sync for an app's own service worker (`@dukasync/client/sw`): Workbox, vite-plugin-pwa's
// injectManifest, or a hand-written module worker. The page asks for a sync with the tag
// `dukasync-outbox:<scope>` after a local write (`requestOutboxSync`); the browser fires `sync` when it is back
// online, possibly with no page open, and the worker replays that scope's outbox (`replayOutbox`).
//
//   // sw.js / sw.ts
//   import { registerOutboxSync } from '@dukasync/client/sw';
//   registerOutboxSync(self);                                  // plus the app's own caching
//
// The scope's database holds the token and server a fixed-token client stored (`SyncClient.open({token})`). An app
// using `fetchCredentials` passes one here too (a worker has no page session; e.g. a fetch with credentials).
import { SyncClient } from './client.js';

/** The prefix of Background Sync tags this module answers. */
export const SYNC_TAG_PREFIX = 'dukasync-outbox:';

/** The Background Sync tag for a scope's outbox. */
export function outboxSyncTag(scope) {
  return SYNC_TAG_PREFIX + scope;
}

/**
 * In the page: asks the browser to fire `sync` for the scope's outbox once it is online. Resolves to false where
 * Background Sync is missing (e.g. Firefox, Safari): the page's live loop is then the only sender.
 * @param {ServiceWorkerRegistration} [registration] defaults to `navigator.serviceWorker.ready`
 */
export async function requestOutboxSync(scope, registration) {
  const reg = registration ?? (await globalThis.navigator?.serviceWorker?.ready);
  if (!reg?.sync) return false;
  await reg.sync.register(outboxSyncTag(scope));
  return true;
}

/**
 * Pushes the scope's outbox until it is empty. A browser may fire a pending sync as it starts, before the server is
 * reachable again, and its own retry comes minutes later; so this keeps trying with backoff (60 attempts, 250 ms
 * to 3 s apart: about a minute and a half, within the few minutes a browser gives a sync event), then throws and
 * leaves the rest to the browser's retry. Records `lastReplay` in `local_sync`.
 *
 * @param {string} scope
 * @param {object} [o] `SyncClient.open` options (`fetchCredentials`, `baseUrl`, `namespace`, `indexedDB`, ...),
 *   and `maxAttempts`
 */
export async function replayOutbox(scope, { maxAttempts = 60, backoff = { baseMs: 250, maxMs: 3000 }, ...open } = {}) {
  const client = await SyncClient.open({ ...open, scope, backoff });
  try {
    await client.push({ maxAttempts });
    await client.db.local_sync.put({ key: 'lastReplay', by: 'background-sync', at: new Date().toISOString() });
  } finally {
    client.db.close();
  }
}

/**
 * In the worker: answers `sync` events tagged `dukasync-outbox:<scope>` with `replayOutbox(scope, options)`, held
 * open by `event.waitUntil` (a failure makes the browser retry later). Other tags are left to the app. Returns a
 * function that removes the listener.
 * @param {ServiceWorkerGlobalScope} worker usually `self`
 * @param {object} [options] passed to `replayOutbox`; `onReplay(scope, error|null)` is told how each replay ended
 */
export function registerOutboxSync(worker, { onReplay, ...options } = {}) {
  const listener = (event) => {
    if (typeof event.tag !== 'string' || !event.tag.startsWith(SYNC_TAG_PREFIX)) return;
    const scope = event.tag.slice(SYNC_TAG_PREFIX.length);
    const done = replayOutbox(scope, options).then(
      () => onReplay?.(scope, null),
      (err) => {
        onReplay?.(scope, err);
        throw err;
      },
    );
    event.waitUntil(done);
  };
  worker.addEventListener('sync', listener);
  return () => worker.removeEventListener('sync', listener);
}
