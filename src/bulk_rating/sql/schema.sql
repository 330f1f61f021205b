-- bulk_rating store: one DuckDB file. Created before any run's transaction (no DDL inside a run).
-- Money columns are exact DECIMALs in the credit type's smallest unit (USD: cents), never rounded.
-- Timestamps are TIMESTAMPTZ in UTC; every period is half-open [start, end).

CREATE OR REPLACE MACRO stable_id(key) AS
    -- A deterministic UUID-shaped id from a text key (same input, same id; re-runs refer to the same rows):
    -- the key's md5 digest, written 8-4-4-4-12 in lower case (one digest, read as a UUID).
    md5(key)::UUID::VARCHAR;

CREATE OR REPLACE MACRO invoice_id(contract_id, credit_type_id, inclusive_start, exclusive_end) AS
    -- One invoice per contract, credit type and period (periods of one contract never overlap).
    stable_id(contract_id || '|' || credit_type_id || '|' || strftime(inclusive_start, '%Y-%m-%dT%H:%M:%S.%fZ')
              || '|' || strftime(exclusive_end, '%Y-%m-%dT%H:%M:%S.%fZ'));

CREATE OR REPLACE MACRO item_key(run_id, line_key, rate_key, tier_key) AS
    -- A breakdown row's line item in one 64-bit key (one column to store per window instead of four):
    -- a hash of the run, line, rate piece and tier below 2^63; a window kept as read, with no tier
    -- yet (tier_key NULL), gets the same hash at 2^63 and above, so a run finds its own by range.
    (hash(run_id::BIGINT, line_key::UBIGINT, rate_key::BIGINT, tier_key::INTEGER) >> 1)
      | ((tier_key IS NULL)::UBIGINT << 63);

CREATE TABLE IF NOT EXISTS _runs (
    run_id BIGINT, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, inputs VARCHAR[],
    input_hash VARCHAR, preview BOOLEAN, as_of TIMESTAMPTZ, status VARCHAR,
    invoices BIGINT, line_items BIGINT, windows BIGINT, contracts BIGINT, drafts BIGINT
);
ALTER TABLE _runs ADD COLUMN IF NOT EXISTS rows_read BIGINT;
ALTER TABLE _runs ADD COLUMN IF NOT EXISTS duplicates_collapsed BIGINT;
ALTER TABLE _runs ADD COLUMN IF NOT EXISTS duckdb_version VARCHAR;
ALTER TABLE _runs ADD COLUMN IF NOT EXISTS bulk_rating_version VARCHAR;
ALTER TABLE _runs ADD COLUMN IF NOT EXISTS files_fingerprint VARCHAR;
COMMENT ON TABLE _runs IS 'One row per import run that wrote something: when, what input (and its content hash), and counts.';
COMMENT ON COLUMN _runs.duckdb_version IS 'Version of the DuckDB library that wrote the run (a client of that version or newer reads the file); null for runs stored before schema version 13.';
COMMENT ON COLUMN _runs.bulk_rating_version IS 'Version of bulk-rating that wrote the run; null for runs stored before schema version 13.';
COMMENT ON COLUMN _runs.files_fingerprint IS 'sha256 of a usage table run''s files (each file''s bytes, whatever its name, with the catalog and contracts): the same files again are already imported before any row is read. Null for JSON runs, runs whose files changed while they were read, and runs stored before schema version 16 (known by input_hash alone).';

CREATE TABLE IF NOT EXISTS credit_types (credit_type_id VARCHAR, name VARCHAR, body VARCHAR, run_id BIGINT);
COMMENT ON TABLE credit_types IS 'Pricing units. USD (cents) is built in; custom ones come from catalog.json.';

CREATE TABLE IF NOT EXISTS customers (customer_id VARCHAR, name VARCHAR, custom_fields JSON, body VARCHAR, run_id BIGINT);
COMMENT ON TABLE customers IS 'Customers from catalog.json (body: the object as given, canonical JSON).';

CREATE TABLE IF NOT EXISTS products (
    product_id VARCHAR, name VARCHAR, type VARCHAR, tags VARCHAR[], pricing_group_key VARCHAR[],
    presentation_group_key VARCHAR[], body VARCHAR, run_id BIGINT
);
COMMENT ON TABLE products IS 'Products from catalog.json; name is what invoices show.';

CREATE TABLE IF NOT EXISTS rate_cards (
    rate_card_id VARCHAR, name VARCHAR, description VARCHAR, fiat_credit_type_id VARCHAR, body VARCHAR, run_id BIGINT
);
COMMENT ON TABLE rate_cards IS 'Rate cards from catalog.json; their rates are in rates.';

