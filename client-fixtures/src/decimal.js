// Money as exact decimal strings with two places ("480.00"), computed in integer cents with BigInt. The protocol
// forbids floats; parseFloat would turn 0.1 + 0.2 into 0.30000000000000004.

const MONEY = /^(-?)(\d+)(?:\.(\d{1,2}))?$/;

/** "480.5" -> 48050n cents. Throws on anything that is not a plain decimal with at most two places. */
export function toCents(text) {
  const m = MONEY.exec(String(text).trim());
  if (!m) throw new RangeError(`not a money amount: ${JSON.stringify(text)}`);
  const cents = BigInt(m[2]) * 100n + BigInt((m[3] ?? '').padEnd(2, '0'));
  return m[1] ? -cents : cents;
}

/** 48050n -> "480.50". */
export function fromCents(cents) {
  const negative = cents < 0n;
  const abs = negative ? -cents : cents;
  const text = `${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
  return negative ? `-${text}` : text;
}

/** A whole, positive quantity as the protocol's decimal string. */
export function quantity(n) {
  if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`not a positive whole quantity: ${n}`);
  return String(n);
}

/** Decimal quantity string ("100", "-2", "3.500") to a number of thousandths, for display arithmetic. */
export function toMilli(text) {
  const m = /^(-?)(\d+)(?:\.(\d{1,3}))?$/.exec(String(text).trim());
  if (!m) throw new RangeError(`not a quantity: ${JSON.stringify(text)}`);
  const v = BigInt(m[2]) * 1000n + BigInt((m[3] ?? '').padEnd(3, '0'));
  return m[1] ? -v : v;
}

/** Thousandths back to a short decimal string ("98", "2.5"). */
export function fromMilli(milli) {
  const negative = milli < 0n;
  const abs = negative ? -milli : milli;
  let frac = String(abs % 1000n).padStart(3, '0').replace(/0+$/, '');
  const text = frac ? `${abs / 1000n}.${frac}` : `${abs / 1000n}`;
  return negative ? `-${text}` : text;
}

/** "1,234.50" style for display only. */
export function formatMoney(text) {
  const [whole, frac] = String(text).split('.');
  const sign = whole.startsWith('-') ? '-' : '';
  const digits = whole.replace('-', '').replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${digits}.${frac ?? '00'}`;
}
