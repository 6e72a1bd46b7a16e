import { useState, type FormEvent } from 'react';
import { useLiveQuery } from 'dexie-react-hooks';
import { formatMoney, type Row } from '@dukasync/client';
import { useDeviceEvents, useOutboxCount, useSyncClient, useSyncState } from '@dukasync/client/react';
import { requestOutboxSync } from '@dukasync/client/sw';

export const SCOPE = 'retail';

interface Customer extends Row {
  name: string;
  credit_limit?: string;
}

interface Note {
  id: string;
  createdAt: string;
  text: string;
}

function SyncBadge() {
  const { online, pushing, pulling, error, lastSyncAt } = useSyncState();
  const queued = useOutboxCount();
  const label = online === false ? 'offline' : pushing || pulling ? 'syncing' : 'online';
  return (
    <header>
      <strong data-testid="sync-state">{label}</strong> · {queued} queued
      {lastSyncAt && <small> · last sync {new Date(lastSyncAt).toLocaleTimeString()}</small>}
      {error && (
        <p role="alert">
          {error.message} ({error.code}
          {error.requestId ? `, request ${error.requestId}` : ''})
        </p>
      )}
    </header>
  );
}

function Customers() {
  const client = useSyncClient();
  // A synced table, live from IndexedDB: re-renders when a pull or a local write changes it.
  const customers = useLiveQuery(() => client.db.table<Customer, string>('customers').orderBy('name').toArray(), [client]);
  const [name, setName] = useState('');

  async function add(e: FormEvent) {
    e.preventDefault();
    if (!name.trim()) return;
    await client.create('customers', { id: crypto.randomUUID(), name: name.trim(), credit_limit: '0.00' });
    setName('');
    await requestOutboxSync(SCOPE); // Background Sync sends it even if the page is closed before it is online
  }

  if (!customers) return <p>Loading…</p>;
  return (
    <section>
      <h2>Customers</h2>
      <form onSubmit={add}>
        <input value={name} onChange={(e) => setName(e.target.value)} placeholder="Name" />
        <button type="submit">Add</button>
      </form>
      <ul>
        {customers.map((c) => (
          <li key={c.id}>
            {c.name} {c.credit_limit !== undefined && <small>limit {formatMoney(c.credit_limit)}</small>}
          </li>
        ))}
      </ul>
    </section>
  );
}

function Notes() {
  const client = useSyncClient();
  // The app's own table (appStores): never synced, versioned with the synced ones.
  const notes = useLiveQuery(() => client.db.table<Note, string>('notes').orderBy('createdAt').reverse().toArray(), [client]);
  return (
    <section>
      <h2>Notes on this phone</h2>
      <button onClick={() => client.db.table<Note, string>('notes').add({ id: crypto.randomUUID(), createdAt: new Date().toISOString(), text: 'Count the sugar' })}>
        Add a note
      </button>
      <ul>{notes?.map((n) => <li key={n.id}>{n.text}</li>)}</ul>
    </section>
  );
}

function NeedsAttention() {
  const { loaded, conflicts, rejections, deadLetters } = useDeviceEvents();
  if (!loaded) return null;
  if (conflicts.length + rejections.length + deadLetters.length === 0) return <p>Nothing needs attention.</p>;
  return (
    <section>
      <h2>Needs attention</h2>
      <ul>
        {conflicts.map((c) => (
          <li key={c.id}>
            Conflict on {c.op?.type === 'command' ? c.op.command : c.op?.collection} (review {c.conflict_id})
          </li>
        ))}
        {rejections.map((r) => (
          <li key={r.id}>
            Rejected: {r.code} — {r.message}
          </li>
        ))}
        {deadLetters.map((d) => (
          <li key={d.id}>
            Set aside: {d.code} — {d.message}
          </li>
        ))}
      </ul>
    </section>
  );
}

export function App() {
  return (
    <main>
      <SyncBadge />
      <Customers />
      <Notes />
      <NeedsAttention />
    </main>
  );
}
