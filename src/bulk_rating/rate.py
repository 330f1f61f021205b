"""Pricing: a contract's effective rates (its rate card with its overrides), and the kernel that
prices usage rows into priced windows, line items and invoice totals.

The kernel is set-based SQL that `store` runs inside the run's transaction, so the same statements
price a JSON batch of ten windows or a usage table of a hundred million. It reads only the rows of
the contracts it is given (plus their rates): it can run partition by partition.

Relations it reads: the usage rows (`usage_rows`, frames.USAGE_ROWS, or `draft_rows`), resolved
against `_contract_refs`, `_period_weeks` and the contract rates keyed as the rows are
(`_usage_rates` or `_json_rates`: resolve.rates_of, resolve.resolved_sql); what the check
counted of them (`_line_weeks`, validate.line_weeks_sql); `usage_lines` (frames.STORE_LINES) and
`usage_invoices` (frames.INVOICES). Its steps: WEEK_TIERS, priced_windows_sql (or, for a usage
table whose rows name no invoice periods, LINE_SPANS and spanned_windows_sql), edge_windows_sql,
line_items_sql, INVOICES.

Rules (METRONOME.md D4-D6, rules 4, 5, 7, 8, 9, 21):
- each window is priced at the contract's effective rate in effect at its start (half-open),
  matched on product and the exact pricing group values;
- every rate is a list of graduated tiers [tier_start, tier_end); a FLAT rate is one open tier;
- the tier position accumulates per invoice, product and pricing group values over the windows
  in time order (ties: line order, then window order), so a window crossing a tier edge is split
  into one part per tier, each part `quantity x tier price`, exactly;
- a line item is an input line's parts of one rate period and one tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bulk_rating import pricing
from bulk_rating.frames import canonical_json
from bulk_rating.models import Contract, Override, Product, Rate, RateCard, Tier
from bulk_rating.pricing import Tiers
from bulk_rating.resolve import (
    DAY_US,
    WEEK_US,
    in_partition_sql,
    line_key_columns,
    period_columns,
    period_join,
    rate_join,
    utc_day_sql,
)

FLAT_TIER = 0


def _priced_rows_sql(*, table: bool, rows: str) -> str:
    """resolved_sql with only what pricing reads (the rows are valid by now): the same line key."""
    return f"""
