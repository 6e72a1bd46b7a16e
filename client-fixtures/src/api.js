// HTTP transport for the dukasync protocol: bearer auth, JSON or MessagePack, and errors turned into ApiError with
// the stable `code` and a `retryable` flag (protocol/README.md §4 "Retrying").
//
// With a `fetchCredentials` callback (src/credentials.js), a 401 gets one fresh token and the request is sent once
// more with it; a second 401 is the caller's error. Every request reads the token just before it is sent, so no
// request leaves with a token older than the last refresh.
import { Credentials } from './credentials.js';
import { msgpackDecode, msgpackEncode } from './vendor.js';

const MSGPACK = 'application/msgpack';
/** The server sets it on every answer (protocol §2); CORS exposes it to pages of other origins (§3.5). */
const REQUEST_ID = 'x-request-id';

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the request never got an answer (offline, timeout, aborted).
   * @param {string} code the protocol's error code, or `network` for status 0.
   * @param {string} message
   * @param {object} [details] the error body's `details`
   * @param {string|null} [requestId] the answer's `x-request-id` (the id in the server's log line for this
   *   request); null when there was no answer.
   */
  constructor(status, code, message, details, requestId = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }

  /** Safe to retry unchanged with backoff: no answer, 408, 429, 503, or another 5xx. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

export class Api {
  /**
   * @param {object} o
   * @param {string} [o.baseUrl] origin of the server ('' for the page's own origin, as behind the demo proxy)
   * @param {string} [o.token] a fixed token (`dks_...`); with `fetchCredentials`, only the first one
   * @param {import('./credentials.js').FetchCredentials} [o.fetchCredentials] the app's token source, see credentials.js
   * @param {Credentials} [o.credentials] a token source shared with other Api instances (instead of the two above)
   * @param {'json'|'msgpack'} [o.encoding] body encoding of requests and responses
   * @param {typeof fetch} [o.fetch] injectable for tests (offline, lost answers)
   */
  constructor({ baseUrl = '', token, fetchCredentials, credentials, encoding = 'json', fetch: fetchFn } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.credentials = credentials ?? new Credentials({ token, fetchCredentials });
    this.encoding = encoding;
    this.fetch = fetchFn ?? ((...args) => globalThis.fetch(...args));
  }

  async request(method, path, { body, signal, headers = {}, timeoutMs = 30000 } = {}) {
    let payload;
    const h = { ...headers };
    if (this.encoding === 'msgpack') h.Accept = MSGPACK;
    if (body !== undefined) {
      h['Content-Type'] = this.encoding === 'msgpack' ? MSGPACK : 'application/json';
      payload = this.encoding === 'msgpack' ? msgpackEncode(body) : JSON.stringify(body);
    }
    const creds = this.credentials;
    await creds.ready();
    let sent = creds.token;
    let res = await this.#send(method, path, h, payload, sent, signal, timeoutMs);
    if (res.status === 401 && creds.refreshable) {
      await res.arrayBuffer().catch(() => {}); // frees the connection; the body is the server's 401, not needed
      // Throws credentials_unavailable (401) if the callback fails: the caller keeps its queue as for any 401.
      await creds.refresh(sent);
      sent = creds.token;
      res = await this.#send(method, path, h, payload, sent, signal, timeoutMs);
      if (res.status === 401) creds.reject(sent);
    }
    if (res.status === 304) return { status: 304, headers: res.headers, body: null };
    const parsed = await decodeBody(res);
    if (!res.ok) {
      const e = parsed?.error ?? {};
      const id = res.headers.get(REQUEST_ID);
      throw new ApiError(res.status, e.code ?? 'http_' + res.status, e.message ?? res.statusText, e.details, id);
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  async #send(method, path, headers, body, token, signal, timeoutMs) {
    const h = token === null ? headers : { Authorization: `Bearer ${token}`, ...headers };
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (signal) signals.push(signal);
    try {
      return await this.fetch(this.baseUrl + path, { method, headers: h, body, signal: AbortSignal.any(signals) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ApiError(0, 'network', `no answer: ${err.message ?? err}`);
    }
  }

  scopes(opts) {
    return this.request('GET', '/v1/scopes', opts).then((r) => r.body.scopes);
  }

  /** The collection definitions (§9): name, writer, rights, indexes, schema, ... */
  collections(opts) {
    return this.request('GET', '/v1/collections', opts).then((r) => r.body.collections);
  }

  /** One page of the change feed (§7). `wait` long-polls; the HTTP timeout is set above it. */
  changes(scope, since, { wait = 0, limit, signal } = {}) {
    const q = new URLSearchParams({ since, wait: String(wait) });
    if (limit) q.set('limit', String(limit));
    return this.request('GET', `/v1/scopes/${encodeURIComponent(scope)}/changes?${q}`, {
      signal,
      timeoutMs: (wait + 15) * 1000,
    }).then((r) => r.body);
  }

  checksum(scope, version, opts) {
    return this.request('GET', `/v1/scopes/${encodeURIComponent(scope)}/checksum?version=${version}`, opts).then(
      (r) => r.body,
    );
  }

  pushOps(scope, body, opts) {
    return this.request('POST', `/v1/scopes/${encodeURIComponent(scope)}/ops`, { ...opts, body }).then((r) => r.body);
  }

  /**
   * Conflicts admin (§11, owners and managers): one page of the conflicts of the scopes the caller administers,
   * newest first. `query`: `scope`, `status`, `collection`, `kind`, `device`, `since`, `until`, `limit`, `cursor`.
   * Resolves to {conflicts, next_cursor?}.
   */
  conflicts(query = {}, opts) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null));
    return this.request('GET', `/v1/admin/conflicts${q.size ? `?${q}` : ''}`, opts).then((r) => r.body);
  }

  /** One conflict with everything needed to decide: base, server, client, diff, detail, current, resolution. */
  conflict(id, opts) {
    return this.request('GET', `/v1/admin/conflicts/${encodeURIComponent(id)}`, opts).then((r) => r.body);
  }

  /** Resolves a conflict: `{decision, value?, note?, expected_version?}`; resolves to the conflict afterwards. */
  resolveConflict(id, body, opts) {
    return this.request('POST', `/v1/admin/conflicts/${encodeURIComponent(id)}/resolve`, { ...opts, body }).then((r) => r.body);
  }

  /** A reference snapshot; `etag` makes it conditional. Resolves to { status: 200|304, etag, body }. */
  async reference(scope, dataset, etag, opts = {}) {
    const headers = etag ? { 'If-None-Match': etag } : {};
    const r = await this.request('GET', `/v1/scopes/${encodeURIComponent(scope)}/reference/${encodeURIComponent(dataset)}`, {
      ...opts,
      headers,
    });
    return { status: r.status, etag: r.headers.get('etag') ?? etag, body: r.body };
  }
}

async function decodeBody(res) {
  const type = (res.headers.get('content-type') ?? '').split(';')[0].trim();
  if (type === MSGPACK) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    return bytes.length ? msgpackDecode(bytes) : null;
  }
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: `http_${res.status}`, message: text.slice(0, 200) } };
  }
}
