// deploy/pitr.sh on a throwaway cluster (cluster.js): what the receiver had flushed survives the loss of the data
// directory, a restore to a time stops at that time, the archive keeps working after a restore (a new
// timeline), and `verify` fails on an archive with a missing or damaged segment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, copyFileSync, readdirSync, rmSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { pitrCluster } from './cluster.js';

const lsn = (s) => {
  const [hi, lo] = s.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

/**
 * Inserts rows 1, 2, ... into `sales` as the dukasync role over TCP, one transaction each, each after the last
 * one's commit returned. After each commit it reads, in the same session, pg_current_wal_insert_lsn() (at or past
 * that commit's record) and the flush position the receiver reported (pg_stat_replication). A row is safe once
 * some flush position at or past its LSN was seen.
 */
function startWriter(c, { from = 1 } = {}) {
  const psql = spawn(path.join(c.pgBin, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', c.url], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const acked = new Map(); // id -> LSN at or past its commit
  let maxFlush = 0n;
  let next = from;
  let buf = '';
  let stopping = false;
  let stderr = '';
  psql.stderr.on('data', (d) => { stderr += d; });
  const send = () => {
    if (stopping) return psql.stdin.end();
    const id = next++;
    psql.stdin.write(
      `INSERT INTO sales (id) VALUES (${id});\n` +
        `SELECT 'ack', ${id}, pg_current_wal_insert_lsn(), coalesce((SELECT flush_lsn FROM pg_stat_replication ` +
        `WHERE application_name = 'dukasync_wal')::text, '0/0');\n`,
    );
  };
  psql.stdin.on('error', () => {}); // the server went away
  psql.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const [tag, id, at, flush] = line.split('|');
      if (tag !== 'ack') continue;
      acked.set(Number(id), lsn(at));
      if (lsn(flush) > maxFlush) maxFlush = lsn(flush);
      send();
    }
  });
  const done = new Promise((resolve) => psql.on('close', resolve));
  send();
  return {
    acked,
    get maxFlush() { return maxFlush; },
    get stderr() { return stderr; },
    safe: () => [...acked].filter(([, at]) => at <= maxFlush).map(([id]) => id),
    async stop() { stopping = true; await done; },
    done,
  };
}

const ids = async (c) =>
  new Set((await c.psql('SELECT id FROM sales ORDER BY id', { db: 'dukasync' })).split('\n').filter(Boolean).map(Number));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const FLUSHED_SURVIVE =
  'after the data directory is destroyed mid-write, the restore has every row the receiver had flushed, and the archive works again';
