-- The floor under a sale (benches/pgbench/sale.sql): copies of the tables a sale writes, made in the bench
-- database after the data set is loaded, with the same columns, defaults, CHECKs and indexes (LIKE ... INCLUDING
-- ALL) and the same rows, but without dukasync's triggers (stock on hand, account balances, the deferred balance
-- and posted-with-entry checks) and without foreign keys: the script writes what those triggers would, as plain
-- statements. Run by the load harness with psql; dropped and made again on every run.
DROP TABLE IF EXISTS floor_scopes, floor_changes, floor_records, floor_collection_state, floor_journal_entries,
    floor_journal_lines, floor_stock_movements, floor_stock_on_hand, floor_account_balances, floor_replay_clients,
    floor_replay_results;

CREATE TABLE floor_scopes (LIKE scopes INCLUDING ALL);
INSERT INTO floor_scopes SELECT * FROM scopes;
CREATE TABLE floor_changes (LIKE changes INCLUDING ALL);
INSERT INTO floor_changes SELECT * FROM changes;
CREATE TABLE floor_records (LIKE records INCLUDING ALL);
INSERT INTO floor_records SELECT * FROM records;
CREATE TABLE floor_collection_state (LIKE collection_state INCLUDING ALL);
INSERT INTO floor_collection_state SELECT * FROM collection_state;
CREATE TABLE floor_journal_entries (LIKE journal_entries INCLUDING ALL);
INSERT INTO floor_journal_entries SELECT * FROM journal_entries;
CREATE TABLE floor_journal_lines (LIKE journal_lines INCLUDING ALL);
INSERT INTO floor_journal_lines SELECT * FROM journal_lines;
CREATE TABLE floor_stock_movements (LIKE stock_movements INCLUDING ALL);
INSERT INTO floor_stock_movements SELECT * FROM stock_movements;
CREATE TABLE floor_stock_on_hand (LIKE stock_on_hand INCLUDING ALL);
INSERT INTO floor_stock_on_hand SELECT * FROM stock_on_hand;
CREATE TABLE floor_account_balances (LIKE account_balances INCLUDING ALL);
INSERT INTO floor_account_balances SELECT * FROM account_balances;
CREATE TABLE floor_replay_clients (LIKE replay_clients INCLUDING ALL);
INSERT INTO floor_replay_clients SELECT * FROM replay_clients;
CREATE TABLE floor_replay_results (LIKE replay_results INCLUDING ALL);
INSERT INTO floor_replay_results SELECT * FROM replay_results;

-- What the script sells: 200 products a scope, each with a current stock level row and stock on hand.
INSERT INTO floor_records (scope_id, collection, key, data, version, row_hash)
SELECT s.id, 'stock_levels', 'floor-item-' || n,
       jsonb_build_object('id', 'floor-item-' || n, 'product_id', 'floor-item-' || n, 'quantity', '10000000'), 1, n
FROM floor_scopes s, generate_series(0, 199) n;
INSERT INTO floor_stock_on_hand (scope_id, product_id, quantity)
SELECT s.id, 'floor-item-' || n, 10000000 FROM floor_scopes s, generate_series(0, 199) n;
INSERT INTO floor_account_balances (scope_id, account, balance)
SELECT s.id, a, 0 FROM floor_scopes s, unnest(ARRAY['1000', '4000']) a
ON CONFLICT (scope_id, account) DO NOTHING;
-- One replay client (outbox) per pgbench client, in the scope the script gives it (client_id % 3).
INSERT INTO floor_replay_clients (scope_id, client_id, device_id)
SELECT (ARRAY['laundry', 'retail', 'water'])[c % 3 + 1], md5('floor-client-' || c)::uuid, md5('floor-device-' || c)::uuid
FROM generate_series(0, 255) c;
ANALYZE floor_scopes, floor_changes, floor_records, floor_collection_state, floor_journal_entries,
    floor_journal_lines, floor_stock_movements, floor_stock_on_hand, floor_account_balances, floor_replay_clients,
    floor_replay_results;
