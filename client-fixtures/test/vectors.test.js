// Replays protocol/vectors/*.json, the same files tests/api/vectors.rs replays, from JavaScript: the row hashes with
// the client's own checksum code, and every feed and ops case against a real server, in JSON and MessagePack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { canonical, rowHash, sum32 } from '../src/checksum.js';
import { msgpackDecode, msgpackEncode } from '../src/vendor.js';
import { ROOT, OWNER, startServer } from './harness.js';
import * as lossless from './lossless-json.js';

const read = (name) => readFileSync(path.join(ROOT, 'protocol', 'vectors', name), 'utf8');
const load = (name) => JSON.parse(read(name));

/** `expected` matches `actual`; `{any}` matches any non-empty string, `{uuid}` a UUID, `{tag}` 16 hex digits. */
function matches(expected, actual) {
  if (typeof expected === 'string' && typeof actual === 'string') {
    if (expected === '{any}') return actual.length > 0;
    if (expected === '{uuid}') return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(actual);
    if (expected.includes('{tag}')) {
      const [prefix, suffix] = expected.split('{tag}');
      const middle = actual.slice(prefix.length, actual.length - suffix.length);
      return actual.startsWith(prefix) && actual.endsWith(suffix) && /^[0-9a-f]{16}$/.test(middle);
    }
    return expected === actual;
  }
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && expected.length === actual.length && expected.every((e, i) => matches(e, actual[i]));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false;
    const keys = Object.keys(expected);
    return keys.length === Object.keys(actual).length && keys.every((k) => k in actual && matches(expected[k], actual[k]));
  }
  return expected === actual;
}

async function decoded(res) {
  const type = res.headers.get('content-type');
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { type, body: type === 'application/msgpack' ? msgpackDecode(bytes) : JSON.parse(new TextDecoder().decode(bytes)) };
}

async function check(name, res, expected) {
  assert.equal(res.status, expected.status, name);
  const { type, body } = await decoded(res);
  if (expected.content_type) assert.equal(type, expected.content_type, name);
  assert.ok(matches(expected.body, body), `${name}:\nexpected ${JSON.stringify(expected.body)}\nactual   ${JSON.stringify(body)}`);
}

/** The vectors' scope `vectors`, owned by the demo owner, on a fresh server. */
async function serverWithVectorsScope() {
  const server = await startServer();
  server.cli('scope-add', 'vectors', '--name', 'Vectors', '--bare'); // the vectors' scope starts empty
  server.cli('user-add', '--email', OWNER, '--name', 'Amina Wanjiru', '--scope', 'vectors', '--role', 'owner');
  return { server, token: server.token(OWNER, 'owner-phone') };
}

/** Commits a vector file's `setup` transactions through the protocol: one batch of put/delete per transaction. */
async function writeSetup(server, token, doc) {
  const clientId = crypto.randomUUID();
  let seq = 0;
  for (const tx of doc.setup) {
    const ops = tx.map((w) =>
      w.data === null
        ? { seq: ++seq, id: crypto.randomUUID(), type: 'delete', collection: w.collection, key: w.key }
        : { seq: ++seq, id: crypto.randomUUID(), type: 'put', collection: w.collection, key: w.key, data: w.data },
    );
    const res = await fetch(`${server.url}/v1/scopes/${doc.scope}/ops`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ client_id: clientId, ops }),
    });
    assert.equal(res.status, 200, await res.text());
  }
}

/** A GET with exactly these headers (fetch would add Accept-Encoding and decompress); the body as bytes. */
function rawGet(url, headers) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

test('row hashes and canonical JSON match the independently computed vectors', () => {
  const doc = load('row_hash.json');
  const hashes = doc.rows.map((row) => {
    assert.equal(canonical(row.data), row.canonical, row.key);
    const h = rowHash(row.collection, row.key, row.data);
    assert.equal(h, row.row_hash, row.key);
    return h;
  });
  assert.equal(sum32(hashes), doc.checksum_of_all_rows);
});

test('vector request bodies keep their numbers as written', () => {
  const text = '{"a":[50.0,5000.5,-3,1e3,"50.0"],"b":{"c":null,"d":true}}';
  assert.equal(lossless.stringify(lossless.parse(text)), text);
  assert.deepEqual(lossless.plain(lossless.parse(text)), JSON.parse(text));
});

test('the matcher itself refuses what it should', () => {
  assert.ok(!matches({ a: 1 }, { a: 1, b: 2 }), 'extra field');
  assert.ok(!matches('2.{tag}', '2.0123456789ABCDEF'), 'uppercase tag');
  assert.ok(!matches('{uuid}', 'nope'));
  assert.ok(!matches([1, 2], [1]));
  assert.ok(matches({ c: '3.{tag}' }, { c: '3.0123456789abcdef' }));
});

