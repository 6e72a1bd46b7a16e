// Types of `@dukasync/client` (hand-written beside the plain ES modules in ../src; checked by `tsc --strict` in
// test/package.test.js through examples/react-vite). Protocol references are to protocol/README.md.
import type { Dexie } from 'dexie';

export { Dexie, liveQuery } from 'dexie';

// ---- Wire types

/** A row as the feed delivers it: plain JSON with a string `id`; money and quantities are decimal strings. */
export interface Row {
  id: string;
  [field: string]: unknown;
}

export type Role = 'owner' | 'manager' | 'cashier' | 'backend' | (string & {});

/** A collection definition as served by `GET /v1/collections` (protocol §9). */
export interface CollectionDefinition {
  /** Lowercase letters, digits and `_`; never starts with `local_`. */
  name: string;
  /** Always `"id"` for now. */
  key?: 'id';
  /** Who writes rows: devices (generic operations), the ERP's backend only (§14), or the server's commands only. */
  writer: 'device' | 'backend' | 'server';
  /** Roles allowed each generic operation (empty lists when devices do not write the collection). */
  rights: { create: Role[]; update: Role[]; delete: Role[] };
  conflict_policy: 'server_wins' | 'client_wins' | 'manual';
  /** Also served whole as a snapshot with an ETag (§12). */
  reference: boolean;
  /** Dexie index specs besides the key: `name`, `address.city`, `[route+day]`. */
  indexes: string[];
  /** A JSON Schema (draft 2020-12) rows written by devices or the backend must satisfy, or null. */
  schema: Record<string, unknown> | null;
}

/** One change of the feed (§7.4). */
export type FeedChange =
  | { version: number; collection: string; key: string; op: 'upsert'; data: Row }
  | { version: number; collection: string; key: string; op: 'delete'; data?: null };

/** A page of `GET /v1/scopes/{scope}/changes` (§7.2). */
export interface FeedPage {
  changes: FeedChange[];
  cursor: string;
  has_more: boolean;
  head: number;
  [extra: string]: unknown;
}

/** An operation as sent in `POST /ops` (without `seq`) and kept in the outbox (§10). */
export type Operation =
  | { id: string; type: 'create' | 'put'; collection: string; key: string; data: Row; base_version?: number }
  | { id: string; type: 'update'; collection: string; key: string; mods: Record<string, unknown>; base_version?: number }
  | { id: string; type: 'delete'; collection: string; key: string }
  | { id: string; type: 'command'; command: string; key: string; args: unknown };

/** One result of a push (§10). */
export interface OperationResult {
  seq: number;
  id: string;
  status: 'applied' | 'conflict' | 'rejected' | 'duplicate';
  versions?: number[];
  conflict_id?: string;
  code?: string;
  message?: string;
  /** For `duplicate`: the status the operation had when it was first applied. */
  original?: 'applied' | 'conflict' | 'rejected';
  [extra: string]: unknown;
}

/** The answer of `POST /v1/scopes/{scope}/ops`. */
export interface PushAnswer {
  results: OperationResult[];
  last_seq: number;
  /** Operations up to this sequence are held beyond the primary's disk (0: not confirmed yet; protocol §10.3). */
  durable_seq?: number;
}

/** A scope the token belongs to (`GET /v1/scopes`). */
export interface ScopeInfo {
  id: string;
  name: string;
  role: Role;
  [extra: string]: unknown;
}

// ---- Errors and transport

/** An error of the protocol (§4): the stable `code`, the HTTP `status` (0 when no answer came), `details`. */
export class ApiError extends Error {
  constructor(status: number, code: string, message: string, details?: Record<string, any>, requestId?: string | null);
  name: 'ApiError';
  /** HTTP status, or 0 when the request never got an answer (offline, timeout, aborted). */
  status: number;
  /** The protocol's error code (`sequence_gap`, `schema_violation`, ...), `network` for status 0. */
  code: string;
  details?: Record<string, any>;
  /** The server's `x-request-id` of the answer (null when no answer came): quote it when reporting a problem. */
  requestId: string | null;
  /** Safe to retry unchanged with backoff: no answer, 408, 429, or a 5xx. */
  readonly retryable: boolean;
}

/** What the app's token source returns. `expiresAt`: Date, epoch milliseconds or ISO 8601. */
export interface FetchedCredentials {
  token: string;
  expiresAt?: Date | number | string | null;
}

/**
 * The app's token source (e.g. its backend, with the session cookie). Called when there is no token, after a 401,
 * and shortly before `expiresAt`; null or a throw pauses sync with the outbox kept.
 */