CREATE TABLE IF NOT EXISTS rates (
    rate_card_id VARCHAR, rate_index INTEGER, product_id VARCHAR, starting_at TIMESTAMPTZ, ending_before TIMESTAMPTZ,
    entitled BOOLEAN, rate_type VARCHAR, price DECIMAL(38,10), credit_type_id VARCHAR,
    pricing_group_values VARCHAR, run_id BIGINT
);
COMMENT ON TABLE rates IS 'Effective-dated rates [starting_at, ending_before) of each rate card; rate_index is the position in the card.';
COMMENT ON COLUMN rates.price IS 'FLAT price in the credit type''s smallest unit; null for TIERED (see _rate_tiers).';
COMMENT ON COLUMN rates.pricing_group_values IS 'Canonical JSON object (sorted keys) the usage must match exactly, or null.';

CREATE TABLE IF NOT EXISTS contracts (
    contract_id VARCHAR, customer_id VARCHAR, rate_card_id VARCHAR, starting_at TIMESTAMPTZ, ending_before TIMESTAMPTZ,
    frequency VARCHAR, day VARCHAR, billing_anchor_date TIMESTAMPTZ, invoice_generation_starting_at TIMESTAMPTZ,
    billing_provider VARCHAR, delivery_method VARCHAR, body VARCHAR, run_id BIGINT
);
CREATE TABLE IF NOT EXISTS contract_rates (
    rate_key BIGINT, contract_id VARCHAR, rate_index INTEGER, list_rate_index INTEGER, product_id VARCHAR,
    pricing_group_values VARCHAR, starting_at TIMESTAMPTZ, ending_before TIMESTAMPTZ, entitled BOOLEAN,
    rate_type VARCHAR, credit_type_id VARCHAR, continues BOOLEAN, run_id BIGINT
);
COMMENT ON TABLE contract_rates IS 'Each contract''s effective rate schedule: its rate card''s rates with its overrides applied, cut where an override starts or ends. Prices per tier in _contract_rate_tiers.';
COMMENT ON COLUMN contract_rates.rate_key IS 'Unique in the store: how priced windows and line items name the rate piece they used.';
COMMENT ON COLUMN contract_rates.continues IS 'Another piece of the same product and pricing group starts where this one ends.';
COMMENT ON COLUMN contract_rates.list_rate_index IS 'The rate of the rate card (rates.rate_index) this piece comes from.';

CREATE TABLE IF NOT EXISTS _contract_rate_tiers (
    rate_key BIGINT, tier_key INTEGER, tier_start DECIMAL(38,9), tier_end DECIMAL(38,9),
    price DECIMAL(38,14), run_id BIGINT
);
COMMENT ON TABLE _contract_rate_tiers IS 'Effective prices as graduated tiers [tier_start, tier_end) of period quantity; a FLAT rate is one open tier with tier_key 0. Scale 14: a 10-decimal price times a 4-decimal multiplier.';

COMMENT ON TABLE contracts IS 'Contracts (contracts/create bodies). Invoices before invoice_generation_starting_at are imported, later ones generated.';

CREATE TABLE IF NOT EXISTS invoices (
    invoice_id VARCHAR, customer_id VARCHAR, contract_id VARCHAR, credit_type_id VARCHAR,
    start_timestamp TIMESTAMPTZ, end_timestamp TIMESTAMPTZ, issued_at TIMESTAMPTZ, status VARCHAR, type VARCHAR,
    origin VARCHAR, total DECIMAL(38,23), subtotal DECIMAL(38,23), billable_status VARCHAR, custom_fields JSON,
    run_id BIGINT, invoice_index INTEGER
);
COMMENT ON TABLE invoices IS 'Invoices: imported history (origin HISTORICAL_IMPORT, FINALIZED) and generated ones (origin CONTRACT_SCHEDULE).';
COMMENT ON COLUMN invoices.total IS 'Exact sum of the line totals in the credit type''s smallest unit (USD: cents); never rounded.';
COMMENT ON COLUMN invoices.origin IS 'HISTORICAL_IMPORT (never sent to a billing provider) or CONTRACT_SCHEDULE.';
COMMENT ON COLUMN invoices.invoice_index IS 'Position of the invoice in its run''s input.';

CREATE TABLE IF NOT EXISTS invoice_line_items (
    invoice_id VARCHAR, line_item_id VARCHAR, position INTEGER, product_id VARCHAR, name VARCHAR, type VARCHAR,
    credit_type_id VARCHAR, quantity DECIMAL(38,9), unit_price DECIMAL(38,14), total DECIMAL(38,23),
    starting_at TIMESTAMPTZ, ending_before TIMESTAMPTZ, tier_level INTEGER, tier_starting_at DECIMAL(38,9),
    tier_size DECIMAL(38,9), granularity VARCHAR, pricing_group_values VARCHAR, presentation_group_values VARCHAR,
    run_id BIGINT, invoice_index INTEGER, line_index INTEGER, rate_key BIGINT, tier_key INTEGER, line_key UBIGINT
);
COMMENT ON TABLE invoice_line_items IS 'One row per invoice line: an input usage line split by rate period and by tier reached.';
COMMENT ON COLUMN invoice_line_items.granularity IS 'HOUR or DAY when the line came with subtotals (see invoice_breakdowns), NONE for a plain quantity.';