SELECT *, hash({line_key_columns(table=table)}) AS line_key
FROM (
    SELECT u.contract_id, u.product_id, u.pricing_key, u.presentation_key,
           u.granularity, u.invoice_index, u.line_index, u.window_index, u.inclusive_start, u.quantity,
           {period_columns(table)}, r.rate_key, r.rate_type,
           coalesce(u.credit_type_id, r.credit_type_id) AS invoice_credit_type_id
    FROM {rows} u{period_join(table)}{rate_join(rows)}
)
"""


def _one_tier_sql(buckets: str, bucket: str) -> str:
    """Each bucket of a tier group (`buckets`: tier_group, `bucket`, position_start, quantity,
    rate_key, one_rate) in the one tier all its windows fall in, or in none (tier_key NULL) when a
    tier edge or a rate change lies inside it."""
    return f"""
    SELECT p.tier_group, p.{bucket}, p.position_start, t.tier_key
    FROM {buckets} p
    LEFT JOIN _contract_rate_tiers t
      ON p.one_rate AND t.rate_key = p.rate_key
     -- a zero window at an edge belongs to the lower tier (as in edge_windows_sql)
     AND (t.tier_start < p.position_start OR (t.tier_start = 0 AND p.position_start = 0))
     AND (t.tier_end IS NULL OR p.position_start + p.quantity <= t.tier_end)"""


# Tiers by week (METRONOME.md rule 7 without sorting every window): a tiered tier group's UTC
# weeks, in order, each with the quantity of its tier group before it (`position_start`). A week
# whose windows all fall in one tier of one rate piece gets that tier (`tier_key`); the few other
# weeks (a tier edge or a rate change inside) are placed day by day, then window by window
# (edge_windows_sql).
WEEK_TIERS = f"""
WITH weeks AS (
    SELECT tier_group, week, sum(quantity) AS quantity, min(rate_key) AS rate_key,
           min(rate_key) = max(rate_key) AS one_rate
    FROM _line_weeks WHERE week IS NOT NULL AND draft = $drafts GROUP BY tier_group, week
),
positioned AS (
    SELECT *, sum(quantity) OVER (
        PARTITION BY tier_group ORDER BY week ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) - quantity AS position_start
    FROM weeks
),
placed AS ({_one_tier_sql("positioned", "week")}
)
-- by line and week: what a priced window finds by its own line key
SELECT g.line_key, g.week, p.tier_group, p.position_start, p.tier_key
FROM (SELECT DISTINCT line_key, tier_group, week FROM _line_weeks WHERE week IS NOT NULL AND draft = $drafts) g
JOIN placed p ON p.tier_group = g.tier_group AND p.week = g.week
"""


def priced_windows_sql(
    *, table: bool, rows: str = "usage_rows", drafts: bool = False, keep_edges: bool = False
) -> str:
    """One row per window into `_priced_windows`: a FLAT window in its one tier, a tiered window
    in its week's tier. The windows of weeks with a tier edge inside (placed by edge_windows_sql)
    are left out, or with `keep_edges` stored as read with no tier (`tier_key` NULL, in no line
    item), for edge_windows_sql to place from there instead of reading the rows again."""
    # without `keep_edges`, a tiered window whose week has no tier is left to edge_windows_sql
    placed = (
        ""
        if keep_edges
        else f" AND (NOT {pricing.positioned_sql('w.rate_type')} OR d.tier_key IS NOT NULL)"
    )
    # one key column instead of run, line, rate piece and tier: at 10M rows the statement takes
    # about a fifth less (each stored column costs about as much as the joins that make it)
    return f"""
SELECT item_key($run_id, w.line_key, w.rate_key,
                CASE WHEN {pricing.positioned_sql("w.rate_type")} THEN d.tier_key ELSE {FLAT_TIER} END) AS item_key,
       w.inclusive_start AS window_start, w.quantity
FROM ({_priced_rows_sql(table=table, rows=rows)}) w
LEFT JOIN _week_tiers d
  ON {pricing.positioned_sql("w.rate_type")} AND d.line_key = w.line_key
 AND d.week = epoch_us(w.inclusive_start) // {WEEK_US}
WHERE w.in_draft = {str(drafts).lower()}{placed}
"""


# What a usage table's row is priced by when the rows name no invoice periods of their own
# (LINE_SPANS): with its start, these columns decide its line, rate piece and tier. The customer,
# billable status and given granularity are the same on every row of a line (or the check
# failed it), so they are not read.
SERIES_COLUMNS = (
    "contract_id",
    "product_id",
    "pricing_key",
    "presentation_key",
    "granularity",
    "credit_type_id",
)


def series_key_sql(alias: str) -> str:
    """The hash of a row's SERIES_COLUMNS (`alias`: the relation they are read from)."""
    return f"hash({', '.join(f'{alias}.{c}' for c in SERIES_COLUMNS)})"