export type FetchCredentials = () => Promise<FetchedCredentials | null | undefined>;

export class Credentials {
  constructor(options?: { token?: string; fetchCredentials?: FetchCredentials; refreshBeforeMs?: number });
  readonly token: string | null;
  readonly refreshable: boolean;
  ready(): Promise<void>;
  refresh(stale: string | null, options?: { refused?: boolean }): Promise<string>;
  reject(token: string): void;
}

export type Encoding = 'json' | 'msgpack';

export interface ApiOptions {
  /** The server's origin; '' for the page's own origin. */
  baseUrl?: string;
  token?: string;
  fetchCredentials?: FetchCredentials;
  /** A token source shared with other Api instances (instead of `token`/`fetchCredentials`). */
  credentials?: Credentials;
  encoding?: Encoding;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export class Api {
  constructor(options?: ApiOptions);
  baseUrl: string;
  credentials: Credentials;
  encoding: Encoding;
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<{ status: number; headers: Headers; body: T }>;
  scopes(options?: RequestOptions): Promise<ScopeInfo[]>;
  collections(options?: RequestOptions): Promise<CollectionDefinition[]>;
  changes(scope: string, since: string, options?: { wait?: number; limit?: number; signal?: AbortSignal }): Promise<FeedPage>;
  checksum(scope: string, version: number, options?: RequestOptions): Promise<ChecksumReport>;
  pushOps(scope: string, body: { client_id: string; ops: (Operation & { seq: number })[] }, options?: RequestOptions): Promise<PushAnswer>;
  reference(scope: string, dataset: string, etag?: string | null, options?: RequestOptions): Promise<{ status: 200 | 304; etag: string | null; body: ReferenceSnapshot | null }>;
  /** Conflicts admin (§11, owners and managers): one page, newest first. */
  conflicts(query?: ConflictQuery, options?: RequestOptions): Promise<{ conflicts: ConflictSummary[]; next_cursor?: string }>;
  conflict(id: string, options?: RequestOptions): Promise<ConflictDetail>;
  resolveConflict(id: string, body: ConflictDecision, options?: RequestOptions): Promise<ConflictDetail>;
}

/** Filters of `GET /v1/admin/conflicts` (§11). */
export interface ConflictQuery {
  scope?: string;
  status?: 'open' | 'resolved';
  collection?: string;
  /** `field_conflict`, `rejected_operation`, `oversold_stock`, ...: an open list (§1). */
  kind?: string;
  device?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

export interface ConflictSummary {
  id: string;
  scope: string;
  kind: string;
  status: 'open' | 'resolved';
  collection: string;
  key: string;
  fields: string[];
  device_id: string;
  user_id: string;
  created_at: string;
}

/** `GET /v1/admin/conflicts/{id}`: everything needed to decide (§11). */
export interface ConflictDetail extends ConflictSummary {
  base: Record<string, any> | null;
  server: Record<string, any> | null;
  client: Record<string, any> | null;
  diff: { path: string; base: unknown; server: unknown; client: unknown }[] | null;
  detail: Record<string, any> | null;
  operation?: { client_id: string; op_id: string; seq: number; device?: { id: string; name: string }; user?: { id: string; email: string; name: string } } | null;
  row_version?: number | null;
  current?: { data?: Record<string, any>; version: number } | null;
  resolution?: { resolved_at: string; resolved_by: string; record: { decision: string; value: unknown; note?: string | null; versions: number[] } };
}

/** `POST /v1/admin/conflicts/{id}/resolve`: `keep_server`, `take_client`, `merge` (field conflicts) or `accept`. */
export interface ConflictDecision {
  decision: string;
  value?: unknown;
  note?: string;
  expected_version?: number;
}

/** `GET /v1/scopes/{scope}/checksum` (§8). */
export interface ChecksumReport {
  version: number;
  checksum: number;
  count: number;
  collections: { collection: string; checksum: number; count: number }[];
  [extra: string]: unknown;
}

export interface ReferenceSnapshot {
  rows: Row[];
  checksum: number;
  [extra: string]: unknown;
}

// ---- Pairing (§3.3)

export interface PairOptions {
  baseUrl?: string;
  /** As shown or scanned (`K7QXM-4TZ9P`); case, dashes and spaces do not matter. */
  code: string;
  deviceName?: string;
  fetch?: typeof fetch;
}

export interface PairResult {
  /** Shown once: pass it to `SyncClient.open`, which stores it. */
  token: string;
  token_id: string;
  device_id: string;
  expires_at: string;
  scopes: { scope: string; role: Role }[];
}

export function pair(options: PairOptions): Promise<PairResult>;

// ---- The client

/** `state.error`: why sync stopped or failed last (null once it works again). */
export interface SyncError {
  /** The protocol's code, `network`, or `client` for a failure of the client itself. */
  code: string;
  message: string;
  /** HTTP status (0: no answer), absent for failures of the client itself. */
  status?: number;
  /** The server's request id of the failed answer, when known. */
  requestId?: string;
}

export interface SyncState {
  /** Whether the server answered last time (null before the first request). */
  online: boolean | null;
  /** Local operations waiting to be sent. */
  outbox: number;
  /**
   * Operations the server acknowledged that no standby holds yet (protocol §10.3): kept on the device, and sent
   * again if the server is restored without them. Always 0 against a server without durable standbys.
   */
  unconfirmed: number;
  pushing: boolean;
  pulling: boolean;
  lastSyncAt: string | null;
  /** The feed's head at the last pull. */
  head: number | null;
  error: SyncError | null;
}

/** An outbox entry: the device's sequence and the operation. */
export interface OutboxEntry {
  seq: number;
  op: Operation;
  at: string;
}

/** A conflict or rejection the server reported for one of this device's operations (kept in `local_events`). */
export interface DeviceEvent extends OperationResult {
  status: 'conflict' | 'rejected';
  /** The operation this device sent. */
  op?: Operation;
  at: string;
}

/** An operation the server refused as malformed, set aside so the queue goes on (kept in `local_dead_letter`). */
export interface DeadLetter {
  id: string;
  seq: number;
  op: Operation;
  code: string;
  message: string;
  at: string;
}

export interface SyncEventMap {
  state: CustomEvent<SyncState>;
  conflict: CustomEvent<DeviceEvent>;
  rejected: CustomEvent<DeviceEvent | (DeadLetter & { status: 'rejected'; deadLetter: true })>;
  reset: CustomEvent<{ reason: string }>;
  divergence: CustomEvent<{ version: number; mismatched: string[] }>;
  changes: CustomEvent<FeedPage>;
}

/** The app's own Dexie tables beside the synced ones, in Dexie's syntax: `{ notes: 'id, createdAt' }`. */
export type AppStores = Record<string, string>;

export interface IndexedDBOptions {
  /** Another IndexedDB (fake-indexeddb in Node), with its IDBKeyRange. */
  indexedDB?: IDBFactory;
  IDBKeyRange?: typeof IDBKeyRange;
  /** Keeps several users or test devices apart: the database is `namespace:scope`. Default `dukasync`. */
  namespace?: string;
}

export interface OpenOptions extends IndexedDBOptions {
  scope: string;
  /** A fixed device token (`dks_...`), stored with the data so a service worker can replay with no page open. */
  token?: string;
  /** The app's token source; tokens then live in memory only. */
  fetchCredentials?: FetchCredentials;
  /** The server's origin ('' or absent: the page's own, or the stored one). */
  baseUrl?: string;
  encoding?: Encoding;
  fetch?: typeof fetch;
  /** Definitions to use instead of asking `GET /v1/collections` (tests, apps that ship them). */
  collections?: CollectionDefinition[];
  /** The app's own tables; a change raises the Dexie version. Absent: the stored ones are kept. */
  appStores?: AppStores;
  /** Most operations per push (100). */
  batchSize?: number;
  /** Most changes per long-poll page (the server's default). */
  pageSize?: number;
  /** Most changes per page while catching up (a pull without `wait`); default 10000, or `pageSize` when only that is given. */
  catchUpPageSize?: number;
  /** The live loop's long-poll `wait`, in seconds (25). */
  longPollSecs?: number;
  /** How often the live loop asks whether acknowledged operations are durable yet, while some are not (ms, 5000). */
  confirmEveryMs?: number;
  /** Exponential backoff with full jitter. */
  backoff?: { baseMs: number; maxMs: number };
}

export class SyncClient extends EventTarget {
  /** Opens (creating or upgrading) the scope's database and a client for it. */
  static open(options: OpenOptions): Promise<SyncClient>;
  /** Exchanges a pairing code for a device token (§3.3). */
  static pair(options: PairOptions): Promise<PairResult>;

