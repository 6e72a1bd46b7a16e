-- Money: the double-entry journal and stock movements written by named commands (src/money/).
--
-- These tables are the server's truth for money and stock. Devices see the same facts as rows of the feed
-- (`journal_entries`, `stock_movements`, `stock_levels`, `sales`, ...), written in the same transaction.

CREATE TABLE journal_entries (
    scope_id          text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    kind              text NOT NULL,           -- sale, sale_void, customer_payment, expense, ...
    source_collection text NOT NULL,           -- the row the entry belongs to
    source_key        text NOT NULL,
    op_id             uuid,                    -- the operation that posted it
    reverses          uuid,                    -- for a reversing entry: the entry it reverses
    occurred_at       timestamptz NOT NULL,    -- when it happened on the device
    posted_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_id, id),
    FOREIGN KEY (scope_id, reverses) REFERENCES journal_entries (scope_id, id)
);
CREATE INDEX journal_entries_source ON journal_entries (scope_id, source_collection, source_key);
CREATE INDEX journal_entries_occurred ON journal_entries (scope_id, occurred_at);
-- An entry is reversed at most once.
CREATE UNIQUE INDEX journal_entries_reversed_once ON journal_entries (scope_id, reverses) WHERE reverses IS NOT NULL;

CREATE TABLE journal_lines (
    scope_id  text    NOT NULL,
    entry_id  uuid    NOT NULL,
    line_no   integer NOT NULL CHECK (line_no > 0),
    account   text    NOT NULL,
    debit     numeric(20, 2) NOT NULL DEFAULT 0 CHECK (debit >= 0),
    credit    numeric(20, 2) NOT NULL DEFAULT 0 CHECK (credit >= 0),
    PRIMARY KEY (scope_id, entry_id, line_no),
    FOREIGN KEY (scope_id, entry_id) REFERENCES journal_entries (scope_id, id) ON DELETE CASCADE,
    CHECK ((debit > 0) <> (credit > 0))        -- exactly one side per line
);
CREATE INDEX journal_lines_account ON journal_lines (scope_id, account);

-- The database itself refuses an unbalanced entry: at commit, every entry touched in the transaction must have
-- at least two lines and equal debits and credits. Deferred, so the lines of one entry may be inserted one by one.
CREATE FUNCTION journal_check_balance(s text, e uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    lines bigint;
    debits numeric;
    credits numeric;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM journal_entries WHERE scope_id = s AND id = e) THEN
        RETURN;  -- the entry itself is gone (cascade); nothing left to balance
    END IF;
    SELECT count(*), COALESCE(sum(debit), 0), COALESCE(sum(credit), 0) INTO lines, debits, credits
      FROM journal_lines WHERE scope_id = s AND entry_id = e;
    IF lines < 2 OR debits <> credits THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % lines, debits %, credits %', e, lines, debits, credits
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
END $$;

CREATE FUNCTION journal_entry_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM journal_check_balance(NEW.scope_id, NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION journal_lines_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM journal_check_balance(OLD.scope_id, OLD.entry_id);
    ELSE
        PERFORM journal_check_balance(NEW.scope_id, NEW.entry_id);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT OR UPDATE ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_must_balance();
CREATE CONSTRAINT TRIGGER journal_lines_balanced AFTER INSERT OR UPDATE OR DELETE ON journal_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_lines_must_balance();

-- Every change of stock, signed. A product's stock level is the sum of its movements.
CREATE TABLE stock_movements (
    scope_id          text NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    product_id        text NOT NULL,
    quantity          numeric(20, 3) NOT NULL CHECK (quantity <> 0),
    reason            text NOT NULL,           -- opening, sale, sale_void, adjustment, production, ...
    source_collection text NOT NULL,
    source_key        text NOT NULL,
    op_id             uuid,
    at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_id, id)
);
CREATE INDEX stock_movements_product ON stock_movements (scope_id, product_id);

-- Flags raised by commands join the recorded conflict kinds.
ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check CHECK (kind IN
    ('field_conflict', 'rejected_operation', 'oversold_stock', 'stale_price', 'unknown_product'));
