-- The ledger's checks look entries and lines up by key, whatever the statistics said when they were planned.
--
-- Why: PL/pgSQL keeps a trigger's query plan for the life of the connection, until the table's statistics change.
-- Planned while a table is small (a new database, or one whose journal tables were analyzed while empty), the
-- checks chose to read the whole table: a hash join over a sequential scan of journal_entries for the lines'
-- posting check (migration 0009), sequential scans of journal_entries and journal_lines for the balance checks
-- at commit (migrations 0004 and 0009). Kept while the ledger grew, each sale then read every entry and line of
-- the database, until autovacuum analyzed the tables again (at most once a minute, after 10% growth). Measured on
-- a scratch database: after 20,000 entries, one sale read 20,058 entries and 40,116 lines at commit and took
-- 13 ms; in the benchmark, one run of the single-sale scenario spent 31% of PostgreSQL's CPU in these triggers
-- against 6% in the next run of the same code. tests/ledger_plans.rs reproduces it.
--
-- Now:
--   * the posting check looks up each inserted line's entry by its key (a LATERAL subquery with LIMIT 1 cannot be
--     turned into a join over the whole table);
--   * the three functions plan with enable_seqscan off, so a key lookup is an index lookup even when the table
--     looked empty. Only these functions' own queries are affected.
-- The server's replay transactions also plan with enable_seqscan off (src/sync/replay.rs): that covers the
-- foreign-key checks, which PostgreSQL plans in the writer's session.
--
-- Expand only: same rules, same errors; the previous release runs unchanged on these functions.

CREATE OR REPLACE FUNCTION journal_lines_posted_with_entry() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    stray uuid;
BEGIN
    SELECT a.entry_id INTO stray
      FROM added a
     CROSS JOIN LATERAL (SELECT e.posted_in, e.posted_at FROM journal_entries e
                          WHERE e.scope_id = a.scope_id AND e.id = a.entry_id LIMIT 1) e
     WHERE e.posted_in IS DISTINCT FROM pg_current_xact_id() OR e.posted_at <> now()
     LIMIT 1;
    IF stray IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % was posted by an earlier transaction: lines are added only when posting', stray
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_lines_posted_with_entry';
    END IF;
    RETURN NULL;
END $$;

ALTER FUNCTION journal_entry_must_balance() SET enable_seqscan = off;
ALTER FUNCTION journal_lines_must_balance() SET enable_seqscan = off;
