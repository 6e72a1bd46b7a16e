-- Stock on hand per product, kept equal to the sum of its movements by the database itself.
--
-- Why: a command read a product's stock as sum(quantity) over all of its movements, under the scope's lock. A
-- shop sells the same products for years, so that read grew with the history (thousands of index and heap
-- visits per sale of a popular product). This table holds the running sum; reading it is one index lookup.
--
-- Invariant: for every (scope, product), stock_on_hand.quantity = sum of stock_movements.quantity (a missing row
-- is zero). Statement-level triggers on stock_movements keep it, whatever code writes movements, in the same
-- transaction; they take the balance row's lock, so concurrent writers of one product serialise there (replay
-- already serialises them on the scope's lock).
--
-- Expand only: the previous release keeps summing movements and stays correct; its inserts run the triggers.

CREATE TABLE stock_on_hand (
    scope_id   text    NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    product_id text    NOT NULL,
    quantity   numeric NOT NULL,  -- unconstrained, like sum(): a long history must not overflow it
    PRIMARY KEY (scope_id, product_id)
);

CREATE FUNCTION stock_on_hand_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stock_on_hand (scope_id, product_id, quantity)
    SELECT scope_id, product_id, sum(quantity) FROM added GROUP BY scope_id, product_id
    ON CONFLICT (scope_id, product_id) DO UPDATE SET quantity = stock_on_hand.quantity + EXCLUDED.quantity;
    RETURN NULL;
END $$;

-- Only an UPDATE of existing balances: when a scope is deleted, its balances may already be gone (the cascade
-- deletes both tables in no given order), and nothing is left to keep.
CREATE FUNCTION stock_on_hand_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE stock_on_hand s SET quantity = s.quantity - r.quantity
      FROM (SELECT scope_id, product_id, sum(quantity) AS quantity FROM removed GROUP BY scope_id, product_id) r
     WHERE s.scope_id = r.scope_id AND s.product_id = r.product_id;
    RETURN NULL;
END $$;

-- Movements are only ever inserted; the UPDATE and DELETE triggers keep the invariant if that ever changes.
CREATE TRIGGER stock_on_hand_insert AFTER INSERT ON stock_movements
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION stock_on_hand_add();
CREATE TRIGGER stock_on_hand_delete AFTER DELETE ON stock_movements
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION stock_on_hand_remove();
CREATE TRIGGER stock_on_hand_update_remove AFTER UPDATE ON stock_movements
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION stock_on_hand_remove();
CREATE TRIGGER stock_on_hand_update_add AFTER UPDATE ON stock_movements
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION stock_on_hand_add();

-- Existing movements. CREATE TRIGGER above locked stock_movements against writes until this transaction
-- commits, so no movement is missed or counted twice.
INSERT INTO stock_on_hand (scope_id, product_id, quantity)
SELECT scope_id, product_id, sum(quantity) FROM stock_movements GROUP BY scope_id, product_id;

-- The balance of journal entries, checked at commit as before (migration 0004's deferred constraint triggers,
-- unchanged), in one query per trigger call instead of three: each call ran `PERFORM journal_check_balance(...)`
-- (a query of its own), and that function two more. A sale fires three calls at commit (its entry and two
-- lines). Same rule, same error; an entry that is gone (cascade) has nothing left to balance.
CREATE OR REPLACE FUNCTION journal_entry_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    present boolean;
    lines bigint;
    debits numeric;
    credits numeric;
BEGIN
    SELECT EXISTS (SELECT 1 FROM journal_entries WHERE scope_id = NEW.scope_id AND id = NEW.id),
           count(*), COALESCE(sum(debit), 0), COALESCE(sum(credit), 0)
      INTO present, lines, debits, credits
      FROM journal_lines WHERE scope_id = NEW.scope_id AND entry_id = NEW.id;
    IF present AND (lines < 2 OR debits <> credits) THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % lines, debits %, credits %', NEW.id, lines, debits, credits
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION journal_lines_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s text := CASE WHEN TG_OP = 'DELETE' THEN OLD.scope_id ELSE NEW.scope_id END;
    e uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.entry_id ELSE NEW.entry_id END;
    present boolean;
    lines bigint;
    debits numeric;
    credits numeric;
BEGIN
    SELECT EXISTS (SELECT 1 FROM journal_entries WHERE scope_id = s AND id = e),
           count(*), COALESCE(sum(debit), 0), COALESCE(sum(credit), 0)
      INTO present, lines, debits, credits
      FROM journal_lines WHERE scope_id = s AND entry_id = e;
    IF present AND (lines < 2 OR debits <> credits) THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: % lines, debits %, credits %', e, lines, debits, credits
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END $$;