# The checked lines of one partition (`_line_weeks`) as spans of time: for each series, line and
# rate piece, the stretch of its billing period the rate piece is in effect, keyed by the UTC
# weeks it touches (a tiered line's by the one week its group was counted in), with the item key
# each window starting there is stored under (priced_windows_sql's: the week's tier, or none in a
# week with a tier edge, kept for edge_windows_sql). A row then finds its item by one join on
# (series, week) and its start, instead of joins to periods, rate pieces and week tiers on text
# ids: at 10M rows of UUID ids, the pricing statement took 0.6-0.7 s instead of 1.3-1.4 s, with
# the same windows. Spans of a series never overlap: periods, rate pieces and weeks do not. Two
# series whose hashes collide either never meet (their spans lie apart) or store a row twice,
# which stops the run (Store.price counts the rows stored): never a row filed under another.
_SPANS = f"""
WITH lines AS (
    SELECT DISTINCT {", ".join(SERIES_COLUMNS)}, line_key, rate_key, week,
           invoice_period_start, invoice_period_end
    FROM _line_weeks
    -- a line without a period has no span: its rows are then not stored, and the run stops
    WHERE NOT draft AND invoice_period_start IS NOT NULL
      AND ({in_partition_sql("hash(contract_id)")})
),
spans AS (
    SELECT {series_key_sql("l")} AS series, l.week AS tier_week, l.line_key, l.rate_key,
           r.rate_type,
           -- greatest and least pass over a NULL: an open-ended rate piece ends with the period
           greatest(l.invoice_period_start, r.starting_at) AS span_start,
           least(l.invoice_period_end, r.ending_before) AS span_end
    -- the piece by its key (unique in the store): its pricing key was matched by the check
    FROM lines l JOIN contract_rates r ON r.rate_key = l.rate_key
)"""
# weeks as rows count them (epoch_us // WEEK_US: monotonic, so [start, end) lies in these)
_FIRST_WEEK = f"epoch_us(s.span_start) // {WEEK_US}"
_LAST_WEEK = f"(epoch_us(s.span_end) - 1) // {WEEK_US}"
LINE_SPANS = f"""{_SPANS}
SELECT s.series, w.week, s.span_start, s.span_end,
       item_key($run_id, s.line_key, s.rate_key,
                CASE WHEN {pricing.positioned_sql("s.rate_type")} THEN t.tier_key ELSE {FLAT_TIER} END)
         AS item_key
FROM spans s
CROSS JOIN LATERAL (
    SELECT unnest(CASE WHEN s.tier_week IS NOT NULL THEN [s.tier_week]
                       ELSE generate_series({_FIRST_WEEK}, {_LAST_WEEK}) END) AS week
) w
LEFT JOIN _week_tiers t
  ON {pricing.positioned_sql("s.rate_type")} AND t.line_key = s.line_key AND t.week = s.tier_week
"""


# How many spans all partitions' lines make (LINE_SPANS' rows), and the rows they price. An
# untiered line's span is repeated in every week of its period: sparse rows of long periods (a
# row a year, billed yearly) would make far more spans than rows, and each row is then resolved
# again instead (kernel._prices_by_spans).
SPANS_AND_ROWS = f"""{_SPANS}
SELECT coalesce(sum(CASE WHEN s.tier_week IS NOT NULL THEN 1
                         ELSE {_LAST_WEEK} - {_FIRST_WEEK} + 1 END), 0)::BIGINT AS spans,
       (SELECT coalesce(sum(rows), 0) FROM _line_weeks WHERE NOT draft)::BIGINT AS rows
FROM spans s"""


def spanned_windows_sql(rows: str = "usage_rows") -> str:
    """priced_windows_sql with `keep_edges` for a usage table whose rows name no invoice
    periods, by the partition's LINE_SPANS: every row of a history period is stored once (a
    DRAFT period's rows find no span; they are rated with their draft)."""
    return f"""
SELECT s.item_key, u.inclusive_start AS window_start, u.quantity
FROM {rows} u
JOIN _line_spans s
  ON s.series = {series_key_sql("u")} AND s.week = epoch_us(u.inclusive_start) // {WEEK_US}
 AND s.span_start <= u.inclusive_start AND u.inclusive_start < s.span_end
"""


# Item keys at KEPT_FROM and above are windows kept as read, without a tier (schema.sql item_key).
KEPT_FROM = "(1::UBIGINT << 63)"

# Where a kept window goes: by its key and week, its line and rate piece, and its week's tier
# group and position (WEEK_TIERS).
KEPT_WEEKS = """
SELECT item_key($run_id, g.line_key, g.rate_key, NULL) AS item_key, g.week, g.line_key, g.rate_key,
       t.tier_group, t.position_start AS week_position
FROM (SELECT DISTINCT line_key, rate_key, week FROM _line_weeks WHERE week IS NOT NULL AND NOT draft) g
JOIN _week_tiers t ON t.line_key = g.line_key AND t.week = g.week
WHERE t.tier_key IS NULL"""

