-- pgbench custom script: the rows one single-line cash sale writes, as plain statements, no dukasync logic
-- (benches/pgbench/sale-setup.sql makes the floor_* tables). The same rows as record_sale in a push of one
-- operation (src/replay/commands/record_sale.rs, src/store/batch.rs): the scope's version counter (+4), four
-- change-log rows (sale, journal entry, stock movement, stock level), the four current rows, the four
-- collections' checksum state, the journal entry and its two lines, the stock movement, the stock on hand,
-- the two account balances, the operation's stored result and the outbox's sequence. Sent as one pipeline (one
-- round trip, as dukasync's one write statement is), one transaction and one commit per sale (dukasync may
-- commit several pushes at once). Not included: the reads a sale needs (product, payment method, duplicate and
-- replay checks), pg_notify, the deferred balance checks, conflicts.
-- Run: pgbench -n -M prepared -f benches/pgbench/sale.sql -c 16 -j 2 -T 8 <bench database URL>
-- The harness also runs it with several sales a transaction, as dukasync's group commit has them: it repeats
-- the `\set sale_*` lines and the statements between BEGIN and END once per sale, renaming `:sale_` to
-- `:sale<k>_` (benches/load/references.rs, `grouped_script`); keep that shape.
\set s :client_id % 3 + 1
\set sale_n random(0, 199)
\set sale_r random(1, 9000000000000000000)
\set sale_cents random(2000, 200000)
\startpipeline
BEGIN;
UPDATE floor_scopes SET head_version = head_version + 4 WHERE id = (ARRAY['laundry', 'retail', 'water'])[:s::int];
UPDATE floor_stock_on_hand SET quantity = quantity - 1
    WHERE scope_id = (ARRAY['laundry', 'retail', 'water'])[:s::int] AND product_id = 'floor-item-' || :sale_n::text;
