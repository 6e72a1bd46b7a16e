// Third-party modules, imported by bare specifier as any npm package does: Node and bundlers (Vite, Rollup,
// esbuild, webpack) resolve them from node_modules/. The demo, served without a build by dev/serve.js, gets them
// rewritten to /node_modules/... paths there (as Vite's dev server does), since module workers have no import maps.
// Dexie is a peer dependency: the app's own Dexie is the one used here.
export { default as Dexie, liveQuery } from 'dexie';
export { blake3 } from '@noble/hashes/blake3.js';
export { encode as msgpackEncode, decode as msgpackDecode } from '@msgpack/msgpack';
