// React bindings (`@dukasync/client/react`): a provider holding an open SyncClient, and hooks for its sync state and
// this device's conflicts and rejections. Built on `useSyncExternalStore` over the stores of stores.js; no JSX, so
// the file runs unbuilt. React is an optional peer dependency: only this entry imports it.
//
//   const client = await SyncClient.open({ scope, fetchCredentials });
//   root.render(<SyncProvider client={client}><App /></SyncProvider>);
//   const { online, pushing, outbox, error } = useSyncState();
//
// For the app's own queries over `client.db`, use dexie-react-hooks' `useLiveQuery`.
import { createContext, createElement, useContext, useMemo, useSyncExternalStore } from 'react';
import { deviceEventsStore, syncStateStore } from './stores.js';

const SyncContext = createContext(null);

/** Makes `client` (an open SyncClient) available to the hooks below. */
export function SyncProvider({ client, children }) {
  if (!client) throw new TypeError('SyncProvider needs an open SyncClient (render it once SyncClient.open resolved)');
  const value = useMemo(() => ({ client, state: syncStateStore(client), events: deviceEventsStore(client) }), [client]);
  return createElement(SyncContext.Provider, { value }, children);
}

function useSync() {
  const value = useContext(SyncContext);
  if (!value) throw new Error('dukasync hooks must be used inside <SyncProvider client={...}>');
  return value;
}

/** The SyncClient of the nearest SyncProvider. */
export function useSyncClient() {
  return useSync().client;
}

/** `client.state`: online, outbox (queued operations), pushing, pulling, lastSyncAt, head, error (with requestId when known). */
export function useSyncState() {
  const { state } = useSync();
  return useSyncExternalStore(state.subscribe, state.getSnapshot, state.getSnapshot);
}

/** How many local operations wait to be sent; re-renders only when that number changes. */
export function useOutboxCount() {
  const { client, state } = useSync();
  const outbox = () => client.state.outbox;
  return useSyncExternalStore(state.subscribe, outbox, outbox);
}

/** This device's conflicts, rejections and set-aside operations (`loaded` is false until the first read). */
export function useDeviceEvents() {
  const { events } = useSync();
  return useSyncExternalStore(events.subscribe, events.getSnapshot, events.getSnapshot);
}
