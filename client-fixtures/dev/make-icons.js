// Draws the demo's app icons (run once; the PNGs are committed): a white shop awning and counter on the brand
// green. `icon-192.png` and `icon-512.png` have rounded corners (purpose "any"); `maskable-512.png` fills the
// square and keeps the drawing inside the central 80 % safe zone (purpose "maskable").
//
//   node dev/make-icons.js        writes app/icons/*.png
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'app', 'icons');
const GREEN = [0x0f, 0x5c, 0x4d];
const WHITE = [0xff, 0xff, 0xff];
const AMBER = [0xff, 0xb3, 0x47];

/** The colour at (x, y) of the unit square, or null (transparent). `inset` shrinks the drawing towards the centre. */
function shade(x, y, { rounded, inset }) {
  if (rounded) {
    const r = 0.18;
    const cx = Math.min(Math.max(x, r), 1 - r);
    const cy = Math.min(Math.max(y, r), 1 - r);
    if ((x - cx) ** 2 + (y - cy) ** 2 > r * r) return null;
  }
  // Drawing coordinates: the unit square scaled by `inset` around the centre.
  const u = (x - 0.5) / inset + 0.5;
  const v = (y - 0.5) / inset + 0.5;
  // Awning: a band of five scallops, white and amber stripes.
  if (v >= 0.22 && v <= 0.4 && u >= 0.18 && u <= 0.82) {
    const stripe = Math.floor((u - 0.18) / (0.64 / 5));
    const cx = 0.18 + (stripe + 0.5) * (0.64 / 5);
    if (v <= 0.34 || (u - cx) ** 2 + ((v - 0.34) * 1.2) ** 2 <= (0.064) ** 2) return stripe % 2 ? AMBER : WHITE;
  }
  // Shop body: two posts and a counter.
  if (u >= 0.22 && u <= 0.78 && v >= 0.6 && v <= 0.78) return WHITE;
  if (((u >= 0.22 && u <= 0.29) || (u >= 0.71 && u <= 0.78)) && v > 0.4 && v < 0.6) return WHITE;
  return GREEN;
}

function png(size, options) {
  const S = 4; // supersampling for smooth edges
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const c = shade((x + (sx + 0.5) / S) / size, (y + (sy + 0.5) / S) / size, options);
          if (!c) continue;
          r += c[0]; g += c[1]; b += c[2]; a += 1;
        }
      }
      const o = 1 + x * 4;
      if (a) [row[o], row[o + 1], row[o + 2]] = [Math.round(r / a), Math.round(g / a), Math.round(b / a)];
      row[o + 3] = Math.round((a / (S * S)) * 255);
    }
    rows.push(row);
  }
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const head = Buffer.alloc(13);
  head.writeUInt32BE(size, 0);
  head.writeUInt32BE(size, 4);
  head[8] = 8; // bit depth
  head[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', head),
    chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf) {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

writeFileSync(path.join(OUT, 'icon-192.png'), png(192, { rounded: true, inset: 1 }));
writeFileSync(path.join(OUT, 'icon-512.png'), png(512, { rounded: true, inset: 1 }));
writeFileSync(path.join(OUT, 'maskable-512.png'), png(512, { rounded: false, inset: 0.8 }));
console.log(`icons written to ${OUT}`);
