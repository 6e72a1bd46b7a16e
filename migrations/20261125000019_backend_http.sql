-- Backend writes over HTTP (protocol §14, `POST /v1/scopes/{scope}/rows`).
--
-- A fourth membership role, `backend`, for the ERP's service user: it may write rows of the collections the
-- backend writes and nothing a device does (pairing codes never grant it). And the stored result of every
-- backend write id, so a resent batch gets the same answer and a reused id with another payload is refused.
-- Expand only: the version before never writes the new role or the new table.

ALTER TABLE memberships DROP CONSTRAINT memberships_role_check;
ALTER TABLE memberships ADD CONSTRAINT memberships_role_check
    CHECK (role IN ('owner', 'manager', 'cashier', 'backend'));

CREATE TABLE backend_write_results (
    scope        text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    write_id     uuid NOT NULL,
    fingerprint  bytea NOT NULL,        -- blake3 of the write's canonical JSON, as sent
    result       jsonb NOT NULL,        -- the write's answer, returned again on a resend
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, write_id)
);
