// The React bindings (`@dukasync/client/react`) rendered by React itself (react-test-renderer), over a real client
// and server: the hooks show the outbox count and sync state as they change, and this device's rejections once the
// server answers; they refuse to run outside a provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createElement } from 'react';
import TestRenderer from 'react-test-renderer';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { OWNER, startServer } from './harness.js';
import { device, eventually } from './devices.js';
import { Dexie } from '../src/index.js';
import { SyncProvider, useDeviceEvents, useOutboxCount, useSyncClient, useSyncState } from '../src/react.js';

// As in a browser, Dexie has a default IndexedDB (its liveQuery runs only then); each device has its own.
Dexie.dependencies.indexedDB ??= new IDBFactory();
Dexie.dependencies.IDBKeyRange ??= IDBKeyRange;

/** Mounting and unmounting go through act(); later updates come from IndexedDB and the network, as in an app. */
async function act(fn) {
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  try {
    await TestRenderer.act(fn);
  } finally {
    globalThis.IS_REACT_ACT_ENVIRONMENT = false;
  }
}

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

function Status() {
  const client = useSyncClient();
  const state = useSyncState();
  const queued = useOutboxCount();
  const { loaded, rejections } = useDeviceEvents();
  return createElement(
    'p',
    null,
    JSON.stringify({ scope: client.scope, queued, outbox: state.outbox, pushing: state.pushing, loaded, rejected: rejections.map((r) => r.code) }),
  );
}

const shown = (renderer) => JSON.parse(renderer.toJSON().children.join(''));

test('the hooks follow the outbox, the sync state and the device\'s rejections', async () => {
  const { client } = await device(server, server.token(OWNER, 'react-phone'));
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(createElement(SyncProvider, { client }, createElement(Status)));
  });
  const first = shown(renderer);
  assert.equal(first.scope, 'retail');
  assert.equal(first.queued, 0);
  assert.deepEqual(first.rejected, []);
  await eventually('the device events loaded', () => shown(renderer).loaded);

  await client.create('customers', { id: 'react-1', name: 'Shown' });
  await client.update('customers', 'no-such-customer', { name: 'Never' });
  await eventually('two queued', () => shown(renderer).queued === 2 && shown(renderer).outbox === 2);

  await client.push();
  const after = await eventually('the rejection shown', () => shown(renderer).rejected.length === 1 && shown(renderer));
  assert.deepEqual(after.rejected, ['row_not_found']);
  assert.equal(after.queued, 0);
  assert.equal(after.pushing, false);
  await act(async () => renderer.unmount());
  await client.close();
});

test('the hooks refuse to run outside a SyncProvider', async () => {
  const errors = [];
  const original = console.error;
  console.error = () => {}; // React reports the thrown error too
  try {
    await act(async () => {
      TestRenderer.create(createElement(Status), { onUncaughtError: (e) => errors.push(e) });
    });
  } catch (err) {
    errors.push(err);
  } finally {
    console.error = original;
  }
  assert.match(String(errors[0]?.message ?? errors[0]), /inside <SyncProvider/);
});
