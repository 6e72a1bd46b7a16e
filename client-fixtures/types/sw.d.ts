// Types of `@dukasync/client/sw`.
import type { OpenOptions } from './index.js';

export const SYNC_TAG_PREFIX: 'dukasync-outbox:';
export function outboxSyncTag(scope: string): string;

/** The part of a ServiceWorkerRegistration this needs (Background Sync is not in TypeScript's DOM types). */
export interface SyncRegistrationLike {
  sync?: { register(tag: string): Promise<void> };
}

export function requestOutboxSync(scope: string, registration?: SyncRegistrationLike | ServiceWorkerRegistration): Promise<boolean>;

export interface ReplayOptions extends Omit<OpenOptions, 'scope'> {
  /** Push attempts before giving up until the browser's next retry (60). */
  maxAttempts?: number;
}

export function replayOutbox(scope: string, options?: ReplayOptions): Promise<void>;

/** The part of a service worker's global scope this needs (`self`). */
export interface SyncWorkerLike {
  addEventListener(type: 'sync', listener: (event: any) => void): void;
  removeEventListener(type: 'sync', listener: (event: any) => void): void;
}

export function registerOutboxSync(
  worker: SyncWorkerLike,
  options?: ReplayOptions & { onReplay?: (scope: string, error: unknown | null) => void },
): () => void;
