import { StrictMode, useState, type FormEvent } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { SyncClient, type FetchCredentials, type Role } from '@dukasync/client';
import { SyncProvider } from '@dukasync/client/react';
import { App, SCOPE } from './App';

// Where tokens come from, first match wins:
// - `#token=dks_...` in the address (a device token handed over some other way);
// - this phone's enrollment, kept in localStorage after pairing by code (the form below, protocol §3.3);
// - `#session`: the app's own backend with its session cookie (`fetchCredentials`).
// Otherwise the page asks for the server and a pairing code.
const DEVICE_KEY = 'dukasync-example-device';

interface Enrollment {
  baseUrl: string;
  token: string;
  role?: Role;
}

const hash = new URLSearchParams(location.hash.slice(1));
const fetchCredentials: FetchCredentials = async () => {
  const r = await fetch('/session/sync-token', { credentials: 'include' });
  if (!r.ok) return null;
  const body: { token: string; expires_at?: string } = await r.json();
  return { token: body.token, expiresAt: body.expires_at };
};

function stored(): Enrollment | null {
  try {
    const raw = localStorage.getItem(DEVICE_KEY);
    return raw ? (JSON.parse(raw) as Enrollment) : null;
  } catch {
    return null;
  }
}

const root: Root = createRoot(document.getElementById('root')!);

async function start(enrollment: Enrollment | null): Promise<void> {
  const client = await SyncClient.open({
    scope: SCOPE,
    baseUrl: enrollment?.baseUrl ?? '',
    ...(enrollment ? { token: enrollment.token } : { fetchCredentials }),
    // The app's own tables beside the synced ones; changing them raises the Dexie version.
    appStores: { notes: 'id, createdAt' },
  });
  client.start();
  window.addEventListener('online', () => client.nudge());
  if ('serviceWorker' in navigator) await navigator.serviceWorker.register('/sw.js', { type: 'module' });
  root.render(
    <StrictMode>
      <SyncProvider client={client}>
        <App knownRole={enrollment?.role} />
      </SyncProvider>
    </StrictMode>,
  );
}

/** Enrollment by pairing code: the owner's phone made the code; this phone redeems it for its own token. */
function Enroll() {
  const [server, setServer] = useState(location.origin);
  const [code, setCode] = useState('');
  const [deviceName, setDeviceName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const baseUrl = server.replace(/\/+$/, '');
      const issued = await SyncClient.pair({ baseUrl, code, ...(deviceName.trim() ? { deviceName: deviceName.trim() } : {}) });
      const role = issued.scopes.find((s) => s.scope === SCOPE)?.role;
      if (!role) throw new Error(`this code gives no access to ${SCOPE}`);
      const enrollment: Enrollment = { baseUrl, token: issued.token, role };
      localStorage.setItem(DEVICE_KEY, JSON.stringify(enrollment));
      await start(enrollment);
    } catch (err: unknown) {
      const requestId = (err as { requestId?: string }).requestId;
      setError(`${err instanceof Error ? err.message : String(err)}${requestId ? ` (request ${requestId})` : ''}`);
      setBusy(false);
    }
  }

  return (
    <main>
      <h1>Enroll this phone</h1>
      <form id="enroll" onSubmit={submit}>
        <label>
          Server <input name="server" value={server} onChange={(e) => setServer(e.target.value)} required />
        </label>
        <label>
          Pairing code <input name="code" value={code} onChange={(e) => setCode(e.target.value)} placeholder="K7QXM-4TZ9P" required />
        </label>
        <label>
          Device name <input name="device" value={deviceName} onChange={(e) => setDeviceName(e.target.value)} placeholder="till-2" />
        </label>
        <button type="submit" disabled={busy}>
          Enroll
        </button>
      </form>
      {error && (
        <p role="alert" id="enroll-error">
          {error}
        </p>
      )}
    </main>
  );
}

function main(): Promise<void> {
  const token = hash.get('token');
  if (token) return start({ baseUrl: '', token });
  const enrollment = stored();
  if (enrollment) return start(enrollment);
  if (hash.has('session')) return start(null);
  root.render(
    <StrictMode>
      <Enroll />
    </StrictMode>,
  );
  return Promise.resolve();
}

main().catch((err: unknown) => {
  document.body.textContent = `Could not start: ${err instanceof Error ? err.message : String(err)}`;
});
