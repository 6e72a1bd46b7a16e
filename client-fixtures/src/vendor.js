// Third-party modules, imported by relative path so that the same files load unchanged in Node, in a page and in a
// module service worker (workers have no import maps), with no build step. The demo proxy serves node_modules/
// beside src/.
export { default as Dexie } from '../node_modules/dexie/dist/dexie.mjs';
export { blake3 } from '../node_modules/@noble/hashes/blake3.js';
export { encode as msgpackEncode, decode as msgpackDecode } from '../node_modules/@msgpack/msgpack/dist.esm/index.mjs';
