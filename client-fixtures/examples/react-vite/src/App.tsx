import { useCallback, useEffect, useState, useSyncExternalStore, type FormEvent } from 'react';
import { useLiveQuery } from 'dexie-react-hooks';
import {
  formatMoney,
  fromCents,
  fromMilli,
  toCents,
  toMilli,
  type ConflictDetail,
  type ConflictSummary,
  type DeviceEvent,
  type OutboxEntry,
  type Role,
  type Row,
} from '@dukasync/client';
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

interface Product extends Row {
  name: string;
  price: string;
  active?: boolean;
}

interface StockLevel extends Row {
  product_id: string;
  quantity: string;
}

interface SaleLine {
  product_id: string;
  quantity: string;
  unit_price: string;
}

interface Sale extends Row {
  sold_at: string;
  lines: SaleLine[];
  payments: { method: string; amount: string }[];
  status?: string;
}

/** A decision as it reaches every phone through the feed: a `conflicts` row (protocol §11). */
interface ConflictRow extends Row {
  kind: string;
  status: 'open' | 'resolved';
  decision?: string;
}

const KINDS: Record<string, string> = {
  field_conflict: 'Edited on two devices',
  rejected_operation: 'Rejected',
  oversold_stock: 'Sold more than in stock',
  stale_price: 'Sold at an old price',
  unknown_product: 'Sold an unknown product',
  implausible_time: 'Phone clock was wrong',
};
const kindLabel = (kind: string) => KINDS[kind] ?? kind.replaceAll('_', ' ');
/** The decisions a kind allows (§11): a field conflict picks a side (or merges); every other kind is accepted. */
const decisionsFor = (kind: string): string[] => (kind === 'field_conflict' ? ['keep_server', 'take_client'] : ['accept']);

// `pulling` is also true while a long-poll waits for changes, so only pushing counts as "syncing".

/** The browser's own idea of connectivity, which changes before the client's next request fails. */
function useNavigatorOnline(): boolean {
  return useSyncExternalStore(
    (onChange) => {
      window.addEventListener('online', onChange);
      window.addEventListener('offline', onChange);
      return () => {
        window.removeEventListener('online', onChange);
        window.removeEventListener('offline', onChange);
      };
    },
    () => navigator.onLine,
  );
}

function SyncBadge() {
  const { online, pushing, error, lastSyncAt } = useSyncState();
  const queued = useOutboxCount();
  const browserOnline = useNavigatorOnline();
  const state = !browserOnline || online === false ? 'offline' : error ? 'error' : pushing ? 'syncing' : 'online';
  return (
    <header>
      <strong id="sync" data-state={state} data-outbox={queued}>
        {state} · {queued} queued
      </strong>
      {lastSyncAt && <small> · last sync {new Date(lastSyncAt).toLocaleTimeString()}</small>}
      {error && (
        <p role="alert" id="sync-error" data-code={error.code}>
          {error.message} ({error.code}
          {error.requestId ? `, request ${error.requestId}` : ''})
        </p>
      )}
    </header>
  );
}

