-- Idempotent operation replay (see src/sync/replay.rs) and the conflict record.

-- One row per (scope, client): the last operation sequence applied. Advanced in the same transaction as the
-- operations' effects, so a crash can never leave effects without the sequence or the reverse.
CREATE TABLE replay_clients (
    scope_id    text   NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    client_id   uuid   NOT NULL,
    device_id   uuid   NOT NULL REFERENCES devices (id) ON DELETE CASCADE,  -- the device the client belongs to
    last_seq    bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_id, client_id)
);

-- The stored result of every applied operation, returned again when the operation is replayed.
CREATE TABLE replay_results (
    scope_id     text   NOT NULL,
    client_id    uuid   NOT NULL,
    seq          bigint NOT NULL CHECK (seq > 0),
    op_id        uuid   NOT NULL,
    fingerprint  bytea  NOT NULL CHECK (length(fingerprint) = 32),  -- blake3 of the canonical operation
    result       jsonb  NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_id, client_id, seq),
    FOREIGN KEY (scope_id, client_id) REFERENCES replay_clients (scope_id, client_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX replay_results_op_id ON replay_results (scope_id, op_id);

-- Finding a row's state at an older version (the base of a conflicting update).
CREATE INDEX changes_by_key ON changes (scope_id, collection, key, version);

-- Everything sync could not decide alone: field conflicts, rejected operations, flagged sales.
CREATE TABLE conflicts (
    id           uuid PRIMARY KEY,
    scope_id     text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('field_conflict', 'rejected_operation', 'oversold_stock', 'stale_price')),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    collection   text NOT NULL,
    key          text NOT NULL,
    fields       text[] NOT NULL DEFAULT '{}',   -- the fields both sides changed
    base         jsonb,                          -- the row as the device last saw it
    server       jsonb,                          -- the row on the server when the operation arrived
    client       jsonb,                          -- what the device sent
    detail       jsonb NOT NULL DEFAULT '{}',    -- policy applied, rejection code, ...
    client_id    uuid NOT NULL,
    op_id        uuid NOT NULL,
    seq          bigint NOT NULL,
    device_id    uuid NOT NULL,
    user_id      uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolved_by  uuid,
    resolution   jsonb
);
CREATE INDEX conflicts_open ON conflicts (scope_id, status, created_at);