  readonly scope: string;
  /** The scope's Dexie database: synced tables, `local_*` bookkeeping, and the app's own tables. */
  readonly db: Dexie;
  readonly api: Api;
  /** name → definition of every synced collection. */
  readonly collections: Map<string, CollectionDefinition>;
  /** The synced tables' names. */
  readonly synced: string[];
  /** The current state; replaced (never mutated) on each change, with a `state` event. */
  readonly state: SyncState;

  clientId(): Promise<string>;

  create(collection: string, row: Row): Promise<OutboxEntry>;
  put(collection: string, row: Row): Promise<OutboxEntry>;
  /** `mods` maps key paths to new values; null removes the field. */
  update(collection: string, key: string, mods: Record<string, unknown>): Promise<OutboxEntry>;
  delete(collection: string, key: string): Promise<OutboxEntry>;
  /** A named server command (e.g. `record_sale`); its rows arrive through the feed. */
  command(name: string, key: string, args: unknown): Promise<OutboxEntry>;

  pushOnce(options?: { signal?: AbortSignal }): Promise<{ done: boolean; answer?: PushAnswer }>;
  push(options?: { signal?: AbortSignal; maxAttempts?: number }): Promise<void>;
  /**
   * Asks the server (an empty push) whether the acknowledged operations still kept are durable yet; deletes those
   * that are and re-queues those the server no longer knows. Resolves to how many stay unconfirmed.
   */
  confirm(options?: { signal?: AbortSignal }): Promise<number>;
  pullOnce(options?: { wait?: number; signal?: AbortSignal }): Promise<FeedPage | { reset: true; has_more: true }>;
  pull(options?: { signal?: AbortSignal }): Promise<FeedPage>;
  reset(reason: string): Promise<void>;
  localChecksums(): Promise<Record<string, { checksum: number; count: number }>>;
  verify(version: number): Promise<{ ok: true; checksum: number } | { ok: false; mismatched: string[] } | { skipped: string }>;
  reference(dataset: string, options?: { signal?: AbortSignal }): Promise<{ status: 200 | 304 | 'offline'; body: ReferenceSnapshot }>;

