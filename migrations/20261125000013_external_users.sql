-- Users and devices named by the ERP's backend (JWTs, protocol §3.2).
-- Expand only: nullable columns, tolerated by the server version before this one (which never reads them).

-- The ERP's id for the user (a JWT's `sub`). Set by `dukasync user-add --external-id`; a JWT whose `sub` names
-- no user is refused, so roles stay a fact of this server's memberships.
ALTER TABLE users ADD COLUMN external_id text
    CHECK (length(external_id) BETWEEN 1 AND 255);
ALTER TABLE users ADD CONSTRAINT users_external_id UNIQUE (external_id);

-- The app's stable device id (a JWT's `device` claim). The device row is created on first sight, so a push's
-- client_id binding and last_seen keep working as for device tokens. NULL for devices of device tokens (NULLs
-- are distinct, so they never collide).
ALTER TABLE devices ADD COLUMN external_id text
    CHECK (length(external_id) BETWEEN 1 AND 128);
ALTER TABLE devices ADD CONSTRAINT devices_user_external_id UNIQUE (user_id, external_id);