let feedServer;
let opsServer;
let referenceServer;
let conflictsServer;
before(async () => {
  feedServer = await serverWithVectorsScope();
  opsServer = await serverWithVectorsScope();
  referenceServer = await serverWithVectorsScope();
  conflictsServer = await serverWithVectorsScope();
});
after(async () => {
  for (const s of [feedServer, opsServer, referenceServer, conflictsServer]) await s?.server.stop();
});

test('the server answers every feed vector', async () => {
  const doc = load('feed.json');
  const { server, token } = feedServer;
  await writeSetup(server, token, doc);
  for (const c of doc.cases) {
    const headers = {};
    if (c.request.token !== false) headers.Authorization = `Bearer ${token}`;
    if (c.request.accept) headers.Accept = c.request.accept;
    await check(c.name, await fetch(server.url + c.request.path, { headers }), c.response);
  }
});

test('the server answers every ops vector in order', async () => {
  const doc = load('ops.json');
  // Request bodies as written, numbers included (a float such as 50.0 must stay a float).
  const bodies = lossless.parse(read('ops.json')).cases.map((c) => c.request.body);
  const { server, token } = opsServer;
  for (const [i, c] of doc.cases.entries()) {
    const msgpack = c.request.content_type === 'application/msgpack';
    if (msgpack && lossless.hasIntegralFloat(bodies[i])) {
      throw new Error(`${c.name}: an integral float cannot be sent as MessagePack from JavaScript`);
    }
    const res = await fetch(`${server.url}/v1/scopes/${doc.scope}/ops`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': msgpack ? 'application/msgpack' : 'application/json' },
      body: msgpack ? msgpackEncode(lossless.plain(bodies[i])) : lossless.stringify(bodies[i]),
    });
    await check(c.name, res, c.response);
  }
});

test('the server answers every reference vector byte for byte', async () => {
  const doc = load('reference.json');
  const { server, token } = referenceServer;
  await writeSetup(server, token, doc);
  const bodies = new Map();
  for (const c of doc.cases) {
    const headers = { ...(c.request.headers ?? {}) };
    if (c.request.token !== false) headers.authorization = `Bearer ${token}`;
    const res = await rawGet(server.url + c.request.path, headers);
    const want = c.response;
    assert.equal(res.status, want.status, c.name);
    for (const [k, v] of Object.entries(want.headers ?? {})) assert.equal(res.headers[k], v, `${c.name}: ${k}`);
    for (const k of want.absent_headers ?? []) assert.equal(res.headers[k], undefined, `${c.name}: ${k}`);
    if (typeof want.body === 'string') assert.equal(res.body.toString('utf8'), want.body, c.name);
    if (want.error_code) assert.equal(JSON.parse(res.body).error.code, want.error_code, c.name);
    if (want.decoded_body_of) {
      const coding = res.headers['content-encoding'];
      assert.ok(coding === undefined || coding === 'gzip', `${c.name}: unexpected coding ${coding}`);
      const plainBytes = coding === 'gzip' ? gunzipSync(res.body) : res.body;
      const decodedBody = res.headers['content-type'] === 'application/msgpack' ? msgpackDecode(plainBytes) : JSON.parse(plainBytes);
      assert.deepEqual(decodedBody, JSON.parse(bodies.get(want.decoded_body_of)), c.name);
    }
    bodies.set(c.name, res.body);
  }
});

test('the server answers every conflicts vector in order', async () => {
  const doc = load('conflicts.json');
  const { server, token } = conflictsServer;
  const ids = [];
  for (const batch of doc.setup) {
    // A plain list is the document's client's; an object names its own client (another outbox).
    const { client_id, ops } = Array.isArray(batch) ? { client_id: doc.client_id, ops: batch } : batch;
    const res = await fetch(`${server.url}/v1/scopes/${doc.scope}/ops`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ client_id, ops }),
    });
    assert.equal(res.status, 200);
    for (const r of (await res.json()).results) if (r.conflict_id) ids.push(r.conflict_id);
  }
  assert.equal(ids.length, 2, 'the setup records a field conflict and a rejection');
  for (const c of doc.cases) {
    const url = server.url + c.request.path.replace('{field_conflict}', ids[0]).replace('{rejection}', ids[1]);
    const headers = {};
    if (c.request.token !== false) headers.Authorization = `Bearer ${token}`;
    if (c.request.accept) headers.Accept = c.request.accept;
    const init = { method: c.request.method, headers };
    if (c.request.method === 'POST') {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(c.request.body);
    }
    await check(c.name, await fetch(url, init), c.response);
  }
});
