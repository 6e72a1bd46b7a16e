// HTTP transport for the dukasync protocol: bearer auth, JSON or MessagePack, and errors turned into ApiError with
// the stable `code` and a `retryable` flag (protocol/README.md §4 "Retrying").
import { msgpackDecode, msgpackEncode } from './vendor.js';

const MSGPACK = 'application/msgpack';

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the request never got an answer (offline, timeout, aborted).
   * @param {string} code the protocol's error code, or `network` for status 0.
   */
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
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
   * @param {string} o.token a device token (`dks_...`)
   * @param {'json'|'msgpack'} [o.encoding] body encoding of requests and responses
   * @param {typeof fetch} [o.fetch] injectable for tests (offline, lost answers)
   */
  constructor({ baseUrl = '', token, encoding = 'json', fetch: fetchFn } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.token = token;
    this.encoding = encoding;
    this.fetch = fetchFn ?? ((...args) => globalThis.fetch(...args));
  }

  async request(method, path, { body, signal, headers = {}, timeoutMs = 30000 } = {}) {
    const h = { Authorization: `Bearer ${this.token}`, ...headers };
    let payload;
    if (this.encoding === 'msgpack') h.Accept = MSGPACK;
    if (body !== undefined) {
      h['Content-Type'] = this.encoding === 'msgpack' ? MSGPACK : 'application/json';
      payload = this.encoding === 'msgpack' ? msgpackEncode(body) : JSON.stringify(body);
    }
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (signal) signals.push(signal);
    let res;
    try {
      res = await this.fetch(this.baseUrl + path, { method, headers: h, body: payload, signal: AbortSignal.any(signals) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ApiError(0, 'network', `no answer: ${err.message ?? err}`);
    }
    if (res.status === 304) return { status: 304, headers: res.headers, body: null };
    const parsed = await decodeBody(res);
    if (!res.ok) {
      const e = parsed?.error ?? {};
      throw new ApiError(res.status, e.code ?? 'http_' + res.status, e.message ?? res.statusText, e.details);
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  scopes(opts) {
    return this.request('GET', '/v1/scopes', opts).then((r) => r.body.scopes);
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