# The run's line item and kept keys that another item shares (a 63-bit hash makes it next to
# impossible; a shared key would put one item's windows in another's).
SHARED_ITEM_KEYS = f"""
SELECT count(*) FROM (
    SELECT item_key FROM (
        SELECT item_key FROM invoice_line_items WHERE item_key IS NOT NULL
        UNION ALL SELECT DISTINCT item_key FROM ({KEPT_WEEKS})
    ) GROUP BY item_key HAVING count(*) > 1
)"""

# Edge parts as the run stores them (`_edge_parts` holds them with their line, rate and tier).
EDGE_PARTS_STORED = """
SELECT item_key($run_id, line_key, rate_key, tier_key), window_start, quantity FROM _edge_parts"""


# Daily rollups (`_priced_days`, read by breakdowns_daily): a line item's windows summed per UTC
# day, so that a daily question reads one row per line item and day (at 100M hourly windows, 5M
# rows) instead of grouping every window each time it is asked. The windows are grouped first and
# matched to `items` (a query of item keys) after: the grouping is the cost, and matching 5M groups
# takes less than matching 100M windows. Windows kept as read, without a tier, are in no item.
# With `bounded`, only windows starting in [$from, $until) are read: windows are stored about in
# the order they were read (time order, as exports come), so bounds skip other periods' row groups.
def priced_days_sql(items: str, *, bounded: bool) -> str:
    bounds = " AND window_start >= $from AND window_start < $until" if bounded else ""
    return f"""
SELECT d.item_key, DATE '1970-01-01' + d.day::INTEGER AS day, to_timestamp(d.day * 86400) AS window_start,
       d.quantity, d.windows
FROM (
    -- UTC days since the epoch (resolve.utc_day_sql): a cast to DATE per window would read
    -- TimeZone, and costs about a third of the grouping
    SELECT item_key, {utc_day_sql("window_start")} AS day, sum(quantity) AS quantity, count(*) AS windows
    FROM _priced_windows
    WHERE item_key < {KEPT_FROM}{bounds}
    GROUP BY item_key, day
) d
SEMI JOIN ({items}) i ON i.item_key = d.item_key"""


# The line items a pricing stored that have windows by the hour or day, with their periods (their
# windows start inside them): the run's items of the lines it priced (`usage_lines`; a run prices
# its history, then its drafts again, each with its own lines).
PRICED_ITEMS = """
SELECT l.item_key, l.starting_at, l.ending_before
FROM invoice_line_items l
SEMI JOIN usage_lines u ON u.line_key = l.line_key
WHERE l.run_id = $run_id AND l.granularity IN ('HOUR', 'DAY')"""

# Every line item with windows by the hour or day (a store's rollups made again from its windows).
ITEMS_WITH_WINDOWS = "SELECT item_key FROM invoice_line_items WHERE granularity IN ('HOUR', 'DAY')"