ALTER TABLE invoice_line_items ADD COLUMN IF NOT EXISTS item_key UBIGINT;
ALTER TABLE invoice_line_items ADD COLUMN IF NOT EXISTS windows BIGINT;
COMMENT ON COLUMN invoice_line_items.item_key IS 'Key of a usage line item''s breakdown rows in _priced_windows: item_key(run_id, line_key, rate_key, tier_key).';
COMMENT ON COLUMN invoice_line_items.windows IS 'How many breakdown rows a usage line item has: one per window (per part of a window crossing a tier edge), one for a plain quantity.';

CREATE TABLE IF NOT EXISTS _priced_windows (item_key UBIGINT, window_start TIMESTAMPTZ, quantity DECIMAL(38,9));
COMMENT ON TABLE _priced_windows IS 'Lean breakdown rows: each window''s quantity in one line item (a window crossing a tier edge has one row per tier), the item named by its item_key; its amount is that quantity times the line item''s unit price, exactly. A usage table''s window in a week with a tier edge is also kept once as read, with no tier (item_key 2^63 and above, in no line item): its tiers were placed from it. Read through invoice_breakdowns.';

CREATE TABLE IF NOT EXISTS _priced_days (
    item_key UBIGINT, day DATE, window_start TIMESTAMPTZ, quantity DECIMAL(38,9), windows BIGINT
);
COMMENT ON TABLE _priced_days IS 'Daily rollups of _priced_windows: a line item''s windows of one UTC day (day; window_start, its first instant), their quantity summed and their rows counted, for the line items of HOUR or DAY granularity. Written with the windows, dropped and written again with them when a draft is rated again. Read through breakdowns_daily.';

CREATE TABLE IF NOT EXISTS reconciliation_runs (
    reconciliation_id BIGINT, run_at TIMESTAMPTZ, legacy_files VARCHAR[], tolerance DECIMAL(38,9),
    invoices_compared BIGINT, differences BIGINT, summary JSON
);
COMMENT ON TABLE reconciliation_runs IS 'One row per reconciliation of legacy invoices against the imported ones (not kept for previews).';

CREATE TABLE IF NOT EXISTS reconciliation_results (
    reconciliation_id BIGINT, level VARCHAR, status VARCHAR, customer_id VARCHAR, contract_id VARCHAR,
    credit_type_id VARCHAR, inclusive_start TIMESTAMPTZ, exclusive_end TIMESTAMPTZ, legacy_invoice_id VARCHAR,
    invoice_id VARCHAR, product_id VARCHAR, legacy_quantity DECIMAL(38,9), imported_quantity DECIMAL(38,9),
    legacy_total DECIMAL(38,23), imported_total DECIMAL(38,23), difference DECIMAL(38,0)
);
ALTER TABLE reconciliation_runs ADD COLUMN IF NOT EXISTS legacy_unit VARCHAR;
ALTER TABLE reconciliation_runs ADD COLUMN IF NOT EXISTS compared_with VARCHAR;
ALTER TABLE reconciliation_runs ADD COLUMN IF NOT EXISTS periods JSON;
ALTER TABLE reconciliation_results ADD COLUMN IF NOT EXISTS candidates VARCHAR;
ALTER TABLE reconciliation_results ADD COLUMN IF NOT EXISTS legacy_units DECIMAL(38,0);
ALTER TABLE reconciliation_results ADD COLUMN IF NOT EXISTS imported_units DECIMAL(38,0);
COMMENT ON COLUMN reconciliation_results.legacy_units IS 'An invoice''s legacy total in whole units (half-even), as compared.';
COMMENT ON COLUMN reconciliation_runs.legacy_unit IS 'The unit of the legacy totals: minor (the credit type''s smallest, cents) or major (dollars).';
COMMENT ON COLUMN reconciliation_runs.periods IS 'Imported and legacy totals per month and credit type, in whole units: what the report charts.';
COMMENT ON COLUMN reconciliation_results.candidates IS 'The other side''s invoice ids a legacy or imported invoice could be (PERIOD_MISMATCH, AMBIGUOUS), comma separated.';
COMMENT ON TABLE reconciliation_results IS 'Per invoice and per line: MATCH, AMOUNT_MISMATCH, QUANTITY_MISMATCH, PERIOD_MISMATCH, AMBIGUOUS, MISSING_IN_IMPORT or MISSING_IN_LEGACY; difference in whole units (imported minus legacy, half-even).';

