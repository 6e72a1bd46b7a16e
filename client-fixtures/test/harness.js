// Test harness: a real dukasync server on a fresh database of the shared PostgreSQL, started and stopped by the
// test. Connection settings come from DUKASYNC_DATABASE_URL / DUKASYNC_REDIS_URL or from the checkout's
// .dukasync/env (written by deploy/services.sh). Without a database the tests fail; they never skip.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(FIXTURES, '..');
export const OWNER = 'owner@duka.test';

/** Settings from the environment, falling back to .dukasync/env of this checkout. */
export function serviceEnv() {
  const vars = {};
  const file = path.join(ROOT, '.dukasync', 'env');
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = line.trim().replace(/^export /, '').match(/^([A-Z_]+)=(.*)$/);
      if (m) vars[m[1]] = m[2].replace(/^"|"$/g, '');
    }
  }
  for (const k of ['DUKASYNC_DATABASE_URL', 'DUKASYNC_REDIS_URL', 'DUKASYNC_PG_BIN']) {
    if (process.env[k]) vars[k] = process.env[k];
  }
  if (!vars.DUKASYNC_DATABASE_URL) {
    throw new Error('no DUKASYNC_DATABASE_URL: run `deploy/services.sh start` (deploy/dev test does) or export it');
  }
  return vars;
}

function psql(env, sql) {
  const bin = env.DUKASYNC_PG_BIN ? path.join(env.DUKASYNC_PG_BIN, 'psql') : 'psql';
  return execFileSync(bin, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', env.DUKASYNC_DATABASE_URL, '-c', sql], {
    encoding: 'utf8',
  });
}

/**
 * Drops a test database. DROP DATABASE ... WITH (FORCE) fails when the database holds a process that PostgreSQL 15
 * does not let this non-superuser role terminate ("must be a member of the role whose process is being
 * terminated"): an autovacuum worker, or a backend still starting whose role is not yet set (which one it was in
 * CI's failure was not determined). Both leave on their own, so that error is retried, for 10 s at most; any
 * other error is thrown.
 */
async function dropDatabase(env, name) {
  for (let attempt = 0; ; attempt++) {
    try {
      psql(env, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      return;
    } catch (err) {
      if (!String(err.message).includes('whose process is being terminated') || attempt >= 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

let built = false;
/** The server binary, rebuilt first (a no-op when up to date) so the tests never run a stale server. */
function binary() {
  if (process.env.DUKASYNC_BIN) return process.env.DUKASYNC_BIN;
  if (!built) {
    execFileSync('cargo', ['build', '--quiet', '--bin', 'dukasync'], { cwd: ROOT, stdio: 'inherit' });
    built = true;
  }
  return path.join(ROOT, 'target', 'debug', 'dukasync');
}

/**
 * A running server on a fresh database with the demo data loaded. `extraEnv` adds DUKASYNC_* settings.
 * Call `stop()` when done: it stops the server (SIGTERM to its process group) and drops the database.
 */
export async function startServer(extraEnv = {}) {
  const env = serviceEnv();
  const dbName = `dukasync_test_js_${randomBytes(6).toString('hex')}`;
  psql(env, `CREATE DATABASE ${dbName}`);
  const databaseUrl = withDatabase(env.DUKASYNC_DATABASE_URL, dbName);
  return launch(env, databaseUrl, extraEnv, { dbName, drop: () => dropDatabase(env, dbName) });
}

/**
 * A running server on the database at `databaseUrl` (of another cluster: a test's own), migrated and with the demo
 * data loaded. `stop()` stops the server and leaves the database.
 */
export async function startServerOn(databaseUrl, extraEnv = {}) {
  return launch(serviceEnv(), databaseUrl, extraEnv, { dbName: null, drop: async () => {} });
}

async function launch(env, databaseUrl, extraEnv, { dbName, drop }) {
  const childEnv = {
    ...process.env,
    DUKASYNC_DATABASE_URL: databaseUrl,
    DUKASYNC_LISTEN: '127.0.0.1:0',
    DUKASYNC_LOG_FORMAT: 'json',
    DUKASYNC_LOG: 'info,sqlx=warn',
    ...extraEnv,
  };
  if (env.DUKASYNC_REDIS_URL && !('DUKASYNC_REDIS_URL' in extraEnv)) childEnv.DUKASYNC_REDIS_URL = env.DUKASYNC_REDIS_URL;
  const bin = binary();
  const cli = (...args) => execFileSync(bin, args, { env: childEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  let child;
  let url;
  try {
    cli('migrate');
    cli('demo-data');
    let log;
    ({ child, log, url } = await serve(bin, childEnv));
    const server = {
      url,
      dbName,
      env: childEnv,
      cli,
      /** Issues a device token for `email` on `device`. */
      token: (email = OWNER, device = 'owner-phone') => cli('token', 'issue', '--email', email, '--device', device).trim(),
      /** Runs SQL on this server's database and returns psql's unaligned output. */
      sql: (query) => psql({ ...env, DUKASYNC_DATABASE_URL: childEnv.DUKASYNC_DATABASE_URL }, query),
      log,
      /** Stops the server and starts it again on the same database, with `moreEnv` added to its settings. */
      async restart(moreEnv = {}) {
        await stopChild(child);
        Object.assign(childEnv, moreEnv);
        let log;
        ({ child, log, url } = await serve(bin, childEnv));
        server.url = url;
        server.log = log;
      },
      async stop() {
        await stopChild(child);
        await drop();
      },
    };
    return server;
  } catch (err) {
    if (child) await stopChild(child);
    await drop();
    throw err;
  }
}

/** Starts `dukasync serve` and resolves once it answers /readyz: {child, log, url}. */
async function serve(bin, childEnv) {
  const child = spawn(bin, ['serve'], { env: childEnv, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  // The server is detached (its own process group); if this test process ends without stop(), take it along.
  const orphanGuard = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', orphanGuard);
  child.once('exit', () => process.off('exit', orphanGuard));
  const log = [];
  const address = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      log.push(line);
      if (log.length > 200) log.shift();
      try {
        const rec = JSON.parse(line);
        if (rec.fields?.message === 'dukasync listening') resolve(rec.fields.address);
      } catch {
        // not a JSON line
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${log.join('\n')}`)));
  });
  const url = `http://${address}`;
  await waitUntilReady(url);
  return { child, log, url };
}

async function waitUntilReady(url) {
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) return;
    } catch {
      // not accepting yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server at ${url} never became ready`);
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 15000);
  await exited;
  clearTimeout(timer);
}

/** Calls the API with a token; returns { status, body } (JSON). */
export async function api(server, token, method, pathAndQuery, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(server.url + pathAndQuery, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}
