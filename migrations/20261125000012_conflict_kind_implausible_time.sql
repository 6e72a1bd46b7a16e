-- A command whose time is implausibly far from the server's clock is applied at the server's time and flagged
-- (src/replay/commands.rs, protocol §10.1): the flag joins the recorded conflict kinds. Widening the check is
-- tolerated by the version running before it, which never writes the new kind.
ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check CHECK (kind IN
    ('field_conflict', 'rejected_operation', 'oversold_stock', 'stale_price', 'unknown_product',
     'implausible_time'));
