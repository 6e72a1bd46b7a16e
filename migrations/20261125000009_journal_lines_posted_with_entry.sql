-- A journal entry's lines are written in the transaction that posts the entry, and checked once per entry.
--
-- Why: the balance rule of migration 0004 ran a deferred check per entry *and* per line, so a sale (one entry, two
-- or three lines) ran the same check three or four times at commit. With `pg_stat_statements` during the
-- benchmark's pushes, the line checks were about an eighth of PostgreSQL's time; with this rule, PostgreSQL's CPU
-- per batched push fell from 12.4 to 10.8 ms (README, Benchmarks). The line checks only mattered for an entry whose own check
-- does not run in the same transaction, that is for lines added to an entry posted earlier. An entry is a posted
-- fact: a correction is a reversing entry (`reverses`), and the server never adds lines to an old entry.
--
-- The rule now:
--   * at commit, every entry inserted or updated in the transaction balances, with two lines or more (migration
--     0004's deferred check on journal_entries, unchanged);
--   * a line may only be inserted into an entry posted in the same transaction, checked once per INSERT
--     statement, at its end: the entry's `posted_in` (the posting transaction's id) and `posted_at` (its start,
--     `now()`) are this transaction's. Transaction ids never repeat within a cluster, but a dump restored into
--     another cluster carries ids that the new cluster may hand out again; no later transaction starts at the
--     same instant as the restored one, so the pair stays unique;
--   * a line updated or deleted still runs the deferred check of its entry at commit, and of the entry it left
--     when the update moved it to another one (before, only the entry it joined).
-- Lines inserted one by one, balanced only at the end, still commit. To add lines to an old entry, code would have
-- to update the entry's `posted_in` and `posted_at` to its own transaction's, which fires the entry's own check at
-- commit: the database still refuses every unbalanced entry, whatever code writes it (tests/journal_balance.rs).
--
-- `deploy/restore.sh` (pg_restore of a whole dump) creates triggers after loading the data, so restored lines are
-- not held to this rule; a data-only restore into an existing schema would be, and fails.
--
-- Expand only: the previous release never adds lines to an old entry, and its inserts take the column's default.
-- Existing entries get no `posted_in` (no table rewrite): no line can be added to them.

ALTER TABLE journal_entries ADD COLUMN posted_in xid8;
ALTER TABLE journal_entries ALTER COLUMN posted_in SET DEFAULT pg_current_xact_id();

CREATE FUNCTION journal_lines_posted_with_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stray uuid;
BEGIN
    SELECT e.id INTO stray
      FROM added a JOIN journal_entries e ON e.scope_id = a.scope_id AND e.id = a.entry_id
     WHERE e.posted_in IS DISTINCT FROM pg_current_xact_id() OR e.posted_at <> now()
     LIMIT 1;
    IF stray IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % was posted by an earlier transaction: lines are added only when posting', stray
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_lines_posted_with_entry';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_lines_posted_with_entry AFTER INSERT ON journal_lines
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION journal_lines_posted_with_entry();

-- A line moved to another entry (an UPDATE of its entry_id) unbalances the entry it left as well: migration 0007's
-- function checked only the entry it joined. It now checks both.
CREATE OR REPLACE FUNCTION journal_lines_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry record;
    present boolean;
    lines bigint;
    debits numeric;
    credits numeric;
BEGIN
    FOR entry IN
        SELECT OLD.scope_id AS scope_id, OLD.entry_id AS id WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION
        SELECT NEW.scope_id, NEW.entry_id WHERE TG_OP IN ('UPDATE', 'INSERT')
    LOOP
        SELECT EXISTS (SELECT 1 FROM journal_entries WHERE scope_id = entry.scope_id AND id = entry.id),
               count(*), COALESCE(sum(debit), 0), COALESCE(sum(credit), 0)
          INTO present, lines, debits, credits
          FROM journal_lines WHERE scope_id = entry.scope_id AND entry_id = entry.id;
        IF present AND (lines < 2 OR debits <> credits) THEN
            RAISE EXCEPTION 'journal entry % is unbalanced: % lines, debits %, credits %', entry.id, lines, debits,
                credits USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

DROP TRIGGER journal_lines_balanced ON journal_lines;
CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER UPDATE OR DELETE ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_lines_must_balance();
