"""What each usage row belongs to, before it is checked or priced: its contract, its billing
period (or its DRAFT's), the contract's rate piece in effect at its start, and the keys of its
line, invoice and tier group. Checking (validate.rows) and pricing (rate) group and join rows by
these same expressions, so both read them from here: the flow runs load -> resolve -> validate ->
rate, never back.
"""

from __future__ import annotations

DAY_US = 86_400_000_000  # a UTC day in microseconds
# Tiered windows are placed week by week: UTC weeks since the epoch (Thursday to Wednesday).
WEEK_US = 7 * DAY_US


def utc_day_sql(timestamp: str) -> str:
    """UTC days since the epoch of an instant, rounded down (`//` alone rounds toward zero), from
    its microseconds: a cast of the TIMESTAMPTZ would read the session's TimeZone."""
    us = f"epoch_us({timestamp})"
    return f"({us} // {DAY_US} - ({us} % {DAY_US} < 0)::BIGINT)"


def since_midnight_sql(timestamp: str) -> str:
    """Microseconds past the UTC midnight before an instant (never negative, even before 1970)."""
    us = f"epoch_us({timestamp})"
    return f"(({us} % {DAY_US} + {DAY_US}) % {DAY_US})"


# What resolving a row adds to its own columns (resolved_sql): its contract's, period's and rate
# piece's. A check that reads none of them per row may resolve groups of rows instead.
RESOLVED_COLUMNS = (
    "known_contract",
    "contract_customer_id",
    "contract_start",
    "contract_end",
    "generation_starts_at",
    "known_customer",
    "known_product",
    "known_credit_type",
    "invoice_period_start",
    "invoice_period_end",
    "in_draft",
    "rate_key",
    "rate_type",
    "entitled",
    "rate_credit_type_id",
    "rate_ending_before",
    "rate_continues",
    "invoice_credit_type_id",
)


# The times of day (microseconds past a UTC midnight, in order) at which some billing period or
# rate piece a usage row can meet begins or ends, midnight aside: cut at these, a day's rows of
# one contract, product and pricing group values resolve alike (validate.line_weeks_sql,
# `day_splits`). At most `$most` + 1 of them are listed (past that many, rows are resolved one by
# one).
DAY_SPLITS = f"""
SELECT DISTINCT {since_midnight_sql("moment")} AS offset_us
FROM (
    SELECT inclusive_start AS moment FROM _period_weeks
    UNION ALL SELECT exclusive_end FROM _period_weeks
    UNION ALL SELECT starting_at FROM contract_rates
    UNION ALL SELECT ending_before FROM contract_rates
)
WHERE moment IS NOT NULL AND epoch_us(moment) % {DAY_US} <> 0
ORDER BY offset_us
LIMIT $most + 1"""


# How many rows of the usage table's first UTC day (the day of its first row) each contract,
# product, pricing group values, customer and granularity has that day, on average: what
# grouping rows by day would gain. Exports come in time order, so only the first row groups are
# read; rows in another order are filtered whole.
FIRST_DAY_ROWS_PER_GROUP = f"""
WITH first_day AS (
    SELECT min({utc_day_sql("inclusive_start")}) AS day
    FROM (SELECT inclusive_start FROM usage_rows WHERE inclusive_start IS NOT NULL LIMIT 1000)
)
SELECT count(*) / count(DISTINCT (contract_id, product_id, pricing_key, customer_id, granularity))
FROM usage_rows, first_day
WHERE inclusive_start >= to_timestamp(first_day.day * 86400)
  AND inclusive_start < to_timestamp((first_day.day + 1) * 86400)"""


def invoice_key_columns(*, table: bool) -> str:
    """What makes a row's invoice: a JSON batch numbers its invoices; a usage table's rows
    belong to their contract's period (or invoice columns) and the credit type they are priced in."""
    return (
        "invoice_index"
        if not table
        else "contract_id, invoice_period_start, invoice_credit_type_id"
    )


def line_key_columns(*, table: bool) -> str:
    if not table:
        return "invoice_index, line_index"
    # the group keys, not the JSON text of the values: the same line, cheaper per row
    return (
        "contract_id, invoice_period_start, invoice_period_end, invoice_credit_type_id, product_id,"
        " pricing_key, presentation_key, granularity"
    )


# A row keyed by contract is of the partition of contracts being read (Store.each_partition),
# or there is none (outside one, or in one partition). The variables are read when a statement
# is bound, so the filter is a constant of each statement.
def in_partition_sql(contract_hash: str) -> str:
    """IN_PARTITION of a contract whose id hashes to `contract_hash` (SQL)."""
    return (
        "coalesce(getvariable('usage_partitions'), 1) = 1"
        f" OR {contract_hash} % getvariable('usage_partitions') = getvariable('usage_partition')"
    )


