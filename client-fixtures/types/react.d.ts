// Types of `@dukasync/client/react`.
import type { ReactNode, ReactElement } from 'react';
import type { DeviceEvents, SyncClient, SyncState } from './index.js';

export interface SyncProviderProps {
  /** An open client (render the provider once `SyncClient.open` resolved). */
  client: SyncClient;
  children?: ReactNode;
}

export function SyncProvider(props: SyncProviderProps): ReactElement;
export function useSyncClient(): SyncClient;
export function useSyncState(): SyncState;
export function useOutboxCount(): number;
export function useDeviceEvents(): DeviceEvents;