def edge_windows_sql(
    *, table: bool, rows: str = "usage_rows", drafts: bool = False, kept: bool = False
) -> str:
    """The windows of the weeks WEEK_TIERS could not place, one row per tier each reaches: read
    again from `rows`, or with `kept` from the run's windows priced_windows_sql kept without a
    tier (their line, rate piece and week found by their key). Their UTC days are placed as
    WEEK_TIERS places weeks; a day with a tier edge or a rate change inside has its windows
    placed one by one: each given `position_end`, the quantity of its tier group up to and
    including it, in time order (ties: line, window, line key; a usage table has no line or
    window order), a window crossing a tier edge split there, each part exact."""
    if kept:
        # one join finds a kept window's line, rate piece and week (keyed by its item key)
        edge = f"""
    SELECT k.line_key, k.rate_key, w.window_start AS inclusive_start, w.quantity,
           NULL::BIGINT AS line_index, NULL::BIGINT AS window_index,
           k.tier_group, k.week, k.week_position, epoch_us(w.window_start) // {DAY_US} AS day
    FROM _priced_windows w
    JOIN ({KEPT_WEEKS}) k ON k.item_key = w.item_key AND k.week = epoch_us(w.window_start) // {WEEK_US}
    WHERE w.item_key >= {KEPT_FROM}"""
    else:
        edge = f"""
    SELECT w.line_key, w.rate_key, w.inclusive_start, w.quantity, w.line_index, w.window_index,
           d.tier_group, d.week, d.position_start AS week_position,
           epoch_us(w.inclusive_start) // {DAY_US} AS day
    FROM ({_priced_rows_sql(table=table, rows=rows)}) w
    JOIN _week_tiers d
      ON d.line_key = w.line_key AND d.week = epoch_us(w.inclusive_start) // {WEEK_US}
    WHERE w.in_draft = {str(drafts).lower()} AND {pricing.positioned_sql("w.rate_type")}
      AND d.tier_key IS NULL"""
    # `edge` and `placed` are read twice each: computed twice (a scan of the kept windows and a
    # small join), not materialized, which at 100M rows spilled their 4M rows to disk and cost
    # about twice as much
    return f"""
WITH edge AS NOT MATERIALIZED ({edge}
),
days AS (
    SELECT tier_group, day, any_value(week) AS week, any_value(week_position) AS week_position,
           sum(quantity) AS quantity, min(rate_key) AS rate_key, min(rate_key) = max(rate_key) AS one_rate
    FROM edge GROUP BY tier_group, day
),
day_positions AS (
    SELECT *, week_position + sum(quantity) OVER (
        PARTITION BY tier_group, week ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) - quantity AS position_start
    FROM days
),
day_tiers AS MATERIALIZED ({_one_tier_sql("day_positions", "day")}
),
placed AS NOT MATERIALIZED (
    SELECT e.*, t.position_start AS day_position, t.tier_key AS day_tier
    FROM edge e JOIN day_tiers t ON t.tier_group = e.tier_group AND t.day = e.day
),
positioned AS (
    SELECT line_key, rate_key, inclusive_start, quantity, day_position + sum(quantity) OVER (
        PARTITION BY tier_group, day
        ORDER BY inclusive_start, line_index, window_index, line_key
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS position_end
    FROM placed WHERE day_tier IS NULL
),
parts AS (
    SELECT p.line_key, p.rate_key, t.tier_key, p.inclusive_start, p.quantity,
           p.position_end - p.quantity AS position_start, t.tier_start, t.tier_end,
           least(p.position_end, coalesce(t.tier_end, p.position_end))
             - greatest(p.position_end - p.quantity, t.tier_start) AS portion
    FROM positioned p
    JOIN _contract_rate_tiers t ON t.rate_key = p.rate_key
)
SELECT line_key, rate_key, tier_key, inclusive_start AS window_start, portion AS quantity
FROM parts
WHERE portion > 0
   -- a zero window still gets its row (analysts ask for windows without usage): in the tier
   -- the position is in, the lower one at an edge
   OR (quantity = 0 AND ((position_start = 0 AND tier_start = 0)
        OR (tier_start < position_start AND (tier_end IS NULL OR position_start <= tier_end))))
UNION ALL
SELECT line_key, rate_key, day_tier, inclusive_start, quantity FROM placed
WHERE day_tier IS NOT NULL
"""


# Line items: an input line's priced windows of one rate piece and one tier. Invoice ids come
# from the invoice's contract, credit type and period (the same id a re-run or preview gives).
LINE_ITEM_COLUMNS = (
    "invoice_id, line_item_id, position, product_id, name, type, credit_type_id, quantity, unit_price, total,"
    " starting_at, ending_before, tier_level, tier_starting_at, tier_size, granularity, pricing_group_values,"
    " presentation_group_values, run_id, invoice_index, line_index, rate_key, tier_key, line_key, item_key,"
    " windows"
)


def line_items_sql(*, drafts: bool = False) -> str:
    """Line items. Their quantities come from what the check counted (`_line_weeks`, in the
    tiers `_week_tiers` gave their weeks) and the parts of edge weeks (`_edge_parts`), not from
    reading every priced window again; nor are their counts of windows (a row of `_line_weeks` in
    a week with a tier counts its rows, an edge part itself)."""
    return f"{_items_cte(drafts)},{_LINE_ITEMS}"


