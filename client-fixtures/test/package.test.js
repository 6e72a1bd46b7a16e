// The client as an installable npm package (issue 22): `npm pack` of this checkout is installed (the tarball, not a
// workspace link) into a scratch copy of examples/react-vite, a Vite + React + TypeScript app with its own
// committed lockfile. There `tsc --strict` passes on the app and, with skipLibCheck off, on the package's
// declaration files; `vite build` bundles the page and a module service worker that imports `@dukasync/client/sw`;
// and a Node script imports the package by name and syncs with a real server.
//
// The install is test/example.js (shared with example-e2e.test.js, which drives the built app in Chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { OWNER, api, startServer } from './harness.js';
import { SCRATCH, bin, buildExample, installExample, run } from './example.js';

let server;
let installed;
let packed;

before(() => {
  installed = installExample();
  packed = installed.packed;
});

after(async () => {
  await server?.stop();
  installed?.cleanup();
});

test('the tarball is the package: ESM entry points with types, no tests, demo or example', () => {
  const { name, files } = packed;
  assert.equal(name, '@dukasync/client');
  const paths = files.map((f) => f.path);
  for (const p of ['package.json', 'src/index.js', 'src/react.js', 'src/sw.js', 'types/index.d.ts', 'types/react.d.ts', 'types/sw.d.ts']) {
    assert.ok(paths.includes(p), `${p} is packed`);
  }
  assert.deepEqual(paths.filter((p) => /^(test|app|dev|examples|artifacts)\//.test(p)), []);
  const installed = JSON.parse(readFileSync(path.join(SCRATCH, 'node_modules', '@dukasync', 'client', 'package.json'), 'utf8'));
  assert.ok(!installed.private);
  for (const entry of ['.', './react', './sw']) {
    assert.ok(installed.exports[entry].types && installed.exports[entry].default, `${entry} has types and code`);
  }
  // Installed from the tarball: a real directory, not a link back into this checkout.
  assert.ok(!lstatSync(path.join(SCRATCH, 'node_modules', '@dukasync', 'client')).isSymbolicLink());
});

test('tsc --strict passes on the example app and on the package declarations', () => {
  run(bin('tsc'), ['--strict', '--noEmit', '-p', 'tsconfig.package.json'], SCRATCH);
  run(bin('tsc'), ['--strict', '--noEmit', '-p', '.'], SCRATCH);
});

test('vite build bundles the page and a module service worker using @dukasync/client/sw', () => {
  const dist = buildExample();
  assert.ok(existsSync(path.join(dist, 'index.html')));
  assert.ok(existsSync(path.join(dist, 'sw.js')), 'the worker is emitted as /sw.js');
  const js = readdirSync(path.join(dist, 'assets'))
    .filter((f) => f.endsWith('.js'))
    .map((f) => readFileSync(path.join(dist, 'assets', f), 'utf8'))
    .concat(readFileSync(path.join(dist, 'sw.js'), 'utf8'))
    .join('\n');
  assert.ok(js.includes('dukasync-outbox:'), 'the Background Sync handler is in the bundle');
  assert.ok(js.includes('/v1/scopes/'), 'the client is in the bundle');
  assert.ok(!js.includes('node_modules/'), 'no path into node_modules is left for the browser to fetch');
});

test('Node imports the package by name and syncs with a real server', async () => {
  server = await startServer();
  const token = server.token(OWNER, 'node-check');
  const out = run('node', ['node-check.mjs', server.url, token, 'packed-node-1'], SCRATCH);
  const seen = JSON.parse(out.trim().split('\n').pop());
  assert.equal(seen.outbox, 0);
  assert.equal(seen.customer?.name, 'From the packed package');
  assert.equal(seen.customer?.credit_limit, '1000.00');
  assert.ok(seen.products > 0, 'the pull brought the products');
  assert.equal(seen.notes, 1);
  assert.equal(seen.tag, 'dukasync-outbox:retail');
  assert.equal(seen.react, 'function');
  const { body } = await api(server, token, 'GET', '/v1/scopes/retail/changes?since=0&collections=customers');
  assert.equal(body.changes.find((c) => c.key === 'packed-node-1')?.data.name, 'From the packed package');
});