  /** Starts the live loop: push whenever queued, long-poll the feed, verify after catching up. */
  start(): void;
  stop(): Promise<void>;
  /** Wakes the push loop (e.g. on the browser's `online` event), also out of a failed push's backoff. */
  nudge(): void;
  close(): Promise<void>;

  addEventListener<K extends keyof SyncEventMap>(type: K, listener: (event: SyncEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof SyncEventMap>(type: K, listener: (event: SyncEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

// ---- The local database

/** The client's bookkeeping tables (`local_*`). */
export const INTERNAL_TABLES: string[];
export function databaseName(scope: string, namespace?: string): string;
/** The Dexie stores for definitions plus the app's tables; throws on a clashing or reserved name. */
export function storesFor(collections: Pick<CollectionDefinition, 'name' | 'indexes'>[], appStores?: AppStores): Record<string, string>;

export interface StoredScope {
  verno: number;
  auth: { key: 'auth'; token: string; baseUrl: string } | null;
  collections: CollectionDefinition[] | null;
  stores: Record<string, string> | null;
  appStores: AppStores | null;
}

export function readStored(scope: string, options?: IndexedDBOptions): Promise<StoredScope>;
export function openScopeDb(
  scope: string,
  options?: IndexedDBOptions & { collections?: CollectionDefinition[]; appStores?: AppStores; stored?: StoredScope },
): Promise<Dexie>;

// ---- Checksums (§8)

export function canonical(value: unknown): string;
export function rowHash(collection: string, key: string, data: unknown): number;
export function sum32(hashes: Iterable<number>): number;
/** True when `value` holds no floats and no unsafe integers. */
export function protocolSafe(value: unknown): boolean;

// ---- Decimals: money and quantities as strings

/** "480.5" → 48050n cents; throws RangeError on anything else than a plain decimal with at most two places. */
export function toCents(text: string): bigint;
/** 48050n → "480.50". */
export function fromCents(cents: bigint): string;
/** A whole, positive quantity as a decimal string. */
export function quantity(n: number): string;
/** "3.5" → 3500n thousandths. */
export function toMilli(text: string): bigint;
/** 3500n → "3.5". */
export function fromMilli(milli: bigint): string;
/** "1234.5" → "1,234.5" style, for display only. */
export function formatMoney(text: string): string;

// ---- Stores for any UI framework (`useSyncExternalStore`'s shape)

export interface ExternalStore<T> {
  subscribe(listener: () => void): () => void;
  getSnapshot(): T;
}

export interface DeviceEvents {
  /** False until the first read of the database. */
  loaded: boolean;
  conflicts: DeviceEvent[];
  rejections: DeviceEvent[];
  deadLetters: DeadLetter[];
  error: unknown;
}

export function syncStateStore(client: SyncClient): ExternalStore<SyncState>;
export function deviceEventsStore(client: SyncClient): ExternalStore<DeviceEvents>;
