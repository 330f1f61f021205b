"""The pricing kernel: windows of usage -> priced windows, line items and invoice totals.

The kernel is set-based SQL that `store` runs inside the run's transaction, so the same statements
price a JSON batch of ten windows or a usage table of a hundred million. It reads only the rows of
the contracts it is given (plus their rate cards): it can run partition by partition.

Inputs it expects as relations:
- `usage_windows`  (windows_sql: one row per quantity with its invoice and line indexes)
- `usage_lines`    (invoice_index, line_index, product_id, inclusive_start, exclusive_end,
                    granularity, pricing_group_values, presentation_group_values)
- `usage_invoices` (frames.INVOICES)

Rules (METRONOME.md D4-D6, rules 4, 5, 7, 9, 21):
- each window is priced at the rate in effect at its start (half-open), matched on rate card,
  product and the exact pricing group values;
- every rate is a list of graduated tiers [tier_start, tier_end); a FLAT rate is one open tier;
- the tier position accumulates per invoice, product and pricing group values over the windows
  in time order (ties: line order, then window order), so a window crossing a tier edge is split
  into one part per tier, each part `quantity x tier price`, exactly;
- a line item is an input line's parts of one rate period and one tier.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bulk_rating.frames import canonical_json
from bulk_rating.models import RateCard

FLAT_TIER = 0


def windows_sql(*, table: bool) -> str:
    """The kernel's input, `usage_windows`, from the validated `usage_rows`.

    A JSON batch brings its invoice and line indexes; a usage table's rows find theirs in
    `_table_lines` (assemble.py) by contract, period, product, group values and granularity.
    """
    if not table:
        return """
SELECT u.invoice_index, u.line_index, u.window_index, u.granularity, u.inclusive_start, u.exclusive_end,
       u.quantity, u.product_id, u.pricing_group_values, u.credit_type_id, c.rate_card_id
FROM usage_rows u JOIN _contract_refs c ON c.contract_id = u.contract_id
"""
    return """
SELECT l.invoice_index, l.line_index, u.row AS window_index, u.granularity, u.inclusive_start, u.exclusive_end,
       u.quantity, u.product_id, u.pricing_group_values, l.credit_type_id, c.rate_card_id
FROM usage_rows u
JOIN _contract_refs c ON c.contract_id = u.contract_id
LEFT JOIN _periods p
  ON p.contract_id = u.contract_id AND p.inclusive_start <= u.inclusive_start AND u.inclusive_start < p.exclusive_end
JOIN _table_lines l
  ON l.contract_id = u.contract_id AND l.inclusive_start = coalesce(u.invoice_start, p.inclusive_start)
 AND l.product_id = u.product_id AND l.granularity = u.granularity
 AND coalesce(l.pricing_group_values, '') = coalesce(u.pricing_group_values, '')
 AND coalesce(l.presentation_group_values, '') = coalesce(u.presentation_group_values, '')
"""


RATED_WINDOWS = """
SELECT w.*, r.rate_index, r.rate_type, r.price
FROM usage_windows w
JOIN rates r
  ON r.rate_card_id = w.rate_card_id
 AND r.product_id = w.product_id
 AND coalesce(r.pricing_group_values, '') = coalesce(w.pricing_group_values, '')
 AND r.starting_at <= w.inclusive_start
 AND (r.ending_before IS NULL OR w.inclusive_start < r.ending_before)
