// Framework-neutral observable views of a SyncClient, in the shape React's `useSyncExternalStore` takes
// (`subscribe(listener) → unsubscribe`, `getSnapshot()`), so Vue, Svelte or plain pages can use them too. The React
// hooks in react.js are built on them.
//
// Invariant: `getSnapshot()` returns the same object until something changed (React compares snapshots by
// identity; a fresh object on every call would re-render forever).
import { liveQuery } from './vendor.js';

/**
 * The client's sync state (`client.state`: online, outbox, pushing, pulling, lastSyncAt, head, error), updated on
 * every `state` event. The client replaces `state` on each change, so the snapshot is that object itself.
 */
export function syncStateStore(client) {
  return {
    subscribe(listener) {
      client.addEventListener('state', listener);
      return () => client.removeEventListener('state', listener);
    },
    getSnapshot: () => client.state,
  };
}

const NOT_LOADED = Object.freeze({ loaded: false, conflicts: [], rejections: [], deadLetters: [], error: null });

/**
 * This device's conflicts and rejections, live from the scope's database: the server's answers `conflict` and
 * `rejected` kept in `local_events` (each with `op`, the operation this device sent, and the server's `code`,
 * `message`, `conflict_id`), and the operations set aside as malformed in `local_dead_letter`. In sequence order.
 * One Dexie live query runs while at least one listener is subscribed.
 */
export function deviceEventsStore(client) {
  const { db } = client;
  const listeners = new Set();
  let snapshot = NOT_LOADED;
  let subscription = null;
  const notify = () => listeners.forEach((l) => l());
  const read = () =>
    db.transaction('r', db.local_events, db.local_dead_letter, async () => ({
      events: await db.local_events.orderBy('seq').toArray(),
      deadLetters: await db.local_dead_letter.orderBy('seq').toArray(),
    }));
  return {
    subscribe(listener) {
      listeners.add(listener);
      subscription ??= liveQuery(read).subscribe({
        next({ events, deadLetters }) {
          snapshot = {
            loaded: true,
            conflicts: events.filter((e) => e.status === 'conflict'),
            rejections: events.filter((e) => e.status === 'rejected'),
            deadLetters,
            error: null,
          };
          notify();
        },
        error(error) {
          snapshot = { ...snapshot, error };
          notify();
        },
      });
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && subscription) {
          subscription.unsubscribe();
          subscription = null;
        }
      };
    },
    getSnapshot: () => snapshot,
  };
}
