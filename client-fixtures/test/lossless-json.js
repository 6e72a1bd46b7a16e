// JSON that keeps each number's source text, so a vector's request body is sent exactly as written: JSON.parse
// would turn the float `50.0` into the integer 50, and the server rightly answers the two differently.

/** A number as written in the source. */
export class Num {
  constructor(raw) {
    this.raw = raw;
  }
}

export function parse(text) {
  let i = 0;
  const ws = () => {
    while (/\s/.test(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const out = {};
      ws();
      if (text[i] === '}') return i++, out;
      for (;;) {
        ws();
        const k = string();
        ws();
        if (text[i++] !== ':') throw new SyntaxError(`expected : at ${i}`);
        out[k] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i++] === '}') return out;
        else throw new SyntaxError(`expected , or } at ${i}`);
      }
    }
    if (c === '[') {
      i++;
      const out = [];
      ws();
      if (text[i] === ']') return i++, out;
      for (;;) {
        out.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i++] === ']') return out;
        else throw new SyntaxError(`expected , or ] at ${i}`);
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) return (i += word.length), v;
    }
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) throw new SyntaxError(`unexpected ${c} at ${i}`);
    i += m[0].length;
    return new Num(m[0]);
  };
  const string = () => {
    const start = i;
    if (text[i++] !== '"') throw new SyntaxError(`expected a string at ${start}`);
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const v = value();
  ws();
  if (i !== text.length) throw new SyntaxError(`trailing text at ${i}`);
  return v;
}

/** JSON text with every number exactly as it was written. */
export function stringify(v) {
  if (v instanceof Num) return v.raw;
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`;
  return JSON.stringify(v);
}

/** Plain JavaScript values (numbers become numbers, losing 50.0 versus 50). */
export function plain(v) {
  if (v instanceof Num) return Number(v.raw);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** True if some number is written as a float but holds an integer (50.0, 1e3): MessagePack from JS loses it. */
export function hasIntegralFloat(v) {
  if (v instanceof Num) return /[.eE]/.test(v.raw) && Number.isInteger(Number(v.raw));
  if (v !== null && typeof v === 'object') return Object.values(v).some(hasIntegralFloat);
  return false;
}
