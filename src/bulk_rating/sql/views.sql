-- Analyst views. Day boundaries are UTC whatever the client's TimeZone setting: `day` comes from the
-- instant itself (its epoch microseconds as a UTC wall time), never from a cast or a format that
-- reads the TimeZone, and a day ends 24 hours after it starts (INTERVAL 1 DAY added to a
-- TIMESTAMPTZ follows the client's calendar: 23 or 25 hours across a daylight saving change).

-- Every breakdown window and daily rollup: those in the store, and those a run kept in Parquet
-- files outside it (_breakdown_files). The store defines these two again, naming the files, when
-- a run adds some (store/buckets.py).
CREATE OR REPLACE VIEW breakdown_windows AS SELECT * FROM _priced_windows;
CREATE OR REPLACE VIEW breakdown_days AS SELECT * FROM _priced_days;

CREATE OR REPLACE VIEW invoice_breakdowns AS
SELECT i.customer_id, i.contract_id, l.invoice_id, l.line_item_id, l.product_id, l.granularity,
       w.window_start,
       w.window_start + CASE l.granularity WHEN 'HOUR' THEN INTERVAL 1 HOUR ELSE INTERVAL 24 HOUR END AS window_end,
       w.quantity, l.unit_price, w.quantity * l.unit_price AS amount,
       make_timestamp(epoch_us(w.window_start))::DATE AS day, l.tier_level
FROM breakdown_windows w
JOIN invoice_line_items l USING (item_key)
JOIN invoices i ON i.invoice_id = l.invoice_id
WHERE l.granularity IN ('HOUR', 'DAY');
COMMENT ON VIEW invoice_breakdowns IS 'One row per hour or day window and line item: quantity and its exact amount, the window''s UTC day and the line''s tier. A line''s rows sum to its total.';

CREATE OR REPLACE VIEW breakdowns_hourly AS
SELECT * FROM invoice_breakdowns WHERE granularity = 'HOUR';
COMMENT ON VIEW breakdowns_hourly IS 'Hourly windows of lines imported with HOUR subtotals.';

CREATE OR REPLACE VIEW breakdowns_daily AS
SELECT i.customer_id, i.contract_id, l.invoice_id, l.line_item_id, l.product_id,
       d.window_start, d.window_start + INTERVAL 24 HOUR AS window_end,
       d.quantity, l.unit_price, d.quantity * l.unit_price AS amount, d.windows, d.day, l.tier_level
FROM breakdown_days d
JOIN invoice_line_items l USING (item_key)
JOIN invoices i ON i.invoice_id = l.invoice_id
WHERE l.granularity IN ('HOUR', 'DAY');
COMMENT ON VIEW breakdowns_daily IS 'UTC days: DAY windows as they are, HOUR windows rolled up to their day (read from the daily rollups kept as windows are written, _priced_days). amount is the day''s quantity times the line''s price, the sum of its windows'' amounts exactly.';

CREATE OR REPLACE VIEW segment_balances AS
SELECT s.customer_id, s.contract_id, s.commit_or_credit_id, s.kind, s.name, s.segment_id, s.credit_type_id,
       s.starting_at, s.ending_before, s.amount,
       s.amount + coalesce(d.deducted, 0) AS remaining
FROM commit_segments s
LEFT JOIN (
    SELECT segment_id, sum(amount) AS deducted FROM balance_ledger_entries
    WHERE type LIKE '%DEDUCTION' GROUP BY segment_id
) d USING (segment_id);
COMMENT ON VIEW segment_balances IS 'Each commit or credit segment with what remains of it after every deduction.';