IN_PARTITION = in_partition_sql("hash(contract_id)")


def of_partition(table: str) -> str:
    """A table keyed by contract, restricted to the contracts of the partition being read
    (IN_PARTITION): a partition's rows meet only those, and the hash tables built from it then
    grow with the partition, not with every contract of the run. At 192,998 contracts, the whole
    period and rate tables held beside the check's groups left DuckDB no memory: the check
    spilled more than 20 GB for 20M rows."""
    return f"(SELECT * FROM {table} WHERE {IN_PARTITION})"


def period_join(table: bool) -> str:
    if not table:
        return ""
    return f"""
LEFT JOIN {of_partition("_period_weeks")} d
  ON d.contract_id = u.contract_id AND d.week = epoch_us(u.inclusive_start) // {WEEK_US}
 AND d.inclusive_start <= u.inclusive_start AND u.inclusive_start < d.exclusive_end"""


def rates_of(rows: str) -> str:
    """The contract rates keyed as the rows of `rows` are (load.rates_keyed_sql): kept draft
    usage carries canonical JSON; the run's usage rows, their table's key."""
    return "_json_rates" if rows == "draft_rows" else "_usage_rates"


def rate_join(rows: str) -> str:
    return f"""
LEFT JOIN {of_partition(rates_of(rows))} r
  ON r.contract_id = u.contract_id AND r.product_id = u.product_id
 AND r.pricing_key IS NOT DISTINCT FROM u.pricing_key
 AND r.starting_at <= u.inclusive_start AND (r.ending_before IS NULL OR u.inclusive_start < r.ending_before)"""


def period_columns(table: bool) -> str:
    """A usage table's row belongs to the billing period containing its start (or its invoice
    columns'); a row in a period the contract bills itself (d.draft) belongs to its DRAFT."""
    period = "coalesce(u.invoice_start, d.inclusive_start)" if table else "u.invoice_start"
    period_end = "coalesce(u.invoice_end, d.exclusive_end)" if table else "u.invoice_end"
    in_draft = "coalesce(d.draft, false)" if table else "false"
    return f"{period} AS invoice_period_start, {period_end} AS invoice_period_end, {in_draft} AS in_draft"


def tier_group_columns(*, table: bool) -> str:
    """What a tier position accumulates over: the invoice, product and pricing group values."""
    return f"{invoice_key_columns(table=table)}, product_id, pricing_group_values"


def _keys(table: bool) -> str:
    keys = line_key_columns(table=table)
    return (
        f"hash({keys}) AS line_key, hash('check', {keys}) AS line_check,"
        f" hash({tier_group_columns(table=table)}) AS tier_group"
    )


# The small tables a row is resolved against beside its period and rate: (join, its columns).
_LOOKUPS = (
    (
        f"LEFT JOIN {of_partition('_contract_refs')} c ON c.contract_id = u.contract_id",
        "c.contract_id IS NOT NULL AS known_contract, c.customer_id AS contract_customer_id,"
        " c.starting_at AS contract_start, c.ending_before AS contract_end, c.generation_starts_at",
    ),
    (
        "LEFT JOIN _known_customers kc ON kc.customer_id = u.customer_id",
        "kc.customer_id IS NOT NULL AS known_customer",
    ),
    (
        "LEFT JOIN _known_products kp ON kp.product_id = u.product_id",
        "kp.product_id IS NOT NULL AS known_product",
    ),
    (
        "LEFT JOIN _known_credit_types kt ON kt.credit_type_id = u.credit_type_id",
        "kt.credit_type_id IS NOT NULL AS known_credit_type",
    ),
)


def resolved_sql(
    *, table: bool, rows: str = "usage_rows", keys: bool = True, needs: str | None = None
) -> str:
    """Every usage row with what it needs: its contract, billing period, effective rate, and
    (with `keys`) the key of the line it belongs to. Joins only small tables, on equality plus a
    range; with `needs` (SQL text), only the lookups whose columns it names."""
    lookups = [
        (join, columns)
        for join, columns in _LOOKUPS
        if needs is None or any(c.split(" AS ")[-1].strip() in needs for c in columns.split(","))
    ]
    return f"""
SELECT *{", " + _keys(table) if keys else ""}
FROM (
    SELECT u.*, {"".join(columns + ", " for _, columns in lookups)}{period_columns(table)},
           r.rate_key, r.rate_type, r.entitled, r.credit_type_id AS rate_credit_type_id,
           r.ending_before AS rate_ending_before, r.continues AS rate_continues,
           coalesce(u.credit_type_id, r.credit_type_id) AS invoice_credit_type_id
    FROM {rows} u
    {" ".join(join for join, _ in lookups)}{period_join(table)}{rate_join(rows)}
)
"""