CREATE TABLE IF NOT EXISTS commit_segments (
    contract_id VARCHAR, customer_id VARCHAR, commit_or_credit_id VARCHAR, kind VARCHAR, name VARCHAR,
    product_id VARCHAR, priority DECIMAL(38,9), zero_cost_basis BOOLEAN, applicable_products INTEGER,
    applicable_product_ids VARCHAR[], applicable_product_tags VARCHAR[], segment_id VARCHAR, credit_type_id VARCHAR,
    amount DECIMAL(38,23), starting_at TIMESTAMPTZ, ending_before TIMESTAMPTZ, run_id BIGINT
);
COMMENT ON TABLE commit_segments IS 'Access segments of each contract''s commits (PREPAID, POSTPAID) and credits (CREDIT): amount usable in [starting_at, ending_before), in its credit type.';

CREATE TABLE IF NOT EXISTS balance_ledger_entries (
    entry_id VARCHAR, customer_id VARCHAR, contract_id VARCHAR, commit_or_credit_id VARCHAR, kind VARCHAR,
    segment_id VARCHAR, type VARCHAR, amount DECIMAL(38,23), invoice_id VARCHAR, timestamp TIMESTAMPTZ, run_id BIGINT
);
COMMENT ON TABLE balance_ledger_entries IS 'Metronome ledger entries: a segment start is positive (e.g. PREPAID_COMMIT_SEGMENT_START), an invoice deduction negative (e.g. PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION), at the invoice''s end.';

ALTER TABLE invoice_line_items ADD COLUMN IF NOT EXISTS commit_or_credit_id VARCHAR;
ALTER TABLE invoice_line_items ADD COLUMN IF NOT EXISTS commit_segment_id VARCHAR;
ALTER TABLE invoice_line_items ADD COLUMN IF NOT EXISTS commit_kind VARCHAR;

CREATE TABLE IF NOT EXISTS provider_outbox (
    invoice_id VARCHAR, contract_id VARCHAR, billing_provider VARCHAR, delivery_method VARCHAR,
    idempotency_key VARCHAR, status VARCHAR, queued_at TIMESTAMPTZ, exported_at TIMESTAMPTZ
);
COMMENT ON TABLE provider_outbox IS 'Finalized generated invoices bound for the contract''s billing provider (QUEUED, then EXPORTED). Imported invoices never enter it.';

CREATE TABLE IF NOT EXISTS _draft_usage (
    source VARCHAR, row BIGINT, invoice_index BIGINT, line_index BIGINT, window_index BIGINT,
    customer_id VARCHAR, contract_id VARCHAR, product_id VARCHAR, credit_type_id VARCHAR,
    inclusive_start TIMESTAMPTZ, exclusive_end TIMESTAMPTZ, invoice_start TIMESTAMPTZ, invoice_end TIMESTAMPTZ,
    issue_date TIMESTAMPTZ, start_text VARCHAR, end_text VARCHAR, invoice_start_text VARCHAR,
    invoice_end_text VARCHAR, issue_text VARCHAR, quantity_raw VARCHAR, quantity DECIMAL(38,9),
    granularity_given VARCHAR, granularity VARCHAR, pricing_group_values VARCHAR,
    presentation_group_values VARCHAR, billable_status VARCHAR, run_id BIGINT
);
COMMENT ON TABLE _draft_usage IS 'Usage rows of the periods the contracts bill themselves (their DRAFT invoices): kept, so a draft is re-rated from all its usage when more arrives.';

CREATE TABLE IF NOT EXISTS _api_answers (
    idempotency_key VARCHAR, request_hash VARCHAR, method VARCHAR, path VARCHAR,
    status INTEGER, body VARCHAR, answered_at TIMESTAMPTZ
);
COMMENT ON TABLE _api_answers IS 'The first answer of the HTTP API to each Idempotency-Key: replayed for the same key and request, a conflict for the same key and another request.';
COMMENT ON COLUMN _api_answers.request_hash IS 'sha256 of the method, path, query and body of the request that first used the key.';

CREATE TABLE IF NOT EXISTS _breakdown_files (
    run_id BIGINT, kind VARCHAR, month VARCHAR, path VARCHAR, rows BIGINT
);
COMMENT ON TABLE _breakdown_files IS 'Parquet files outside the store that hold breakdown windows (kind windows: as _priced_windows) or daily rollups (kind days: as _priced_days) of a run''s history, one UTC month each: written by a Spark run given --breakdowns, read through breakdown_windows and breakdown_days (and so every breakdown view). A file is named here only once the run that wrote it is committed.';
