-- The versioned change feed (see src/sync/feed.rs for the invariants).

-- head_version: the scope's last assigned version. Every writing transaction increments it with
-- UPDATE ... RETURNING, which locks the scope row until commit: versions are dense and commit-ordered per scope,
-- and writers of different scopes never wait on each other.
-- floor_version: changes below it may have been compacted (the one at the floor is kept); cursors below it
-- must reset unless issued after that compaction (see src/sync/cursor.rs).
ALTER TABLE scopes
    ADD COLUMN head_version  bigint NOT NULL DEFAULT 0 CHECK (head_version >= 0),
    ADD COLUMN floor_version bigint NOT NULL DEFAULT 0 CHECK (floor_version >= 0);

-- The current state of every synced row.
CREATE TABLE records (
    scope_id    text   NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    collection  text   NOT NULL,
    key         text   NOT NULL,
    data        jsonb  NOT NULL,
    version     bigint NOT NULL,            -- version of the change that wrote this state
    row_hash    bigint NOT NULL CHECK (row_hash BETWEEN 0 AND 4294967295),
    PRIMARY KEY (scope_id, collection, key)
);

-- The log: one row per committed change, immutable once written.
CREATE TABLE changes (
    scope_id        text   NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    version         bigint NOT NULL CHECK (version > 0),
    collection      text   NOT NULL,
    key             text   NOT NULL,
    op              text   NOT NULL CHECK (op IN ('upsert', 'delete')),
    data            jsonb,                  -- the row's full new state; NULL for a delete (tombstone)
    -- Random per change: a cursor carries the tag of its change, so a cursor from another history
    -- (a restored backup, another database) is recognised instead of silently skipping data.
    tag             bigint NOT NULL,
    -- The collection's checksum and row count right after this change (sum of row hashes mod 2^32).
    checksum_after  bigint NOT NULL CHECK (checksum_after BETWEEN 0 AND 4294967295),
    count_after     bigint NOT NULL CHECK (count_after >= 0),
    committed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_id, version),
    CHECK ((op = 'delete') = (data IS NULL))
);
CREATE INDEX changes_by_collection ON changes (scope_id, collection, version);

-- Running checksum and row count per collection, kept in step with records by every write.
CREATE TABLE collection_state (
    scope_id    text   NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    collection  text   NOT NULL,
    checksum    bigint NOT NULL CHECK (checksum BETWEEN 0 AND 4294967295),
    row_count   bigint NOT NULL CHECK (row_count >= 0),
    PRIMARY KEY (scope_id, collection)
);