def _items_cte(drafts: bool) -> str:
    return f"""
WITH items AS (
    SELECT line_key, rate_key, tier_key, sum(quantity) AS quantity, sum(windows) AS windows FROM (
        SELECT g.line_key, g.rate_key,
               CASE WHEN g.week IS NULL THEN {FLAT_TIER} ELSE t.tier_key END AS tier_key, g.quantity,
               g.rows AS windows
        FROM _line_weeks g
        LEFT JOIN _week_tiers t ON t.line_key = g.line_key AND t.week = g.week
        WHERE g.draft = {str(drafts).lower()} AND (g.week IS NULL OR t.tier_key IS NOT NULL)
        UNION ALL
        SELECT line_key, rate_key, tier_key, quantity, 1 FROM _edge_parts
    ) GROUP BY ALL
)"""


def large_amounts_sql(*, drafts: bool = False, at_least: float) -> str:
    """The line items line_items_sql would make whose amount (quantity x price, computed as
    doubles) is `at_least` or more, with their invoice's source, invoice and line index, quantity
    and price: the candidates for an amount too large to store (checked exactly by the caller)."""
    return f"""{_items_cte(drafts)}
SELECT i.source, l.invoice_index, l.line_index, a.quantity, t.price
FROM items a
JOIN usage_lines l USING (line_key)
JOIN usage_invoices i ON i.invoice_index = l.invoice_index
JOIN _contract_rate_tiers t ON t.rate_key = a.rate_key AND t.tier_key = a.tier_key
WHERE abs(a.quantity::DOUBLE * t.price::DOUBLE) >= {at_least!r}
ORDER BY l.invoice_index, l.line_index
"""


# The run's invoices whose usage lines sum to `$limit` units or more (a subtotal too large to
# store), summed exactly without overflow: whole units as HUGEINT, the fractions apart.
LARGE_SUBTOTALS = """
SELECT i.source, i.invoice_index, t.units + floor(t.fractions)::HUGEINT AS whole_units
FROM (
    SELECT invoice_index, sum(floor(total)::HUGEINT) AS units, sum(total - floor(total)) AS fractions
    FROM invoice_line_items WHERE run_id = $run_id AND type = 'usage' GROUP BY ALL
) t
JOIN usage_invoices i USING (invoice_index)
WHERE t.units + floor(t.fractions)::HUGEINT >= $limit
ORDER BY i.invoice_index
"""


_LINE_ITEMS = """
invoice_ids AS (
    SELECT invoice_index, contract_id, credit_type_id,
           invoice_id(contract_id, credit_type_id, inclusive_start, exclusive_end) AS invoice_id
    FROM usage_invoices
)
SELECT i.invoice_id,
       stable_id(i.invoice_id || '|' || l.line_index || '|' || r.rate_index || '|' || a.tier_key) AS line_item_id,
       row_number() OVER (PARTITION BY l.invoice_index ORDER BY l.line_index, r.starting_at, a.tier_key) - 1,
       l.product_id, p.name, 'usage', i.credit_type_id, a.quantity, t.price, a.quantity * t.price,
       greatest(l.inclusive_start, r.starting_at),
       least(l.exclusive_end, coalesce(r.ending_before, l.exclusive_end)),
       nullif(a.tier_key, 0), CASE WHEN a.tier_key > 0 THEN t.tier_start END,
       CASE WHEN a.tier_key > 0 THEN t.tier_end - t.tier_start END,
       l.granularity, l.pricing_group_values, l.presentation_group_values,
       $run_id, l.invoice_index, l.line_index, a.rate_key, a.tier_key, a.line_key,
       item_key($run_id, a.line_key, a.rate_key, a.tier_key), a.windows
FROM items a
JOIN usage_lines l USING (line_key)
JOIN invoice_ids i ON i.invoice_index = l.invoice_index
JOIN products p ON p.product_id = l.product_id
JOIN contract_rates r ON r.rate_key = a.rate_key
JOIN _contract_rate_tiers t ON t.rate_key = a.rate_key AND t.tier_key = a.tier_key
"""