/** The till: products from the synced `products` table, stock from `stock_levels` less the sales still queued. */
function Sell() {
  const client = useSyncClient();
  const products = useLiveQuery(() => client.db.table<Product, string>('products').orderBy('name').toArray(), [client]);
  const levels = useLiveQuery(() => client.db.table<StockLevel, string>('stock_levels').toArray(), [client]);
  const outbox = useLiveQuery(() => client.db.table<OutboxEntry, number>('local_outbox').toArray(), [client]);
  const [cart, setCart] = useState<Record<string, number>>({});

  if (!products || !levels || !outbox) return <p>Loading…</p>;
  const stock = new Map(levels.map((l) => [l.product_id, toMilli(l.quantity)]));
  for (const e of outbox) {
    if (e.op.type !== 'command' || e.op.command !== 'record_sale') continue;
    for (const l of (e.op.args as { lines: SaleLine[] }).lines) {
      const left = stock.get(l.product_id);
      if (left !== undefined) stock.set(l.product_id, left - toMilli(l.quantity));
    }
  }
  const catalogue = products.filter((p) => p.active !== false);
  const lines: SaleLine[] = Object.entries(cart).map(([id, qty]) => ({
    product_id: id,
    quantity: String(qty),
    unit_price: catalogue.find((p) => p.id === id)?.price ?? '0.00',
  }));
  const total = lines.reduce((sum, l) => sum + toCents(l.unit_price) * BigInt(l.quantity), 0n);

  async function recordSale() {
    if (lines.length === 0) return;
    // A command: the server makes the sale's rows; queued in the outbox, so it works offline.
    await client.command('record_sale', crypto.randomUUID(), {
      sold_at: new Date().toISOString(),
      lines,
      payments: [{ method: 'cash', amount: fromCents(total) }],
    });
    setCart({});
    await requestOutboxSync(SCOPE);
  }

  return (
    <section>
      <h2>Sell</h2>
      <ul id="products">
        {catalogue.map((p) => {
          const left = stock.get(p.id);
          return (
            <li key={p.id}>
              <button
                type="button"
                data-product={p.id}
                data-stock={left === undefined ? '' : fromMilli(left)}
                onClick={() => setCart((c) => ({ ...c, [p.id]: (c[p.id] ?? 0) + 1 }))}
              >
                {p.name} · {formatMoney(p.price)} {left !== undefined && <small>{fromMilli(left)} in stock</small>}
                {cart[p.id] ? <b> ×{cart[p.id]}</b> : null}
              </button>
            </li>
          );
        })}
      </ul>
      <button type="button" id="record-sale" disabled={lines.length === 0} onClick={recordSale}>
        Record sale {lines.length > 0 && `· ${formatMoney(fromCents(total))}`}
      </button>
    </section>
  );
}

