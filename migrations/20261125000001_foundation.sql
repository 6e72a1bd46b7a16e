-- Scopes, users, roles, devices and their tokens.
-- Expand/contract rule (see migrations/README.md): a migration must be tolerated by the server version before it.

-- A scope is one business. Its id is a URL slug.
CREATE TABLE scopes (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A user may belong to several scopes, with one role in each.
CREATE TABLE memberships (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope_id  text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('owner', 'manager', 'cashier')),
    PRIMARY KEY (user_id, scope_id)
);
CREATE INDEX memberships_scope ON memberships (scope_id);

-- A device belongs to one user and acts with that user's roles.
CREATE TABLE devices (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz,
    UNIQUE (user_id, name)
);

-- Bearer tokens, stored as the blake3 hash of the token; the token itself is shown once, when issued.
CREATE TABLE device_tokens (
    id            uuid PRIMARY KEY,
    device_id     uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_seen_at  timestamptz
);
CREATE INDEX device_tokens_device ON device_tokens (device_id);
