// Enrollment by pairing code (protocol §3.3): the one request a device makes without a token, so it does not go
// through Api (which always sends one).
import { ApiError } from './api.js';

/**
 * Exchanges a one-time pairing code for a device token.
 * @param {object} o
 * @param {string} [o.baseUrl] origin of the server
 * @param {string} o.code as shown or scanned (`K7QXM-4TZ9P`; case, dashes and spaces do not matter)
 * @param {string} [o.deviceName]
 * @param {typeof fetch} [o.fetch]
 * @returns {Promise<{token: string, token_id: string, device_id: string, expires_at: string,
 *   scopes: {scope: string, role: string}[]}>} the token is shown once: pass it to SyncClient.open, which stores it
 */
export async function pair({ baseUrl = '', code, deviceName, fetch: fetchFn }) {
  const body = { code };
  if (deviceName) body.device_name = deviceName;
  let res;
  try {
    res = await (fetchFn ?? globalThis.fetch)(baseUrl.replace(/\/$/, '') + '/v1/pair', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30000),
    });
  } catch (err) {
    throw new ApiError(0, 'network', `no answer: ${err.message ?? err}`);
  }
  const parsed = await res.json().catch(() => null);
  if (!res.ok) {
    const e = parsed?.error ?? {};
    // A 429 says when to try again (Retry-After, also in details.retry_after_secs).
    throw new ApiError(res.status, e.code ?? 'http_' + res.status, e.message ?? res.statusText, e.details);
  }
  return parsed;
}
