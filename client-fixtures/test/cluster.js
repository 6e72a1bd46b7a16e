// A throwaway PostgreSQL cluster archived by deploy/pitr.sh, for tests where the disk dies: initdb into a temp dir
// on a free loopback port (settings in the style of deploy/services.sh: superuser postgres trusted over the
// socket, the dukasync role with a password over TCP), `pitr.sh setup`, `pitr.sh receive` as a child process
// (restarted when it exits, like systemd's Restart=always), and a first `pitr.sh base`.
//
// destroy() removes the data directory while PostgreSQL runs and then SIGKILLs it (the disk died); restore()
// runs exactly the steps of deploy/RUNBOOK.md, "Lost disk" (pitr.sh restore, start PostgreSQL, pitr.sh
// after-restore, pitr.sh base, start the receiver). A server left running through it reconnects by itself; it
// sees no receiver (nothing reported archived) until the new base exists. The archive (DUKASYNC_PITR_DIR) lives
// beside the data directory in the temp dir and survives destroy(): it stands for the second disk of the runbook.
//
// Run as root (as the tests here are), PostgreSQL and pitr.sh run as the system user `postgres` (or
// `dukasync-pg`, created as deploy/services.sh does), since initdb and pg_ctl refuse root.
import { spawn, execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, chownSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PITR = path.join(ROOT, 'deploy', 'pitr.sh');

/** The PostgreSQL server binaries: DUKASYNC_PG_BIN (environment or .dukasync/env), else the newest Debian one. */
export function findPgBin() {
  if (process.env.DUKASYNC_PG_BIN) return process.env.DUKASYNC_PG_BIN;
  const env = path.join(ROOT, '.dukasync', 'env');
  if (existsSync(env)) {
    const m = readFileSync(env, 'utf8').match(/^DUKASYNC_PG_BIN=(.*)$/m);
    if (m) return m[1].trim();
  }
  const versions = existsSync('/usr/lib/postgresql')
    ? readdirSync('/usr/lib/postgresql').filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('no PostgreSQL server binaries: set DUKASYNC_PG_BIN or run deploy/services.sh start');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/** The user PostgreSQL runs as: ourselves, or (as root) postgres / dukasync-pg like deploy/services.sh. */
function pgUser() {
  if (process.getuid() !== 0) return { name: null, uid: process.getuid(), gid: process.getgid() };
  const id = (name) => {
    try {
      return {
        name,
        uid: Number(execFileSync('id', ['-u', name], { encoding: 'utf8' })),
        gid: Number(execFileSync('id', ['-g', name], { encoding: 'utf8' })),
      };
    } catch {
      return null;
    }
  };
  let user = id('postgres') ?? id('dukasync-pg');
  if (!user) {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'dukasync-pg']);
    user = id('dukasync-pg');
  }
  return user;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** A port nobody listens on, below the kernel's ephemeral range (see deploy/services.sh, choose_ports). */
async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 21000 + Math.floor(Math.random() * 9000);
    const ok = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok && !(await portOpen(port))) return port;
  }
  throw new Error('no free port in 21000-29999');
}

