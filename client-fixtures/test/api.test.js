// The HTTP transport's errors carry the server's request id (`x-request-id`, protocol §2), the id the server's log
// line for that request has, so a person can quote what the app showed and an operator can find it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Api, ApiError } from '../src/api.js';
import { OWNER, startServer } from './harness.js';

let server;
before(async () => {
  // The default log level: refused requests (4xx) are logged at info, failed ones (5xx) at warn.
  server = await startServer({ DUKASYNC_LOG: 'info,sqlx=warn' });
});
after(() => server?.stop());

/** An Api whose fetch records the answers' x-request-id headers as they arrive. */
function recordingApi(token) {
  const seen = [];
  const api = new Api({
    baseUrl: server.url,
    token,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      seen.push(res.headers.get('x-request-id'));
      return res;
    },
  });
  return { api, seen };
}

async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected the request to fail');
}

test('an ApiError carries the x-request-id of the answer, the one in the server log', async () => {
  const { api, seen } = recordingApi(server.token(OWNER, 'request-id-phone'));
  const err = await failure(api.changes('no-such-scope', '0'));
  assert.ok(err instanceof ApiError);
  assert.equal(err.code, 'scope_not_found');
  assert.equal(seen.length, 1);
  assert.match(seen[0], /^[0-9a-f-]{36}$/, 'the server made a UUID');
  assert.equal(err.requestId, seen[0]);
  // The same id names the request in the server's log.
  assert.ok(server.log.some((line) => line.includes(err.requestId)), 'the request id is in the server log');

  // Two failures, two ids: the id is the answer's, not one kept by the client.
  const again = await failure(api.changes('no-such-scope', '0'));
  assert.equal(again.requestId, seen[1]);
  assert.notEqual(again.requestId, err.requestId);
});

test('a request id sent by the caller comes back on its error; no answer means no id', async () => {
  const api = new Api({ baseUrl: server.url, token: 'dks_' + '0'.repeat(64) });
  const err = await failure(api.request('GET', '/v1/scopes', { headers: { 'x-request-id': 'till-7-req-42' } }));
  assert.equal(err.status, 401);
  assert.equal(err.requestId, 'till-7-req-42');

  const offline = new Api({ baseUrl: server.url, token: 'x', fetch: async () => Promise.reject(new TypeError('offline')) });
  const none = await failure(offline.scopes());
  assert.equal(none.status, 0);
  assert.equal(none.requestId, null);
});
