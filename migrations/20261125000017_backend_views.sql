-- Read views for the ERP's backend (docs/backend-read.md): the schema `dukasync_read`, contract v1.
--
-- Why: Django reads sales, payments, expenses, the journal, stock and conflicts. Reading `records` (one JSON
-- document per row) or the ledger tables directly ties the ERP to internals that change between releases. These
-- views are the stable surface instead: typed columns (money and quantities `numeric`, times `timestamptz`,
-- scope as `text`), documented, held to docs/backend-read.md by tests/db/read_views.rs.
--
-- Version rule (v1): columns may be added (at the end of a view), never removed, renamed or retyped. A breaking
-- change is a new schema `dukasync_read_v2` beside this one for at least one release.
--
-- The views read only rows the server itself writes (server collections, filled by named commands, and the
-- ledger tables), so every cast below holds for every row. Expand only: the release before ignores this schema.
--
-- PostgreSQL refuses to drop or retype a column these views read, so a later migration that changes a table
-- below must recreate the views with the same columns. The JSON fields read here are the rows written by
-- src/replay/commands/ (record_sale, receive_payment, record_expense, void_sale): renaming one there needs the
-- view kept in step (tests/db/read_views.rs reads a sale back through the views).

CREATE SCHEMA dukasync_read;

-- A sale row per `record_sale`; a voided sale keeps its row with status `voided`.
CREATE VIEW dukasync_read.sales AS
SELECT r.scope_id                               AS scope,
       r.key                                    AS id,
       r.data->>'status'                        AS status,
       (r.data->>'sold_at')::timestamptz        AS sold_at,
       r.data->>'customer_id'                   AS customer_id,
       (r.data->>'total')::numeric              AS total,
       (r.data->>'journal_entry_id')::uuid      AS journal_entry_id,
       (r.data->>'device_id')::uuid             AS device_id,
       (r.data->>'op_id')::uuid                 AS op_id,
       (r.data->>'voided_at')::timestamptz      AS voided_at,
       r.data->>'void_reason'                   AS void_reason,
       r.version                                AS version
  FROM records r
 WHERE r.collection = 'sales';

-- One row per line of a sale, numbered from 1 in the order the device sent them.
CREATE VIEW dukasync_read.sale_lines AS
SELECT r.scope_id                               AS scope,
       r.key                                    AS sale_id,
       l.n::integer                             AS line_no,
       l.line->>'product_id'                    AS product_id,
       (l.line->>'quantity')::numeric           AS quantity,
       (l.line->>'unit_price')::numeric         AS unit_price,
       (l.line->>'discount')::numeric           AS discount,
       (l.line->>'amount')::numeric             AS amount
  FROM records r
 CROSS JOIN LATERAL jsonb_array_elements(r.data->'lines') WITH ORDINALITY AS l (line, n)
 WHERE r.collection = 'sales';

-- Customer payments (`receive_payment`). Payments taken at a sale are in the sale's journal entry.
CREATE VIEW dukasync_read.payments AS
SELECT r.scope_id                               AS scope,
       r.key                                    AS id,
       r.data->>'customer_id'                   AS customer_id,
       r.data->>'method'                        AS method,
       (r.data->>'amount')::numeric             AS amount,
       r.data->>'reference'                     AS reference,
       (r.data->>'received_at')::timestamptz    AS received_at,
       (r.data->>'journal_entry_id')::uuid      AS journal_entry_id,
       r.version                                AS version
  FROM records r
 WHERE r.collection = 'payments';

CREATE VIEW dukasync_read.expenses AS
SELECT r.scope_id                               AS scope,
       r.key                                    AS id,
       r.data->>'description'                   AS description,
       r.data->>'account'                       AS account,
       r.data->>'method'                        AS method,
       (r.data->>'amount')::numeric             AS amount,
       r.data->>'reference'                     AS reference,
       (r.data->>'spent_at')::timestamptz       AS spent_at,
       (r.data->>'journal_entry_id')::uuid      AS journal_entry_id,
       r.version                                AS version
  FROM records r
 WHERE r.collection = 'expenses';

-- Every journal line with its entry: the general ledger, one row per debit or credit.
CREATE VIEW dukasync_read.journal_lines AS
SELECT l.scope_id                               AS scope,
       l.entry_id                               AS entry_id,
       l.line_no                                AS line_no,
       l.account                                AS account,
       l.debit::numeric                         AS debit,
       l.credit::numeric                        AS credit,
       e.kind                                   AS kind,
       e.source_collection                      AS source_collection,
       e.source_key                             AS source_key,
       e.reverses                               AS reverses,
       e.occurred_at                            AS occurred_at,
       e.posted_at                              AS posted_at
  FROM journal_lines l
  JOIN journal_entries e ON e.scope_id = l.scope_id AND e.id = l.entry_id;

-- Stock on hand per product: the sum of its movements (migration 0007 keeps it).
CREATE VIEW dukasync_read.stock_levels AS
SELECT s.scope_id                               AS scope,
       s.product_id                             AS product_id,
       s.quantity                               AS quantity
  FROM stock_on_hand s;

-- What replay could not decide alone (protocol §11): review in the ERP, resolve through the admin API.
CREATE VIEW dukasync_read.conflicts AS
SELECT c.scope_id                               AS scope,
       c.id                                     AS id,
       c.kind                                   AS kind,
       c.status                                 AS status,
       c.collection                             AS collection,
       c.key                                    AS key,
       c.fields                                 AS fields,
       c.detail                                 AS detail,
       c.device_id                              AS device_id,
       c.user_id                                AS user_id,
       c.created_at                             AS created_at,
       c.resolved_at                            AS resolved_at,
       c.resolved_by                            AS resolved_by
  FROM conflicts c;
