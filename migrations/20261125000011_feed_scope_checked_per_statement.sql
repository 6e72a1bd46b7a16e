-- The feed's two tables (changes, records) check that their scope exists once per statement instead of once per
-- row.
--
-- Why: a foreign key runs one query per inserted row (SELECT ... FROM scopes ... FOR KEY SHARE, through SPI). A
-- sale writes four feed changes, so seven of the twelve foreign-key checks of a pushed sale were these two
-- tables asking for the same scope row again; in the batched-push benchmark foreign-key checks were 17% of
-- PostgreSQL's CPU (perf, 2026-11-25). A statement names one scope (every writer appends for one scope), so
-- one check per statement is the same rule at a fraction of the cost.
--
-- The rule is kept whole, by the database, for any writer:
--   * inserting a row whose scope does not exist fails with foreign_key_violation (SQLSTATE 23503) and the
--     constraint name the foreign key had;
--   * the check locks each named scope FOR KEY SHARE, as the foreign key's check did, so a scope cannot be
--     deleted while a transaction that wrote rows for it is open (the delete waits for it, then removes those
--     rows too);
--   * a row's scope_id cannot be changed, nor a scope's id (neither ever is);
--   * deleting a scope deletes its feed rows, as ON DELETE CASCADE did; TRUNCATE of scopes is refused (it would
--     leave them behind).
-- tests/scope_references.rs checks each point, and shows that the lock is what keeps a concurrent delete from
-- leaving rows behind.
--
-- The cascade runs in the deleting transaction's snapshot. Under REPEATABLE READ or SERIALIZABLE that snapshot
-- could miss rows committed by a writer the delete waited for (a foreign key's cascade checks for them; a
-- trigger cannot), so deleting a scope is refused outside READ COMMITTED, the default.
--
-- The ledger's tables (journal entries and lines, stock movements) and the stored results keep their foreign
-- keys, five checks per sale (9% of PostgreSQL's CPU in the same benchmark after this migration): the ledger's
-- integrity stays in plain constraints.
--
-- Expand only: the previous release writes these tables with the same statements and gets the same checks.

CREATE FUNCTION feed_scope_must_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    -- Lock first, then look: a scope deleted by a transaction this lock waited for is skipped by the lock and
    -- absent from the next statement's snapshot.
    PERFORM 1 FROM scopes WHERE id IN (SELECT scope_id FROM added) FOR KEY SHARE;
    SELECT a.scope_id INTO missing FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM scopes s WHERE s.id = a.scope_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"',
                        TG_TABLE_NAME, TG_TABLE_NAME || '_scope_id_fkey'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_TABLE_NAME || '_scope_id_fkey',
                  TABLE = TG_TABLE_NAME, DETAIL = format('Key (scope_id)=(%s) is not present in table "scopes".', missing);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION scope_id_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the scope of a row of "%" cannot change (% to %)', TG_TABLE_NAME, OLD.scope_id, NEW.scope_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_TABLE_NAME || '_scope_id_fkey', TABLE = TG_TABLE_NAME;
END $$;

CREATE FUNCTION scope_feed_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'delete scope % in a READ COMMITTED transaction: its feed rows are removed by a trigger',
                        OLD.id USING ERRCODE = 'feature_not_supported';
    END IF;
    DELETE FROM changes WHERE scope_id = OLD.id;
    DELETE FROM records WHERE scope_id = OLD.id;
    RETURN NULL;
END $$;

CREATE FUNCTION scope_id_never_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a scope''s id cannot change (% to %)', OLD.id, NEW.id USING ERRCODE = 'foreign_key_violation';
END $$;

CREATE FUNCTION scopes_not_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'truncating scopes would leave every scope''s feed rows behind: delete the scopes instead'
        USING ERRCODE = 'feature_not_supported';
END $$;

CREATE TRIGGER changes_scope_exists AFTER INSERT ON changes
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION feed_scope_must_exist();
CREATE TRIGGER records_scope_exists AFTER INSERT ON records
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION feed_scope_must_exist();
-- `UPDATE OF scope_id` fires only for an UPDATE that sets scope_id: the feed's own updates never do.
CREATE TRIGGER changes_scope_fixed BEFORE UPDATE OF scope_id ON changes
    FOR EACH ROW WHEN (OLD.scope_id IS DISTINCT FROM NEW.scope_id) EXECUTE FUNCTION scope_id_is_immutable();
CREATE TRIGGER records_scope_fixed BEFORE UPDATE OF scope_id ON records
    FOR EACH ROW WHEN (OLD.scope_id IS DISTINCT FROM NEW.scope_id) EXECUTE FUNCTION scope_id_is_immutable();
CREATE TRIGGER scopes_feed_cascade AFTER DELETE ON scopes
    FOR EACH ROW EXECUTE FUNCTION scope_feed_cascade();
CREATE TRIGGER scopes_id_fixed BEFORE UPDATE OF id ON scopes
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION scope_id_never_changes();
CREATE TRIGGER scopes_no_truncate BEFORE TRUNCATE ON scopes
    FOR EACH STATEMENT EXECUTE FUNCTION scopes_not_truncated();

-- The triggers exist before the foreign keys go, in this one transaction: no moment without the rule.
ALTER TABLE changes DROP CONSTRAINT changes_scope_id_fkey;
ALTER TABLE records DROP CONSTRAINT records_scope_id_fkey;
