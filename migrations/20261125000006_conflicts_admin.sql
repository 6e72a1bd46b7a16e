-- Conflict inspection and resolution (see src/sync/conflicts.rs).

-- The version the operation left the row at when the conflict was recorded (NULL: no row, or recorded before
-- this column existed). A resolution is refused with 409 `row_moved_on` when the row's version differs, so a
-- person never decides against a state they did not see.
ALTER TABLE conflicts ADD COLUMN row_version bigint;

-- The admin list: newest first, by scope, with a (created_at, id) cursor.
CREATE INDEX conflicts_by_scope_created ON conflicts (scope_id, created_at DESC, id DESC);
