// The divergence check of protocol/README.md §8: canonical JSON, row hashes and their sums mod 2^32. Rows are
// hashed exactly as the feed delivered them; the client stores them unchanged for that reason.
import { blake3 } from './vendor.js';

const utf8 = new TextEncoder();

// JavaScript sorts strings by UTF-16 code units; the protocol sorts keys by UTF-8 bytes. They differ for some
// non-ASCII keys (astral characters against U+E000..U+FFFF).
function byUtf8(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Canonical JSON: keys sorted by UTF-8 bytes, no whitespace, integers only. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort(byUtf8);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new TypeError(`not a protocol number: ${value} (money and quantities are decimal strings)`);
  }
  return JSON.stringify(value);
}

/** The first 4 bytes of blake3(collection 0x1F key 0x1F canonical(data)) as a little-endian u32. */
export function rowHash(collection, key, data) {
  const d = blake3(utf8.encode(`${collection}\x1f${key}\x1f${canonical(data)}`));
  return (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
}

/** Adds u32 hashes modulo 2^32. */
export function sum32(hashes) {
  let sum = 0;
  for (const h of hashes) sum = (sum + h) >>> 0;
  return sum;
}

/** True when `value` holds only what the protocol allows: no floats, no unsafe integers, anywhere. */
export function protocolSafe(value) {
  if (typeof value === 'number') return Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.every(protocolSafe);
  if (value !== null && typeof value === 'object') return Object.values(value).every(protocolSafe);
  return true;
}
