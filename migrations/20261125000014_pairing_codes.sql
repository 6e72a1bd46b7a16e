-- One-time pairing codes (protocol §3.3): an owner or manager creates one for a user (known by email, created at
-- redemption when new) and a role in a scope; a phone exchanges it once for a device token. Only the blake3 hash
-- of the code is stored, like tokens.
CREATE TABLE pairing_codes (
    id            uuid PRIMARY KEY,
    code_hash     bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    scope_id      text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    email         text NOT NULL,
    -- The name of a user who does not exist yet; NULL for an existing user (their name is kept).
    display_name  text,
    role          text NOT NULL CHECK (role IN ('owner', 'manager', 'cashier')),
    device_name   text,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    -- The token the code was exchanged for.
    token_id      uuid REFERENCES device_tokens (id) ON DELETE SET NULL
);
-- Expired and used codes are swept by the server when it creates new ones.
CREATE INDEX pairing_codes_expires ON pairing_codes (expires_at);