"""

# One row per window and tier it reaches. A FLAT window is its quantity times the price; a
# TIERED window needs `position_end`, the cumulative quantity of its (invoice, product, pricing
# group) up to and including it, and is split at tier edges.
PRICED_WINDOWS = f"""
WITH rated AS ({RATED_WINDOWS}),
flat AS (
    SELECT invoice_index, line_index, rate_index, {FLAT_TIER} AS tier_key, inclusive_start AS window_start,
           quantity, quantity * price AS amount
    FROM rated WHERE rate_type = 'FLAT'
),
positioned AS (
    SELECT *, sum(quantity) OVER (
        PARTITION BY invoice_index, product_id, pricing_group_values
        ORDER BY inclusive_start, line_index, window_index
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS position_end
    FROM rated WHERE rate_type = 'TIERED'
),
parts AS (
    SELECT p.invoice_index, p.line_index, p.rate_index, t.tier_key, p.inclusive_start, p.quantity,
           p.position_end - p.quantity AS position_start, t.tier_start, t.tier_end, t.price,
           least(p.position_end, coalesce(t.tier_end, p.position_end))
             - greatest(p.position_end - p.quantity, t.tier_start) AS portion
    FROM positioned p
    JOIN _rate_tiers t ON t.rate_card_id = p.rate_card_id AND t.rate_index = p.rate_index
),
tiered AS (
    SELECT invoice_index, line_index, rate_index, tier_key, inclusive_start AS window_start,
           portion AS quantity, portion * price AS amount
    FROM parts
    WHERE portion > 0
       -- a zero window still gets its row (analysts ask for windows without usage): in the tier
       -- the position is in, the lower one at an edge
       OR (quantity = 0 AND ((position_start = 0 AND tier_start = 0)
            OR (tier_start < position_start AND (tier_end IS NULL OR position_start <= tier_end))))
)
SELECT $run_id AS run_id, * FROM flat
UNION ALL
SELECT $run_id AS run_id, * FROM tiered
"""

INVOICES = """
SELECT invoice_id(i.contract_id, i.credit_type_id, i.inclusive_start, i.exclusive_end) AS invoice_id,
       i.customer_id, i.contract_id, i.credit_type_id, i.inclusive_start, i.exclusive_end, i.issued_at,
       'FINALIZED', 'USAGE', 'HISTORICAL_IMPORT', coalesce(t.total, 0), coalesce(t.total, 0),
       i.billable_status, i.custom_fields::JSON, $run_id, i.invoice_index
FROM usage_invoices i
LEFT JOIN (
    SELECT invoice_index, sum(amount) AS total FROM _priced_windows WHERE run_id = $run_id GROUP BY ALL
) t USING (invoice_index)
"""

LINE_ITEMS = """
WITH items AS (
    SELECT invoice_index, line_index, rate_index, tier_key, sum(quantity) AS quantity, sum(amount) AS total
    FROM _priced_windows WHERE run_id = $run_id GROUP BY ALL
)
SELECT i.invoice_id,
       stable_id(i.invoice_id || '|' || a.line_index || '|' || a.rate_index || '|' || a.tier_key) AS line_item_id,
       row_number() OVER (PARTITION BY a.invoice_index
                          ORDER BY a.line_index, r.starting_at, a.tier_key) - 1 AS position,
       l.product_id, p.name, 'usage', i.credit_type_id, a.quantity, t.price, a.total,
       greatest(l.inclusive_start, r.starting_at),
       least(l.exclusive_end, coalesce(r.ending_before, l.exclusive_end)),
       nullif(a.tier_key, 0), CASE WHEN a.tier_key > 0 THEN t.tier_start END,
       CASE WHEN a.tier_key > 0 THEN t.tier_end - t.tier_start END,
       l.granularity, l.pricing_group_values, l.presentation_group_values,
       $run_id, a.invoice_index, a.line_index, a.rate_index, a.tier_key
FROM items a
JOIN usage_lines l USING (invoice_index, line_index)
JOIN invoices i ON i.run_id = $run_id AND i.invoice_index = a.invoice_index
JOIN products p ON p.product_id = l.product_id
JOIN contracts c ON c.contract_id = i.contract_id
JOIN rates r ON r.rate_card_id = c.rate_card_id AND r.rate_index = a.rate_index
JOIN _rate_tiers t ON t.rate_card_id = c.rate_card_id AND t.rate_index = a.rate_index AND t.tier_key = a.tier_key
"""


def rate_rows(card: RateCard) -> list[dict[str, Any]]:
    """The rows of `rates` for one rate card."""
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


def tier_rows(card: RateCard) -> list[dict[str, Any]]:
    """The rows of `_rate_tiers`: each tier as [tier_start, tier_end) of period quantity."""
    rows: list[dict[str, Any]] = []
    for n, rate in enumerate(card.rates):
        if rate.rate_type == "FLAT":
            rows.append(_tier(card.id, n, FLAT_TIER, Decimal(0), None, rate.price))
            continue
        start = Decimal(0)
        tiers = rate.tiers or []
        for level, tier in enumerate(tiers, start=1):
            # The last tier is open whatever its size says: usage is never left unpriced.
            last = level == len(tiers)
            end = None if last or tier.size is None else start + tier.size
            rows.append(_tier(card.id, n, level, start, end, tier.price))
            if end is None:
                break
            start = end
    return rows


def _tier(
    card_id: str,
    rate_index: int,
    key: int,
    start: Decimal,
    end: Decimal | None,
    price: Decimal | None,
) -> dict[str, Any]:
    return {
        "rate_card_id": card_id,
        "rate_index": rate_index,
        "tier_key": key,
        "tier_start": start,
        "tier_end": end,
        "price": price,
    }