INVOICES = """
SELECT invoice_id(i.contract_id, i.credit_type_id, i.inclusive_start, i.exclusive_end) AS invoice_id,
       i.customer_id, i.contract_id, i.credit_type_id, i.inclusive_start, i.exclusive_end, i.issued_at,
       'FINALIZED', 'USAGE', 'HISTORICAL_IMPORT', coalesce(t.total, 0), coalesce(t.subtotal, 0),
       i.billable_status, i.custom_fields::JSON, $run_id, i.invoice_index
FROM usage_invoices i
LEFT JOIN (
    -- a postpaid commit's application is shown but paid in arrears: it does not lower the total
    SELECT invoice_index,
           sum(total) FILTER (WHERE commit_kind IS DISTINCT FROM 'POSTPAID') AS total,
           sum(total) FILTER (WHERE type = 'usage') AS subtotal
    FROM invoice_line_items WHERE run_id = $run_id GROUP BY ALL
) t USING (invoice_index)
"""


def rate_rows(card: RateCard) -> list[dict[str, Any]]:
    """The rows of `rates` for one rate card (its list prices, as given)."""
    return [
        {
            "rate_card_id": card.id,
            "rate_index": n,
            "product_id": rate.product_id,
            "starting_at": rate.starting_at,
            "ending_before": rate.ending_before,
            "entitled": rate.entitled,
            "rate_type": rate.rate_type,
            "price": rate.price,
            "credit_type_id": rate.credit_type_id,
            "pricing_group_values": canonical_json(rate.pricing_group_values),
        }
        for n, rate in enumerate(card.rates)
    ]


# --- a contract's effective rates: its rate card with its overrides applied ----------------


@dataclass(frozen=True)
class Effective:
    rate_type: str
    tiers: Tiers
    credit_type_id: str
    entitled: bool


def _list_tiers(rate_type: str, price: Decimal | None, tiers: list[Tier] | None) -> Tiers:
    return pricing.model(rate_type).tiers(price, tiers)


def _value_at(tiers: Tiers, position: Decimal) -> Decimal:
    return next(
        v for start, end, v in tiers if start <= position and (end is None or position < end)
    )


def _multiplied(list_tiers: Tiers, multipliers: Tiers) -> Tiers:
    """A TIERED override: each quantity range priced at list price x that range's multiplier."""
    edges = sorted(
        {Decimal(0)} | {e for t in (*list_tiers, *multipliers) for e in t[:2] if e is not None}
    )
    return tuple(
        (a, b, _value_at(list_tiers, a) * _value_at(multipliers, a))
        for a, b in zip(edges, [*edges[1:], None], strict=True)
    )


def _order(override: Override, position: int) -> tuple[Decimal, float, int]:
    """Lowest priority first; then the latest start; then the later override."""
    priority = override.priority if override.priority is not None else Decimal("Infinity")
    return (priority, -override.starting_at.timestamp(), -position)


def _effective(rate: Rate, active: list[tuple[int, Override]], prioritization: str) -> Effective:
    """METRONOME.md rule 8: an OVERWRITE replaces the rate and no multiplier applies; else one
    multiplier applies: the smallest (LOWEST_MULTIPLIER) or the first by priority (EXPLICIT)."""
    entitled = rate.entitled
    entitling = [(n, o) for n, o in active if o.entitled is not None]
    if entitling:
        entitled = bool(min(entitling, key=lambda x: _order(x[1], x[0]))[1].entitled)
    tiers = _list_tiers(rate.rate_type, rate.price, rate.tiers)
    rate_type, credit_type_id = rate.rate_type, rate.credit_type_id
    overwrites = [
        (n, o) for n, o in active if o.type == "OVERWRITE" and o.overwrite_rate is not None
    ]
    multipliers = [(n, o) for n, o in active if o.type in ("MULTIPLIER", "TIERED")]
    if overwrites:
        new = min(overwrites, key=lambda x: _order(x[1], x[0]))[1].overwrite_rate
        assert new is not None
        tiers = _list_tiers(new.rate_type, new.price, new.tiers)
        rate_type, credit_type_id = new.rate_type, new.credit_type_id or rate.credit_type_id
    elif multipliers:
        if prioritization == "LOWEST_MULTIPLIER":
            flat = [
                (n, o)
                for n, o in multipliers
                if o.type == "MULTIPLIER" and o.multiplier is not None
            ]
            chosen = min(flat, key=lambda x: (x[1].multiplier, x[0]))[1] if flat else None
        else:
            chosen = min(multipliers, key=lambda x: _order(x[1], x[0]))[1]
        if chosen is not None and chosen.type == "MULTIPLIER" and chosen.multiplier is not None:
            factor = chosen.multiplier
            tiers = tuple((a, b, v * factor) for a, b, v in tiers)
        elif chosen is not None and chosen.tiers:
            tiers = _multiplied(
                tiers, pricing.graduated([(t.size, t.multiplier) for t in chosen.tiers])
            )
            rate_type = "TIERED"
    return Effective(rate_type, tiers, credit_type_id, entitled)