-- The log rows, and the current rows from them (RETURNING: the JSON is built once, as dukasync's statement does).
WITH log AS (
  INSERT INTO floor_changes (scope_id, version, collection, key, op, data, tag, checksum_after, count_after)
    SELECT s.id, s.head_version - 3 + w.i, w.c, w.k, 'upsert', w.d, (random() * 9e18)::bigint, :sale_n::bigint, s.head_version
    FROM floor_scopes s
    JOIN floor_stock_on_hand q ON q.scope_id = s.id AND q.product_id = 'floor-item-' || :sale_n::text
    CROSS JOIN LATERAL (VALUES
        (0, 'sales', 'floor-sale-' || :sale_r::text, jsonb_build_object('id', 'floor-sale-' || :sale_r::text, 'status', 'posted',
            'sold_at', now(), 'lines', jsonb_build_array(jsonb_build_object('product_id', 'floor-item-' || :sale_n::text,
            'quantity', '1.000', 'unit_price', (:sale_cents::numeric / 100)::text, 'discount', '0.00',
            'amount', (:sale_cents::numeric / 100)::text)),
            'payments', jsonb_build_array(jsonb_build_object('method', 'cash', 'amount', (:sale_cents::numeric / 100)::text)),
            'total', (:sale_cents::numeric / 100)::text, 'journal_entry_id', md5('e' || :sale_r::text)::uuid,
            'device_id', md5('floor-device-' || :client_id::text)::uuid, 'op_id', md5('o' || :sale_r::text)::uuid)),
        (1, 'journal_entries', md5('e' || :sale_r::text)::uuid::text, jsonb_build_object('id', md5('e' || :sale_r::text)::uuid,
            'kind', 'sale', 'source_collection', 'sales', 'source_key', 'floor-sale-' || :sale_r::text, 'occurred_at', now(),
            'reverses', null, 'lines', jsonb_build_array(
                jsonb_build_object('account', '1000', 'debit', (:sale_cents::numeric / 100)::text, 'credit', '0.00'),
                jsonb_build_object('account', '4000', 'debit', '0.00', 'credit', (:sale_cents::numeric / 100)::text)))),
        (2, 'stock_movements', md5('m' || :sale_r::text)::uuid::text, jsonb_build_object('id', md5('m' || :sale_r::text)::uuid,
            'product_id', 'floor-item-' || :sale_n::text, 'quantity', '-1.000', 'reason', 'sale', 'source_collection', 'sales',
            'source_key', 'floor-sale-' || :sale_r::text)),
        (3, 'stock_levels', 'floor-item-' || :sale_n::text, jsonb_build_object('id', 'floor-item-' || :sale_n::text,
            'product_id', 'floor-item-' || :sale_n::text, 'quantity', q.quantity::text))
    ) AS w(i, c, k, d)
    WHERE s.id = (ARRAY['laundry', 'retail', 'water'])[:s::int]
    RETURNING scope_id, collection, key, data, version
)
INSERT INTO floor_records (scope_id, collection, key, data, version, row_hash)
    SELECT scope_id, collection, key, data, version, :sale_n::bigint FROM log
    ON CONFLICT (scope_id, collection, key) DO UPDATE SET data = EXCLUDED.data, version = EXCLUDED.version,
        row_hash = EXCLUDED.row_hash;
INSERT INTO floor_collection_state (scope_id, collection, checksum, row_count)
    SELECT (ARRAY['laundry', 'retail', 'water'])[:s::int], c, :sale_n::bigint, :sale_r::bigint % 1000000
    FROM unnest(ARRAY['sales', 'journal_entries', 'stock_movements', 'stock_levels']) c
    ON CONFLICT (scope_id, collection) DO UPDATE SET checksum = EXCLUDED.checksum, row_count = EXCLUDED.row_count;
INSERT INTO floor_journal_entries (scope_id, id, kind, source_collection, source_key, op_id, reverses, occurred_at)
    VALUES ((ARRAY['laundry', 'retail', 'water'])[:s::int], md5('e' || :sale_r::text)::uuid, 'sale', 'sales',
            'floor-sale-' || :sale_r::text, md5('o' || :sale_r::text)::uuid, NULL, now());
INSERT INTO floor_journal_lines (scope_id, entry_id, line_no, account, debit, credit) VALUES
    ((ARRAY['laundry', 'retail', 'water'])[:s::int], md5('e' || :sale_r::text)::uuid, 1, '1000', :sale_cents::numeric / 100, 0),
    ((ARRAY['laundry', 'retail', 'water'])[:s::int], md5('e' || :sale_r::text)::uuid, 2, '4000', 0, :sale_cents::numeric / 100);
INSERT INTO floor_stock_movements (scope_id, id, product_id, quantity, reason, source_collection, source_key, op_id)
    VALUES ((ARRAY['laundry', 'retail', 'water'])[:s::int], md5('m' || :sale_r::text)::uuid, 'floor-item-' || :sale_n::text, -1,
            'sale', 'sales', 'floor-sale-' || :sale_r::text, md5('o' || :sale_r::text)::uuid);
UPDATE floor_account_balances
    SET balance = balance + CASE account WHEN '1000' THEN :sale_cents::numeric / 100 ELSE -:sale_cents::numeric / 100 END
    WHERE scope_id = (ARRAY['laundry', 'retail', 'water'])[:s::int] AND account IN ('1000', '4000');
UPDATE floor_replay_clients SET last_seq = last_seq + 1, updated_at = now()
    WHERE scope_id = (ARRAY['laundry', 'retail', 'water'])[:s::int]
      AND client_id = md5('floor-client-' || :client_id::text)::uuid;
INSERT INTO floor_replay_results (scope_id, client_id, seq, op_id, fingerprint, result)
    SELECT c.scope_id, c.client_id, c.last_seq, md5('o' || :sale_r::text)::uuid, sha256(convert_to(:sale_r::text, 'UTF8')),
           jsonb_build_object('seq', c.last_seq, 'status', 'applied',
                              'versions', jsonb_build_array(s.head_version - 3, s.head_version - 2, s.head_version - 1, s.head_version))
    FROM floor_replay_clients c JOIN floor_scopes s ON s.id = c.scope_id
    WHERE c.scope_id = (ARRAY['laundry', 'retail', 'water'])[:s::int]
      AND c.client_id = md5('floor-client-' || :client_id::text)::uuid;
END;
\endpipeline