/** Sales of this scope (synced) and those still queued here; a conflict on one flags it until it is reviewed. */
function Sales() {
  const client = useSyncClient();
  const { conflicts } = useDeviceEvents();
  const hasConflicts = client.synced.includes('conflicts');
  const sales = useLiveQuery(() => client.db.table<Sale, string>('sales').orderBy('sold_at').reverse().limit(20).toArray(), [client]);
  const decided = useLiveQuery(
    () => (hasConflicts ? client.db.table<ConflictRow, string>('conflicts').toArray() : Promise.resolve<ConflictRow[]>([])),
    [client, hasConflicts],
  );
  const pending = useLiveQuery(() => client.db.table<OutboxEntry, number>('local_outbox').toArray(), [client]);
  if (!sales || !decided || !pending) return null;
  const resolutions = new Map(decided.filter((c) => c.status === 'resolved').map((c) => [c.id, c]));
  const onSale = (id: string): DeviceEvent[] => conflicts.filter((e) => e.op?.type === 'command' && e.op.key === id && e.conflict_id);
  const queued = pending.filter((e) => e.op.type === 'command' && e.op.command === 'record_sale').map((e) => e.op.key);
  return (
    <section>
      <h2>Sales</h2>
      <ul id="sales">
        {queued.map((id) => (
          <li key={id} data-sale={id} data-pending="true">
            {id.slice(0, 8)} · queued
          </li>
        ))}
        {sales.map((s) => {
          const events = onSale(s.id);
          const open = events.filter((e) => !resolutions.has(e.conflict_id!));
          const flag = events.length === 0 ? undefined : open.length ? 'flagged' : 'reviewed';
          return (
            <li key={s.id} data-sale={s.id} data-pending="false">
              {s.id.slice(0, 8)} · {formatMoney(fromCents(s.payments.reduce((t, p) => t + toCents(p.amount), 0n)))}
              {flag && (
                <span data-flag={flag} data-conflicts={events.map((e) => e.conflict_id).join(' ')}>
                  {' '}
                  ·{' '}
                  {flag === 'flagged'
                    ? 'flagged for review'
                    : `reviewed: ${events.map((e) => resolutions.get(e.conflict_id!)?.decision ?? '').join(', ')}`}
                </span>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

/** Owners and managers: the scope's open conflicts (`Api.conflicts`), each with its detail and allowed decisions. */
function Review() {
  const client = useSyncClient();
  const [list, setList] = useState<ConflictSummary[] | null>(null);
  const [detail, setDetail] = useState<ConflictDetail | null>(null);
  const [error, setError] = useState<{ message: string; code?: string; requestId?: string } | null>(null);

  const fail = (err: unknown) => {
    const e = err as { message?: string; code?: string; requestId?: string };
    setError({ message: e.message ?? String(err), code: e.code, requestId: e.requestId });
  };
  const refresh = useCallback(async () => {
    try {
      const page = await client.api.conflicts({ scope: SCOPE, status: 'open', limit: 200 });
      setList(page.conflicts);
      setError(null);
    } catch (err) {
      fail(err);
    }
  }, [client]);

  useEffect(() => {
    void refresh();
    // New rows from the feed may come with new conflicts (another phone's sale): list again.
    const onChanges = () => void refresh();
    client.addEventListener('changes', onChanges);
    return () => client.removeEventListener('changes', onChanges);
  }, [client, refresh]);

  async function open(id: string) {
    try {
      setDetail(await client.api.conflict(id));
    } catch (err) {
      fail(err);
    }
  }

  async function decide(c: ConflictDetail, decision: string) {
    try {
      setDetail(await client.api.resolveConflict(c.id, { decision, note: 'reviewed on the phone' }));
      await refresh();
    } catch (err) {
      fail(err);
    }
  }

  return (
    <section>
      <h2>
        Review <button type="button" onClick={() => void refresh()}>Refresh</button>
      </h2>
      {error && (
        <p role="alert" id="review-error" data-code={error.code} data-request-id={error.requestId}>
          {error.message}
          {error.requestId && ` · request ${error.requestId}`}
        </p>
      )}
      <ul id="review-list" data-count={list?.length ?? ''}>
        {list?.map((c) => (
          <li key={c.id}>
            <button type="button" data-conflict={c.id} data-kind={c.kind} onClick={() => void open(c.id)}>
              {kindLabel(c.kind)} <code>{c.kind}</code> · {c.collection} · {c.key}
            </button>
          </li>
        ))}
      </ul>
      {detail && (
        <article id="review-detail" data-conflict={detail.id} data-kind={detail.kind} data-status={detail.status}>
          <h3>
            {kindLabel(detail.kind)} <code>{detail.kind}</code>
          </h3>
          <p>
            {detail.collection} · {detail.key}
            {detail.operation && ` · by ${detail.operation.user?.name ?? detail.operation.user?.email ?? ''} on ${detail.operation.device?.name ?? 'a device'}`}
          </p>
          {detail.detail && <pre data-detail="">{JSON.stringify(detail.detail, null, 1)}</pre>}
          {detail.diff && (
            <table>
              <tbody>
                {detail.diff.map((d) => (
                  <tr key={d.path} data-path={d.path}>
                    <th>{d.path}</th>
                    <td>{JSON.stringify(d.base)}</td>
                    <td>{JSON.stringify(d.client)}</td>
                    <td>{JSON.stringify(d.server)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {detail.status === 'open' ? (
            decisionsFor(detail.kind).map((d) => (
              <button key={d} type="button" data-decision={d} onClick={() => void decide(detail, d)}>
                {d}
              </button>
            ))
          ) : (
            <p className="resolved">Resolved: {detail.resolution?.record.decision}</p>
          )}
        </article>
      )}
    </section>
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

/** Whether this phone's user reviews conflicts: from enrollment, else `GET /v1/scopes` once online. */
function useRole(knownRole?: Role): Role | undefined {
  const client = useSyncClient();
  const [role, setRole] = useState<Role | undefined>(knownRole);
  const { online } = useSyncState();
  useEffect(() => {
    if (role || !online) return;
    client.api
      .scopes()
      .then((scopes) => setRole(scopes.find((s) => s.id === SCOPE)?.role))
      .catch(() => {});
  }, [client, role, online]);
  return role;
}

export function App({ knownRole }: { knownRole?: Role }) {
  const role = useRole(knownRole);
  return (
    <main data-role={role ?? ''}>
      <SyncBadge />
      <Sell />
      <Sales />
      {(role === 'owner' || role === 'manager') && <Review />}
      <NeedsAttention />
      <Customers />
      <Notes />
    </main>
  );
}