def applies_to(override: Override, product: Product | None) -> bool:
    if override.product_id is not None:
        return product is not None and override.product_id == product.id
    tags = set(override.applicable_product_tags or [])
    return product is not None and bool(tags & set(product.tags))


def contract_rate_rows(
    contract: Contract, card: RateCard, products: dict[str, Product], first_key: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The contract's effective rate schedule (`contract_rates`) and its tiers.

    Each list rate is cut where an override starts or ends inside it; consecutive pieces with
    the same effective rate are kept whole, so a line splits only where its price changes.
    """
    rate_rows_: list[dict[str, Any]] = []
    tier_rows_: list[dict[str, Any]] = []
    for list_index, rate in enumerate(card.rates):
        product = products.get(rate.product_id)
        overrides = [(n, o) for n, o in enumerate(contract.overrides) if applies_to(o, product)]
        end = rate.ending_before
        cuts = sorted(
            {rate.starting_at}
            | {
                t
                for _, o in overrides
                for t in (o.starting_at, o.ending_before)
                if t is not None and rate.starting_at < t and (end is None or t < end)
            }
        )
        pieces: list[tuple[Any, Any, Effective]] = []
        for a, b in zip(cuts, [*cuts[1:], end], strict=True):
            active = [
                (n, o)
                for n, o in overrides
                if o.starting_at <= a and (o.ending_before is None or a < o.ending_before)
            ]
            effective = _effective(rate, active, contract.multiplier_override_prioritization)
            if pieces and pieces[-1][2] == effective:
                pieces[-1] = (pieces[-1][0], b, effective)
            else:
                pieces.append((a, b, effective))
        for a, b, effective in pieces:
            index = len(rate_rows_)
            rate_rows_.append(
                {
                    "contract_id": contract.id,
                    "rate_key": first_key + index,
                    "rate_index": index,
                    "list_rate_index": list_index,
                    "product_id": rate.product_id,
                    "starting_at": a,
                    "ending_before": b,
                    "entitled": effective.entitled,
                    "rate_type": effective.rate_type,
                    "credit_type_id": effective.credit_type_id,
                    "pricing_group_values": canonical_json(rate.pricing_group_values),
                    "continues": False,
                }
            )
            for level, (start, stop, price) in enumerate(effective.tiers, start=1):
                key = level if pricing.model(effective.rate_type).positioned else FLAT_TIER
                tier_rows_.append(
                    {
                        "rate_key": first_key + index,
                        "tier_key": key,
                        "tier_start": start,
                        "tier_end": stop,
                        "price": price,
                    }
                )
    # A piece `continues` when another piece of its product and pricing group starts where it
    # ends: a window crossing its end is still priced (at its start's rate, D5); else part of the
    # window would have no rate.
    starts = {(r["product_id"], r["pricing_group_values"], r["starting_at"]) for r in rate_rows_}
    for row in rate_rows_:
        row["continues"] = (
            row["product_id"],
            row["pricing_group_values"],
            row["ending_before"],
        ) in starts
    return rate_rows_, tier_rows_