async function waitFor(what, fn, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The pids of a process's children (from /proc). */
function childrenOf(pid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Starts an archived throwaway cluster. Returns
 * { url, port, dataDir, pitrDir, dir, pgBin, psql(sql, {db}), pitr(args), destroy(), restore({time}),
 *   receiver: { pause(), resume(), pid() }, stop() }.
 * psql() runs as the superuser over the socket; url is the dukasync role's DATABASE_URL (TCP, password).
 */
export async function pitrCluster({ pgBin = findPgBin(), log = false } = {}) {
  const user = pgUser();
  const dir = mkdtempSync(path.join(tmpdir(), 'dukasync-pitr-'));
  const dataDir = path.join(dir, 'data');
  const pitrDir = path.join(dir, 'pitr');
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const url = `postgres://dukasync:${password}@127.0.0.1:${port}/dukasync`;
  const asPg = { uid: user.uid, gid: user.gid };
  if (process.getuid() === 0) chownSync(dir, user.uid, user.gid);
  const env = {
    ...process.env,
    DUKASYNC_PITR_DIR: pitrDir,
    DUKASYNC_PITR_CONN: `host=${dir} port=${port} user=postgres`,
    DUKASYNC_PG_BIN: pgBin,
    PGCONNECT_TIMEOUT: '5',
  };
  for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSWORD', 'PGSERVICE', 'PGOPTIONS']) delete env[k];

  /** Runs a program as the PostgreSQL user; resolves with stdout, rejects with stderr in the message. */
  const run = (file, args, { timeoutMs = 600_000 } = {}) =>
    new Promise((resolve, reject) => {
      const child = spawn(file, args, { cwd: dir, env, ...asPg, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; if (log) process.stderr.write(d); });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve({ stdout: out, stderr: err });
        else reject(new Error(`${path.basename(file)} ${args.join(' ')} failed (${signal ?? code}): ${err.trim() || out.trim()}`));
      });
    });
  const pitr = async (...args) => (await run(PITR, args)).stdout;
  const pitrFull = (...args) => run(PITR, args);
  const psql = async (sql, { db = 'postgres' } = {}) =>
    (await run(path.join(pgBin, 'psql'), [
      ...['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1'],
      ...['-h', dir, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql],
    ])).stdout.trim();
  const pgCtl = (...args) => run(path.join(pgBin, 'pg_ctl'), ['-D', dataDir, '-l', path.join(dir, 'postgres.log'), ...args]);

  // --- the receiver: `pitr.sh receive`, restarted 1 s after it exits, as systemd's Restart=always does ---
  const receiverLog = createWriteStream(path.join(dir, 'receiver.log'), { flags: 'a' });
  let receiverChild = null;
  let receiverWanted = false;
  let restartTimer = null;
  const startReceiver = () => {
    receiverWanted = true;
    const child = spawn(PITR, ['receive'], { cwd: dir, env, ...asPg, stdio: ['ignore', 'pipe', 'pipe'] });
    receiverChild = child;
    child.stdout.pipe(receiverLog, { end: false });
    child.stderr.pipe(receiverLog, { end: false });
    child.on('exit', () => {
      if (receiverChild === child) receiverChild = null;
      if (!receiverWanted) return;
      restartTimer = setTimeout(() => {
        restartTimer = null;
        if (receiverWanted && !receiverChild) startReceiver();
      }, 1000);
    });
  };
  const stopReceiver = async () => {
    receiverWanted = false;
    if (restartTimer) clearTimeout(restartTimer);
    restartTimer = null;
    const child = receiverChild;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT'); // a paused receiver cannot act on SIGTERM
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const streaming = async () =>
    (await psql(`SELECT state FROM pg_stat_replication WHERE application_name = 'dukasync_wal'`)) === 'streaming';

  // --- the cluster -----------------------------------------------------------------------------------
  const loc = execFileSync('locale', ['-a'], { encoding: 'utf8' }).split('\n').some((l) => /^c\.utf-?8$/i.test(l)) ? 'C.UTF-8' : 'C';
  await run(path.join(pgBin, 'initdb'), [
    ...['-D', dataDir, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256'],
    ...['-E', 'UTF8', `--locale=${loc}`],
  ]);
  writeFileSync(path.join(dataDir, 'postgresql.conf'), "\ninclude 'dukasync.conf'\n", { flag: 'a' });
  // The same settings as deploy/services.sh, plus what archiving needs (PostgreSQL 15's defaults already
  // have wal_level = replica, 10 WAL senders and 10 slots: set anyway, as the deploy profile does).
  writeFileSync(
    path.join(dataDir, 'dukasync.conf'),
    [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'max_connections = 200',
      'shared_buffers = 128MB',
      'fsync = on',
      "password_encryption = 'scram-sha-256'",
      'wal_level = replica',
      'max_wal_senders = 10',
      'max_replication_slots = 10',
      '',
    ].join('\n'),
  );
  if (process.getuid() === 0) {
    chownSync(path.join(dataDir, 'postgresql.conf'), user.uid, user.gid);
    chownSync(path.join(dataDir, 'dukasync.conf'), user.uid, user.gid);
  }
  await pgCtl('-w', '-t', '60', 'start');
  await psql(`CREATE ROLE dukasync LOGIN CREATEDB CREATEROLE PASSWORD '${password}'`);
  // The server reads pg_stat_replication's LSNs (what the receiver has flushed): without this role they are NULL.
  await psql('GRANT pg_read_all_stats TO dukasync');
  await psql('CREATE DATABASE dukasync OWNER dukasync');
  await pitr('setup');
  startReceiver();
  await waitFor('the WAL receiver to stream', streaming);
  await pitr('base');

  // If the test process ends without stop() (a test timed out waiting for this cluster), take it along.
  const onExit = () => {
    receiverWanted = false;
    try { receiverChild?.kill('SIGKILL'); } catch { /* gone */ }
    try {
      const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGQUIT'); // immediate shutdown
    } catch { /* not running */ }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  let destroyed = false;
  return {
    url,
    port,
    dataDir,
    pitrDir,
    dir,
    pgBin,
    psql,
    /** Runs `deploy/pitr.sh ARGS...` as the PostgreSQL user; resolves with { stdout, stderr }. */
    pitr: pitrFull,
    receiver: {
      /**
       * SIGSTOP to pg_receivewal; resolves once it is stopped. A frozen receiver keeps its connection: do not let
       * the slot pass max_slot_wal_keep_size meanwhile (the checkpoint would wait for it; BACKUP.md).
       */
      async pause() {
        const child = receiverChild;
        if (!child) throw new Error('the receiver is not running');
        child.kill('SIGSTOP');
        await waitFor('the receiver to stop', () => {
          const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
          return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
        });
      },
      resume() { receiverChild?.kill('SIGCONT'); },
      /** systemctl stop dukasync-walreceive: resolves once it exited; no restart until start(). */
      stop: stopReceiver,
      /** systemctl start dukasync-walreceive (restarted 1 s after each exit from then on). */
      start() { if (!receiverChild) startReceiver(); },
      pid() { return receiverChild?.pid ?? null; },
      /** Resolves once the receiver streams (after a restart, for example). */
      streaming: () => waitFor('the WAL receiver to stream', streaming),
      /** Resolves once the receiver has flushed all WAL written so far (what pg_stat_replication says). */
      async caughtUp() {
        const target = await psql('SELECT pg_current_wal_insert_lsn()');
        await waitFor('the WAL receiver to flush everything', async () =>
          (await psql(`SELECT flush_lsn >= '${target}' FROM pg_stat_replication WHERE application_name = 'dukasync_wal'`)) === 't');
      },
    },

    /** The disk died: the data directory goes while PostgreSQL runs, then the postmaster and its children are killed. */
    async destroy() {
      const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const children = childrenOf(pid);
      rmSync(dataDir, { recursive: true, force: true });
      for (const p of [pid, ...children, ...childrenOf(pid)]) {
        try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
      }
      destroyed = true;
      await waitFor('the port to close', async () => !(await portOpen(port)));
      await waitFor('PostgreSQL processes to exit', async () => childrenOf(pid).length === 0 && !existsSync(`/proc/${pid}/stat`));
    },

    /**
     * deploy/RUNBOOK.md, "Lost disk", steps 1 and 3 to 6 (the caller stops and starts its own dukasync servers:
     * steps 1 and 7). Resolves with { ms } (from the start to a database that takes writes and is archived
     * again: a new base and the receiver streaming), and its parts: restoreMs (pitr.sh restore), recoveryMs
     * (PostgreSQL's replay until it promoted itself), the replay's end (replayedLsn, lastReplayedXact: the commit
     * time of the last transaction replayed) and the script's output.
     */
    async restore({ time } = {}) {
      const t0 = Date.now();
      await stopReceiver(); // 1. systemctl stop dukasync-walreceive
      if (!destroyed && existsSync(dataDir)) throw new Error('restore() after destroy() (or stop PostgreSQL and move the data dir away)');
      const r = await pitrFull('restore', dataDir, ...(time ? ['--time', time] : [])); // 3. pitr.sh restore
      const t1 = Date.now();
      await pgCtl('-w', '-t', '600', 'start'); // 4. systemctl start postgresql
      const after = await pitrFull('after-restore', dataDir); // 5. pitr.sh after-restore (waits for promotion)
      const t2 = Date.now();
      const [replayedLsn, lastReplayedXact] = (await psql(
        "SELECT pg_last_wal_replay_lsn(), coalesce(pg_last_xact_replay_timestamp()::text, '')",
      )).split('|');
      await pitr('base'); // 6. systemctl start dukasync-basebackup (pitr.sh base), then
      startReceiver(); //    systemctl start dukasync-walreceive
      await waitFor('the WAL receiver to stream', streaming);
      destroyed = false;
      return {
        ms: Date.now() - t0,
        restoreMs: t1 - t0,
        recoveryMs: t2 - t1,
        replayedLsn,
        lastReplayedXact: lastReplayedXact || null,
        output: r.stderr + after.stderr,
      };
    },

    /** Everything down, the temp dir removed. */
    async stop() {
      process.removeListener('exit', onExit);
      await stopReceiver();
      if (existsSync(path.join(dataDir, 'postmaster.pid'))) {
        await pgCtl('-m', 'immediate', '-w', 'stop').catch(() => {});
      }
      receiverLog.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
