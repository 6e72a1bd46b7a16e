// Types of `@dukasync/client/syncable`: a Dexie.Syncable protocol named `dukasync`.
import type { Encoding, FeedChange, FetchCredentials, Operation } from './index.js';

export interface SyncableProtocolOptions {
  fetch?: typeof fetch;
  /** How long each pull waits for a change (long-poll, default 25); 0 polls every `pollMs` instead. */
  longPollSecs?: number;
  /** Delay before reconnecting after a retryable error, and the poll interval without long-polls (default 2000). */
  pollMs?: number;
  encoding?: Encoding;
  fetchCredentials?: FetchCredentials;
  [option: string]: unknown;
}

/** Registers the protocol on the Dexie class that has Dexie.Syncable loaded (`dexie-observable`, `dexie-syncable`). */
export function registerDukasyncProtocol(Dexie: any, options?: SyncableProtocolOptions): void;

export interface SyncableChange {
  type: 1 | 2 | 3;
  table: string;
  key: unknown;
  obj?: Record<string, unknown>;
  mods?: Record<string, unknown>;
}

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export function toOperation(change: SyncableChange): WithoutId<Exclude<Operation, { type: 'command' }>>;
export function fromFeedChange(change: FeedChange): SyncableChange;
