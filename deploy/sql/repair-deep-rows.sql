-- Deletes every synced row nested deeper than the protocol's limit of 32 levels (protocol §5).
--
-- Versions before the fix of issue 18 let an `update` with a long dotted key path (e.g. 128 segments) store a row
-- nested past what the server can parse back (serde_json stops at 128 levels), so every read of that row answered
-- 500: the reference snapshot of its collection, sales of that product, even the owner's overwrite or delete.
-- Current versions refuse such writes (400 `too_deep`), so only rows stored earlier can be affected.
--
-- Each row found is deleted as the server deletes a row: one new version of its scope, a `delete` change in the
-- log, `records` and the collection's checksum and count updated, and the notification that wakes long-polls.
-- Devices then drop the row like any other delete; the owner re-enters it (without the deep field) if it is still
-- wanted. Save the rows first (deploy/RUNBOOK.md). Safe to run again: with no such row it does nothing.
-- The `jsonb_path_exists` test is true exactly when a value sits at level 33 or deeper (top-level fields are
-- level 1), the same count the server uses.
DO $$
DECLARE
    r record;
    v bigint;
    h bigint;
    cs bigint;
    n bigint;
BEGIN
    FOR r IN
        SELECT scope_id, collection, key FROM records
         WHERE jsonb_path_exists(data, 'strict $.**{33 to last}')
         ORDER BY scope_id, collection, key
    LOOP
        -- The scope's version lock, as every writer takes it.
        UPDATE scopes SET head_version = head_version + 1 WHERE id = r.scope_id RETURNING head_version INTO v;
        DELETE FROM records WHERE scope_id = r.scope_id AND collection = r.collection AND key = r.key
            RETURNING row_hash INTO h;
        UPDATE collection_state SET checksum = (checksum - h + 4294967296) % 4294967296, row_count = row_count - 1
         WHERE scope_id = r.scope_id AND collection = r.collection
        RETURNING checksum, row_count INTO cs, n;
        INSERT INTO changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
        VALUES (r.scope_id, v, r.collection, r.key, 'delete', NULL,
                ('x' || substr(md5(gen_random_uuid()::text), 1, 16))::bit(64)::bigint, cs, n);
        PERFORM pg_notify('dukasync_changes', r.scope_id || ':' || v);
        RAISE NOTICE 'deleted %/%/% at version %', r.scope_id, r.collection, r.key, v;
    END LOOP;
END
$$;
