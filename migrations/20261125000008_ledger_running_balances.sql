-- Reads that grew with the ledger's history, made constant.
--
-- 1. Account balances. The dashboard summary summed every journal line of an account (cash, M-Pesa, card,
--    receivables) on each request: a shop's lines grow by a few per sale, for years. `account_balances` holds the
--    running sum of debits minus credits per (scope, account), kept by statement-level triggers on journal_lines in
--    the writing transaction, exactly as `stock_on_hand` (migration 0007) is kept for stock.
--
--    Invariant: for every (scope, account), account_balances.balance = sum(debit - credit) of its journal lines (a
--    missing row is zero). The triggers take the balance row's lock; every writer of journal lines also writes the
--    scope's feed and so already holds the scope's version lock; even without it, an insert upserts its
--    balances in account order, so two inserting writers cannot deadlock on them.
--
--    `journal_lines_account` served only that sum; it is dropped. The previous release still sums lines, now
--    without the index (the scope's lines through the primary key): correct, slower, until it is restarted.
--
-- 2. Movements by source. Voiding a sale reads the stock movements the sale recorded (`ledger::movements_for`), and
--    no index led there: it scanned the scope's movements. `stock_movements_product` is no longer read since
--    migration 0007 (stock on hand is a running sum); it is replaced by an index on the source. Same number of index
--    entries per movement.

CREATE TABLE account_balances (
    scope_id text    NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    account  text    NOT NULL,
    balance  numeric NOT NULL,  -- debits minus credits; unconstrained, like sum(): a long history must not overflow
    PRIMARY KEY (scope_id, account)
);

CREATE FUNCTION account_balances_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_balances (scope_id, account, balance)
    SELECT scope_id, account, sum(debit - credit) FROM added GROUP BY scope_id, account ORDER BY scope_id, account
    ON CONFLICT (scope_id, account) DO UPDATE SET balance = account_balances.balance + EXCLUDED.balance;
    RETURN NULL;
END $$;

-- Only an UPDATE of existing balances: when a scope is deleted, its balances may already be gone (the cascade
-- deletes both tables in no given order), and nothing is left to keep.
CREATE FUNCTION account_balances_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_balances b SET balance = b.balance - r.balance
      FROM (SELECT scope_id, account, sum(debit - credit) AS balance FROM removed
             GROUP BY scope_id, account ORDER BY scope_id, account) r
     WHERE b.scope_id = r.scope_id AND b.account = r.account;
    RETURN NULL;
END $$;

-- Lines are only ever inserted (and deleted with their entry's scope); the other triggers keep the invariant if
-- that ever changes.
CREATE TRIGGER account_balances_insert AFTER INSERT ON journal_lines
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION account_balances_add();
CREATE TRIGGER account_balances_delete AFTER DELETE ON journal_lines
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION account_balances_remove();
CREATE TRIGGER account_balances_update_remove AFTER UPDATE ON journal_lines
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION account_balances_remove();
CREATE TRIGGER account_balances_update_add AFTER UPDATE ON journal_lines
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION account_balances_add();

-- Existing lines. CREATE TRIGGER above locked journal_lines against writes until this transaction commits, so no
-- line is missed or counted twice.
INSERT INTO account_balances (scope_id, account, balance)
SELECT scope_id, account, sum(debit - credit) FROM journal_lines GROUP BY scope_id, account;

DROP INDEX journal_lines_account;

CREATE INDEX stock_movements_source ON stock_movements (scope_id, source_collection, source_key);
DROP INDEX stock_movements_product;
