// The example app (examples/react-vite) installed as a developer would, shared by package.test.js and
// example-e2e.test.js: `npm pack` of this checkout is installed (the tarball, not a workspace link) into a scratch
// copy of the example in ../.dukasync/example-react-vite (git-ignored). Its `npm ci` is skipped while the
// example's lockfile is unchanged; the package is reinstalled from a fresh tarball on every call.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FIXTURES, ROOT } from './harness.js';

export const EXAMPLE = path.join(FIXTURES, 'examples', 'react-vite');
export const SCRATCH = path.join(ROOT, '.dukasync', 'example-react-vite');
export const DIST = path.join(SCRATCH, 'dist');
const NPM_QUIET = ['--no-audit', '--no-fund', '--loglevel=error'];

/** Runs a command, failing with its output when it fails. */
export function run(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } });
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

/** A binary of the scratch app's node_modules (tsc, vite). */
export const bin = (name) => path.join(SCRATCH, 'node_modules', '.bin', name);

/**
 * Packs the package, copies the example to SCRATCH and installs it there with the tarball.
 * Resolves to { packed (npm pack's JSON), tarball, cleanup() }.
 */
export function installExample() {
  const packDir = mkdtempSync(path.join(tmpdir(), 'dukasync-pack-'));
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packDir, ...NPM_QUIET], FIXTURES));
  const tarball = path.join(packDir, packed.filename);

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
  return { packed, tarball, cleanup: () => rmSync(packDir, { recursive: true, force: true }) };
}

/** `vite build` of the installed example into DIST (the page, and the module service worker as /sw.js). */
export function buildExample() {
  run(bin('vite'), ['build', '--logLevel', 'error'], SCRATCH);
  return DIST;
}
