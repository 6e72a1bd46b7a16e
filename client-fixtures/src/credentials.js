// Where the client's bearer token comes from: a fixed device token, or the app's `fetchCredentials()` callback
// (modelled on PowerSync's connector). With a callback the token lives in memory only: the app's backend is the
// source of truth and is asked again after a restart, so nothing secret is written to IndexedDB.
//
// Invariants:
// - At most one call of `fetchCredentials` runs at a time (single flight): every request that finds the token
//   missing, due or refused waits for that one call.
// - A token the server refused is never sent again: it is dropped, so the next request asks the callback anew
//   (which is also how a failed callback is retried on the next sync attempt).
import { ApiError } from './api.js';

/**
 * @typedef {object} FetchedCredentials
 * @property {string} token a bearer token (a device token `dks_...` or a JWT from the app's backend)
 * @property {Date|number|string} [expiresAt] when it stops working (Date, epoch milliseconds or ISO 8601)
 */

/** @typedef {() => Promise<FetchedCredentials|null|undefined>} FetchCredentials */

export class Credentials {
  /**
   * @param {object} o
   * @param {string} [o.token] a fixed token; without `fetchCredentials` it is the only one (no refresh)
   * @param {FetchCredentials} [o.fetchCredentials] asked when there is no token, after a 401, and shortly before
   *   `expiresAt`
   * @param {number} [o.refreshBeforeMs] how long before `expiresAt` a token counts as due (at most half its lifetime)
   */
  constructor({ token, fetchCredentials, refreshBeforeMs = 60000 } = {}) {
    this.#token = token ?? null;
    this.#fetch = fetchCredentials ?? null;
    this.#refreshBeforeMs = refreshBeforeMs;
  }

  #token;
  #expiresAt = null;
  #dueAt = null;
  #fetch;
  #refreshBeforeMs;
  #inflight = null;

  /** The token to send now (null when there is none). Read it right before sending, after `ready()`. */
  get token() {
    return this.#token;
  }

  /** Whether a refused token can be replaced (a callback was given). */
  get refreshable() {
    return this.#fetch !== null;
  }

  /**
   * Makes sure a token is there and not about to expire, asking the callback if needed. A due token that is not
   * yet expired is kept when the callback fails: it still works, and the next request asks again.
   */
  async ready() {
    if (!this.#fetch) return;
    if (this.#token === null) {
      await this.refresh(null);
      return;
    }
    if (this.#dueAt === null || Date.now() < this.#dueAt) return;
    try {
      await this.refresh(this.#token, { refused: false });
    } catch (err) {
      if (this.#expiresAt !== null && Date.now() >= this.#expiresAt) throw err;
    }
  }

  /**
   * Replaces `stale` (the token a request was sent with and the server refused, or null) with a fresh one. If
   * another request already replaced it, that token is used without a new call. Throws ApiError 401
   * `credentials_unavailable` when the callback throws or gives no token. `refused: false` (a token due soon, not
   * refused) keeps the old token while the callback runs and if it fails.
   */
  async refresh(stale, { refused = true } = {}) {
    if (!this.#fetch) throw new ApiError(401, 'credentials_unavailable', 'the token was refused and no fetchCredentials was given');
    if (this.#inflight) return this.#inflight;
    if (this.#token !== null && this.#token !== stale) return this.#token;
    // A refused token goes at once: if the callback fails, nothing sends it again.
    if (refused) this.#token = null;
    this.#inflight = this.#call().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  /** Drops a token the server refused even right after a refresh, so the next sync attempt asks again. */
  reject(token) {
    if (this.#fetch && this.#token === token) this.#token = null;
  }

  async #call() {
    let got;
    try {
      got = await this.#fetch();
    } catch (err) {
      throw new ApiError(401, 'credentials_unavailable', `fetchCredentials failed: ${err?.message ?? err}`);
    }
    if (!got || typeof got.token !== 'string' || got.token === '') {
      throw new ApiError(401, 'credentials_unavailable', 'fetchCredentials returned no token');
    }
    const fetchedAt = Date.now();
    const expiresAt = got.expiresAt == null ? null : new Date(got.expiresAt).getTime();
    this.#expiresAt = Number.isFinite(expiresAt) ? expiresAt : null;
    // Due a little before expiry, but never sooner than half the lifetime: a short-lived token must not make every
    // request call the callback.
    this.#dueAt = this.#expiresAt === null ? null : this.#expiresAt - Math.min(this.#refreshBeforeMs, (this.#expiresAt - fetchedAt) / 2);
    this.#token = got.token;
    return got.token;
  }
}
