-- Backend writes through SQL (docs/backend-sql.md): the schema `dukasync_api`, contract v1.
--
-- PostgreSQL alone cannot write a feed change (a change carries a blake3 row hash of canonical JSON, and the
-- collection checksums move with it), so the functions below only queue a write in the caller's transaction.
-- The server's applier (src/inbox/) turns committed queued writes into feed changes and deletes them in one
-- transaction. The queue commits or rolls back with the caller's own writes.
--
-- Expand only: nothing existing changes except the conflict kinds, widened (the version before never writes the
-- new kind). Within v1, objects here are only added; a changed signature is a new function or a new schema.

CREATE SCHEMA dukasync_api;
COMMENT ON SCHEMA dukasync_api IS 'dukasync backend contract v1 (docs/backend-sql.md); names starting with _ are not part of it';

-- Writes queued by the backend, applied by the server in id order per scope, then deleted.
CREATE TABLE dukasync_api.pending_writes (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    collection  text NOT NULL,
    key         text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('put', 'patch', 'delete')),
    data        jsonb,                  -- put: the whole row; patch: top-level fields (null removes); delete: NULL
    source      text NOT NULL DEFAULT 'sql',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_writes_by_scope ON dukasync_api.pending_writes (scope, id);

-- The collection definitions of the running server, written by it at start-up (src/inbox/): what the functions
-- check a write against, and what `capture install` reads.
CREATE TABLE dukasync_api.collections (
    name             text PRIMARY KEY,
    backend_writes   boolean NOT NULL,
    device_writes    boolean NOT NULL,
    conflict_policy  text NOT NULL,
    reference        boolean NOT NULL,
    published_at     timestamptz NOT NULL DEFAULT now()
);

-- Installed capture triggers (`dukasync capture install|remove|list`).
CREATE TABLE dukasync_api.captures (
    table_name    text PRIMARY KEY,     -- as given, e.g. erp_product or erp.product
    collection    text NOT NULL,
    key_column    text NOT NULL,
    scope_column  text,                 -- exactly one of scope_column and scope_value
    scope_value   text,
    columns       text[] NOT NULL,
    installed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope_column IS NULL) <> (scope_value IS NULL))
);

-- Backend writes that could not apply are recorded like a device's rejected operation.
ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check CHECK (kind IN
    ('field_conflict', 'rejected_operation', 'oversold_stock', 'stale_price', 'unknown_product',
     'implausible_time', 'rejected_backend_write'));

-- Checks common to every write, takes the row's writer lock, queues the write and notifies the applier.
-- SQLSTATEs (class ZD, docs/backend-sql.md): ZD001 unknown scope, ZD002 collection the backend may not write,
-- ZD003 invalid data, ZD004 invalid key.
CREATE FUNCTION dukasync_api._enqueue(p_scope text, p_collection text, p_key text, p_kind text, p_data jsonb,
                                      p_source text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    bad_number jsonb;
    queued bigint;
BEGIN
    IF p_scope IS NULL OR NOT EXISTS (SELECT 1 FROM scopes WHERE id = p_scope) THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD001', MESSAGE = format('dukasync: unknown scope %L', p_scope);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM dukasync_api.collections WHERE name = p_collection AND backend_writes) THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD002',
            MESSAGE = format('dukasync: the backend may not write collection %L', p_collection),
            HINT = 'see dukasync_api.collections (written by the server at start-up)';
    END IF;
    IF p_key IS NULL OR octet_length(p_key) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD004', MESSAGE = 'dukasync: a key is 1 to 128 bytes of text';
    END IF;
    IF p_source IS NULL OR p_source = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD003', MESSAGE = 'dukasync: source must not be empty';
    END IF;
    IF p_kind <> 'delete' THEN
        IF p_data IS NULL OR jsonb_typeof(p_data) <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'ZD003', MESSAGE = format('dukasync: %s takes a JSON object', p_kind);
        END IF;
        -- Integers within ±(2^53 - 1) only, as canonical JSON requires: money travels as decimal strings.
        SELECT v INTO bad_number FROM jsonb_path_query(p_data, 'strict $.**') AS v
         WHERE jsonb_typeof(v) = 'number'
           AND (v::text ~ '[.eE]' OR abs(v::text::numeric) > 9007199254740991)
         LIMIT 1;
        IF bad_number IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'ZD003',
                MESSAGE = format('dukasync: %s is not an integer within ±(2^53 - 1); send decimals as strings',
                                 bad_number);
        END IF;
    END IF;
    IF p_kind = 'put' AND p_data->'id' IS DISTINCT FROM to_jsonb(p_key) THEN
        RAISE EXCEPTION USING ERRCODE = 'ZD003', MESSAGE = 'dukasync: data.id must equal key (as a string)';
    END IF;
    IF p_kind = 'patch' THEN
        IF p_data = '{}'::jsonb THEN
            RAISE EXCEPTION USING ERRCODE = 'ZD003', MESSAGE = 'dukasync: patch takes at least one field';
        END IF;
        IF p_data ? 'id' AND p_data->'id' IS DISTINCT FROM to_jsonb(p_key) THEN
            RAISE EXCEPTION USING ERRCODE = 'ZD003', MESSAGE = 'dukasync: patch cannot change id';
        END IF;
    END IF;
    -- Writers of one row queue in commit order: the second waits here until the first commits or rolls back,
    -- and only then draws its id, so the applier, reading in id order, applies them in commit order. The two-key
    -- form ('duka', hash) keeps clear of the application's own one-key advisory locks.
    PERFORM pg_advisory_xact_lock(1685416801, hashtext(p_scope || chr(31) || p_collection || chr(31) || p_key));
    INSERT INTO dukasync_api.pending_writes (scope, collection, key, kind, data, source)
    VALUES (p_scope, p_collection, p_key, p_kind, p_data, p_source)
    RETURNING id INTO queued;
    -- Delivered at commit only: a rolled-back write wakes nobody.
    PERFORM pg_notify('dukasync_inbox', p_scope);
    RETURN queued;
END
$$;

CREATE FUNCTION dukasync_api.put(scope text, collection text, key text, data jsonb, source text DEFAULT 'sql')
RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$
    SELECT dukasync_api._enqueue(scope, collection, key, 'put', data, source)
$$;

CREATE FUNCTION dukasync_api.patch(scope text, collection text, key text, fields jsonb, source text DEFAULT 'sql')
RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$
    SELECT dukasync_api._enqueue(scope, collection, key, 'patch', fields, source)
$$;

CREATE FUNCTION dukasync_api.delete(scope text, collection text, key text, source text DEFAULT 'sql')
RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$
    SELECT dukasync_api._enqueue(scope, collection, key, 'delete', NULL, source)
$$;

-- The functions run as their owner with dukasync's schema first on their path, whatever the caller's path:
-- the backend's role then needs only USAGE on the schema and EXECUTE on put, patch and delete.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['dukasync_api._enqueue(text, text, text, text, jsonb, text)',
                             'dukasync_api.put(text, text, text, jsonb, text)',
                             'dukasync_api.patch(text, text, text, jsonb, text)',
                             'dukasync_api.delete(text, text, text, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog, pg_temp', f, current_schema());
    END LOOP;
END
$$;
