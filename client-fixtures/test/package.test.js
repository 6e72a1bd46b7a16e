// The client as an installable npm package (issue 22): `npm pack` of this checkout is installed (the tarball, not a
// workspace link) into a scratch copy of examples/react-vite, a Vite + React + TypeScript app with its own
// committed lockfile. There `tsc --strict` passes on the app and, with skipLibCheck off, on the package's
// declaration files; `vite build` bundles the page and a module service worker that imports `@dukasync/client/sw`;
// and a Node script imports the package by name and syncs with a real server.
//
// The scratch copy lives in ../.dukasync/example-react-vite (git-ignored); its `npm ci` is skipped while the
// example's lockfile is unchanged, and the package is reinstalled from a fresh tarball on every run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FIXTURES, OWNER, ROOT, api, startServer } from './harness.js';

const EXAMPLE = path.join(FIXTURES, 'examples', 'react-vite');
const SCRATCH = path.join(ROOT, '.dukasync', 'example-react-vite');
const NPM_QUIET = ['--no-audit', '--no-fund', '--loglevel=error'];

let server;
let packDir;
let tarball;
let packed;

/** Runs a command, failing the test with its output when it fails. */
function run(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

const bin = (name) => path.join(SCRATCH, 'node_modules', '.bin', name);

before(() => {
  packDir = mkdtempSync(path.join(tmpdir(), 'dukasync-pack-'));
  [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packDir, ...NPM_QUIET], FIXTURES));
  tarball = path.join(packDir, packed.filename);

  // A scratch copy of the example (its sources and lockfile), installed as a developer would.
  mkdirSync(SCRATCH, { recursive: true });
  for (const entry of readdirSync(SCRATCH)) if (!['node_modules', '.installed-lock'].includes(entry)) rmSync(path.join(SCRATCH, entry), { recursive: true, force: true });
  for (const entry of readdirSync(EXAMPLE)) if (!['node_modules', 'dist'].includes(entry)) cpSync(path.join(EXAMPLE, entry), path.join(SCRATCH, entry), { recursive: true });
  const lock = createHash('sha256').update(readFileSync(path.join(EXAMPLE, 'package-lock.json'))).digest('hex');
  const marker = path.join(SCRATCH, '.installed-lock');
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== lock || !existsSync(path.join(SCRATCH, 'node_modules'))) {
    run('npm', ['ci', ...NPM_QUIET], SCRATCH);
    writeFileSync(marker, lock);
  }
  rmSync(path.join(SCRATCH, 'node_modules', '@dukasync'), { recursive: true, force: true });
  run('npm', ['install', '--no-save', ...NPM_QUIET, tarball], SCRATCH);
});

after(async () => {
  await server?.stop();
  if (packDir) rmSync(packDir, { recursive: true, force: true });
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
  run(bin('vite'), ['build', '--logLevel', 'error'], SCRATCH);
  const dist = path.join(SCRATCH, 'dist');
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