test(FLUSHED_SURVIVE, { timeout: 300_000 }, async (t) => {
  const c = await pitrCluster();
  try {
    await c.psql('CREATE TABLE sales (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())', { db: 'dukasync' });
    await c.psql('ALTER TABLE sales OWNER TO dukasync', { db: 'dukasync' });
    const w = startWriter(c);
    // A random moment, once a few hundred rows are in.
    await sleep(1500 + Math.random() * 2000);
    const flushedBefore = w.maxFlush;
    const ackedBefore = w.acked.size;
    const lastAckedLsn = [...w.acked.values()].reduce((a, b) => (b > a ? b : a), 0n);
    await c.destroy();
    await w.done; // the writer's connection died with the server
    const acked = [...w.acked.keys()];
    const safe = w.safe();
    assert.ok(acked.length > 50, `the writer committed ${acked.length} rows; psql said: ${w.stderr}`);
    assert.ok(flushedBefore > 0n, 'the receiver reported a flush position');

    const r = await c.restore();
    const present = await ids(c);
    const missingSafe = safe.filter((id) => !present.has(id));
    assert.deepEqual(missingSafe, [], `rows the receiver had flushed are missing after the restore`);
    const lostAcked = acked.filter((id) => !present.has(id));
    const maxAcked = Math.max(...acked);
    t.diagnostic(
      `when destroy() began: ${ackedBefore} rows committed, the receiver's reported flush ${lastAckedLsn - flushedBefore} bytes ` +
        `behind the newest commit (${ackedBefore - [...w.acked].filter(([, at]) => at <= flushedBefore).length} rows not yet reported); ` +
        `in all ${acked.length} rows committed (newest ${maxAcked}), ${safe.length} known flushed by the receiver, ` +
        `${present.size} present after the restore; acknowledged but lost: ${lostAcked.length}; ` +
        `restore ${r.ms} ms (pitr.sh restore ${r.restoreMs} ms, replay until promoted ${r.recoveryMs} ms, then receiver and a new base); ` +
        `last replayed commit ${r.lastReplayedXact}`,
    );
    // Nothing that was never committed appears (ids are only ever sent in order, one at a time).
    assert.ok([...present].every((id) => id <= maxAcked + 1), 'rows appear that were never sent');

    // The archive of the new timeline works: write more, destroy again, restore again.
    const w2 = startWriter(c, { from: maxAcked + 2 });
    await sleep(1000);
    await w2.stop();
    // Once the receiver has flushed everything written so far, every row of w2 must survive.
    await c.receiver.caughtUp();
    const safe2 = [...w2.acked.keys()];
    assert.ok(safe2.length > 10, `the second writer committed ${safe2.length} rows`);
    const verified = await c.pitr('verify');
    assert.match(verified.stdout, /^verified: /);
    await c.destroy();
    await c.restore();
    const present2 = await ids(c);
    assert.deepEqual(safe2.filter((id) => !present2.has(id)), [], 'rows written after the first restore are missing after the second');
    assert.deepEqual(safe.filter((id) => !present2.has(id)), [], 'rows of before the first restore are missing after the second');
  } finally {
    await c.stop();
  }
});

