import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { SyncClient, type FetchCredentials } from '@dukasync/client';
import { SyncProvider } from '@dukasync/client/react';
import { App, SCOPE } from './App';

// Where tokens come from: a device token in the address (`#token=dks_...`, e.g. from pairing), else the app's
// own backend with its session cookie.
const hashToken = new URLSearchParams(location.hash.slice(1)).get('token') ?? undefined;
const fetchCredentials: FetchCredentials = async () => {
  const r = await fetch('/session/sync-token', { credentials: 'include' });
  if (!r.ok) return null;
  const body: { token: string; expires_at?: string } = await r.json();
  return { token: body.token, expiresAt: body.expires_at };
};

async function main(): Promise<void> {
  const client = await SyncClient.open({
    scope: SCOPE,
    baseUrl: '',
    ...(hashToken ? { token: hashToken } : { fetchCredentials }),
    // The app's own tables beside the synced ones; changing them raises the Dexie version.
    appStores: { notes: 'id, createdAt' },
  });
  client.start();
  window.addEventListener('online', () => client.nudge());
  if ('serviceWorker' in navigator) await navigator.serviceWorker.register('/sw.js', { type: 'module' });
  createRoot(document.getElementById('root')!).render(
    <StrictMode>
      <SyncProvider client={client}>
        <App />
      </SyncProvider>
    </StrictMode>,
  );
}

main().catch((err: unknown) => {
  document.body.textContent = `Could not start: ${err instanceof Error ? err.message : String(err)}`;
});