test('a restore to a time has the rows committed before it and none committed after it', { timeout: 300_000 }, async () => {
  const c = await pitrCluster();
  try {
    await c.psql('CREATE TABLE sales (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())', { db: 'dukasync' });
    for (let id = 1; id <= 30; id++) await c.psql(`INSERT INTO sales (id) VALUES (${id})`, { db: 'dukasync' });
    const time = await c.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    for (let id = 31; id <= 60; id++) await c.psql(`INSERT INTO sales (id) VALUES (${id})`, { db: 'dukasync' });
    await c.receiver.caughtUp(); // rows 1-30 are archived: the time, not the receiver, decides
    await c.destroy();
    const r = await c.restore({ time });
    const present = await ids(c);
    assert.deepEqual([...present].sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.ok(new Date(r.lastReplayedXact) <= new Date(time), `replayed up to ${r.lastReplayedXact}, past ${time}`);
    // The new generation of the archive (a new timeline that branched off before the old one's end) works.
    await c.psql('INSERT INTO sales (id) VALUES (1000)', { db: 'dukasync' });
    assert.match((await c.pitr('verify')).stdout, /^verified: /);
    assert.match((await c.pitr('status')).stdout, /receiver: streaming/);
  } finally {
    await c.stop();
  }
});

const PAUSE_AND_VERIFY =
  'a paused receiver reports nothing flushed until resumed; verify passes on a good archive and fails when a segment is missing or damaged';
test(PAUSE_AND_VERIFY, { timeout: 300_000 }, async () => {
  const c = await pitrCluster();
  try {
    await c.psql('CREATE TABLE sales (id bigint PRIMARY KEY)', { db: 'dukasync' });
    // What verify's sanity query reads in a dukasync database.
    await c.psql('CREATE TABLE changes (version bigint NOT NULL); INSERT INTO changes VALUES (7), (9)', { db: 'dukasync' });
    // Four segments after the base's.
    for (let id = 1; id <= 4; id++) {
      await c.psql(`INSERT INTO sales (id) VALUES (${id})`, { db: 'dukasync' });
      await c.psql('SELECT pg_switch_wal()');
    }
    await c.psql('INSERT INTO sales (id) VALUES (5)', { db: 'dukasync' });
    const wal = path.join(c.pitrDir, 'wal');
    await c.receiver.caughtUp();
    // A paused receiver: the commit's WAL is not reported flushed (what the server tells phones), status says so;
    // resumed, it catches up.
    await c.receiver.pause();
    await c.psql('INSERT INTO sales (id) VALUES (6)', { db: 'dukasync' });
    const commitLsn = await c.psql('SELECT pg_current_wal_insert_lsn()');
    const status = await c.pitr('status');
    const behind = Number(/(\d+) bytes not yet flushed/.exec(status.stdout)?.[1]);
    assert.ok(behind > 0, status.stdout);
    const flushed = await c.psql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'dukasync_wal'");
    assert.ok(lsn(flushed) < lsn(commitLsn), `flushed ${flushed} while paused, commit at ${commitLsn}`);
    c.receiver.resume();
    await c.receiver.caughtUp();

    const good = await c.pitr('verify');
    assert.match(good.stdout, /^verified: .*dukasync: 2 changes, newest version 9/);

    const complete = readdirSync(wal).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort();
    assert.ok(complete.length >= 4, `complete segments: ${complete}`);
    // The second newest complete one: after the base's own WAL, before the newest.
    const victim = path.join(wal, complete[complete.length - 2]);
    const saved = path.join(c.dir, 'saved-segment');
    copyFileSync(victim, saved);
    const { uid, gid } = statSync(wal);
    const putBack = () => {
      copyFileSync(saved, victim);
      chownSync(victim, uid, gid); // the tests run as root; pitr.sh as PostgreSQL's user
    };

    // Missing.
    rmSync(victim);
    await assert.rejects(c.pitr('verify'), /is missing from .*gap/);

    // Present but damaged (its first page overwritten): recovery ends there, before the newest segment.
    putBack();
    const fd = openSync(victim, 'r+');
    writeSync(fd, Buffer.alloc(8192, 0x5a), 0, 8192, 0);
    closeSync(fd);
    await assert.rejects(c.pitr('verify'), /the WAL is damaged/);

    // Repaired: passes again (so the failures above were about that segment).
    putBack();
    assert.match((await c.pitr('verify')).stdout, /^verified: /);
  } finally {
    await c.stop();
  }
});

const SLOT_LOST =
  'a receiver that stays behind past max_slot_wal_keep_size loses its slot instead of filling the disk; ' +
  'restart-archive starts a good archive again';
test(SLOT_LOST, { timeout: 300_000 }, async () => {
  const c = await pitrCluster();
  try {
    await c.psql("ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'");
    await c.psql('SELECT pg_reload_conf()');
    await c.psql('CREATE TABLE sales (id bigint PRIMARY KEY)', { db: 'dukasync' });
    // A dead receiver (a SIGSTOPped one would not do: the server's WAL sender, told to release the slot, blocks
    // sending its error to a client that reads nothing, and the checkpoint waits for it).
    await c.receiver.stop();
    // Five segments more than the slot may hold, then a checkpoint (which removes old WAL).
    for (let id = 1; id <= 5; id++) {
      await c.psql(`INSERT INTO sales (id) VALUES (${id})`, { db: 'dukasync' });
      await c.psql('SELECT pg_switch_wal()');
    }
    await c.psql('CHECKPOINT');
    assert.equal(await c.psql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'dukasync_wal'"), 'lost');
    await assert.rejects(c.pitr('status'), /slot dukasync_wal is LOST/);

    // The runbook's steps (BACKUP.md, "When the receiver falls behind"), the receiver still stopped.
    await c.pitr('restart-archive');
    await c.pitr('base');
    c.receiver.start();
    await c.receiver.streaming();
    await c.psql('INSERT INTO sales (id) VALUES (6)', { db: 'dukasync' });
    await c.receiver.caughtUp();
    assert.match((await c.pitr('status')).stdout, /wal_status reserved/);
    assert.match((await c.pitr('verify')).stdout, /^verified: /);
  } finally {
    await c.stop();
  }
});
