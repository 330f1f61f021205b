"""The column names and dtypes of every frame passed between stages.

A JSON batch (invoices.json, invoices.ndjson) is read into three long frames:
- invoices: one row per historical invoice;
- lines:    one row per usage line item;
- windows:  one row per `subtotals_with_quantity` window.
Every input, JSON or table, then becomes the same USAGE_ROWS (one row per quantity to price; a
plain `quantity` line is one row with granularity NONE), which validation and pricing read in
DuckDB. Quantities travel as exact decimal text until checked; then they are DECIMAL(38, 9).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from bulk_rating.money import EFFECTIVE_PRICE_SCALE, PRICE_SCALE, QUANTITY_SCALE

UTC_TIME = pl.Datetime("us", "UTC")
QUANTITY = pl.Decimal(38, QUANTITY_SCALE)
PRICE = pl.Decimal(38, PRICE_SCALE)
EFFECTIVE_PRICE = pl.Decimal(38, EFFECTIVE_PRICE_SCALE)

INVOICES: dict[str, pl.DataType] = {
    "source": pl.String(),
    "invoice_index": pl.Int64(),
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "credit_type_id": pl.String(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
    "issued_at": UTC_TIME,
    "billable_status": pl.String(),
    "granularity": pl.String(),  # HOUR, DAY or null
    "custom_fields": pl.String(),  # canonical JSON object
}

LINES: dict[str, pl.DataType] = {
    "invoice_index": pl.Int64(),
    "line_index": pl.Int64(),
    "product_id": pl.String(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
    "quantity": pl.String(),  # the plain `quantity`, exact text, or null
    "subtotal_count": pl.Int64(),  # null when the line has no `subtotals_with_quantity`
    "pricing_group_values": pl.String(),  # canonical JSON object or null
    "presentation_group_values": pl.String(),  # canonical JSON object or null
}

WINDOWS: dict[str, pl.DataType] = {
    "invoice_index": pl.Int64(),
    "line_index": pl.Int64(),
    "window_index": pl.Int64(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
    "quantity": pl.String(),
}

# Lines as pricing and the store read them (`usage_lines`).
STORE_LINES: dict[str, pl.DataType] = {
    "line_key": pl.UInt64(),
    "invoice_index": pl.Int64(),
    "line_index": pl.Int64(),
    "product_id": pl.String(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
    "granularity": pl.String(),  # HOUR, DAY or NONE
    "pricing_group_values": pl.String(),
    "presentation_group_values": pl.String(),
}

# One row per quantity to price, whatever the input: a usage table row, a JSON subtotal window,
# or a JSON plain-quantity line (granularity NONE). The JSON path fills the indexes; a usage
# table fills `row` and, when timestamps came as text, the `*_text` columns. load.rows_sql and
# load.JSON_ROWS_SQL add the parsed `quantity` and the resolved `granularity`.
USAGE_ROWS: dict[str, pl.DataType] = {
    "source": pl.String(),
    "row": pl.Int64(),
    "invoice_index": pl.Int64(),
    "line_index": pl.Int64(),
    "window_index": pl.Int64(),
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "product_id": pl.String(),
    "credit_type_id": pl.String(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
    "invoice_start": UTC_TIME,
    "invoice_end": UTC_TIME,
    "issue_date": UTC_TIME,
    "start_text": pl.String(),
    "end_text": pl.String(),
    "invoice_start_text": pl.String(),
    "invoice_end_text": pl.String(),
    "issue_text": pl.String(),
    "quantity_raw": pl.String(),
    "granularity_given": pl.String(),
    "pricing_group_values": pl.String(),
    "presentation_group_values": pl.String(),
    "billable_status": pl.String(),
}

ISSUES: dict[str, pl.DataType] = {
    "source": pl.String(),
    "row": pl.Int64(),  # row of a table file; null for JSON input
    "invoice_index": pl.Int64(),
    "line_index": pl.Int64(),
    "window_index": pl.Int64(),
    "field": pl.String(),
    "code": pl.String(),
    "message": pl.String(),
    # rows the entry stands for: 1, or on the entry that counts a rule's unlisted rows, their number
    "count": pl.Int64(),
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def from_columns(columns: dict[str, list[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame of `schema` from Python values by column. UTC moments go in as microseconds since
    the epoch: polars converts aware datetimes about eight times slower (seconds of a run at
    192,998 contracts)."""
    return pl.DataFrame(
        {
            name: [None if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
            if schema[name] == UTC_TIME
            else values
            for name, values in columns.items()
        },
        schema={name: pl.Int64() if t == UTC_TIME else t for name, t in schema.items()},
    ).with_columns(pl.col(name).cast(UTC_TIME) for name, t in schema.items() if t == UTC_TIME)


def from_rows(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame of `schema` from rows of Python values (from_columns)."""
    return from_columns({name: [row.get(name) for row in rows] for name in schema}, schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast `frame` to `schema`, failing loudly on a missing column."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def issues(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` as ISSUES; an entry without a count stands for one row."""
    if "count" not in frame.columns:
        frame = frame.with_columns(count=pl.lit(1))
    return conform(frame.with_columns(pl.col("count").fill_null(1)), ISSUES)


def rows_counted(issues: pl.DataFrame) -> int:
    """The rows an ISSUES frame stands for: its listed entries and the rows they count."""
    return int(issues["count"].sum()) if issues.height else 0


def canonical_json(value: dict[str, Any] | None) -> str | None:
    """The one text form of a JSON object used for matching and storing (sorted keys)."""
    if not value:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Catalog tables as they are written to the store (run_id is added by the pipeline).
CATALOG_TABLES: dict[str, dict[str, pl.DataType]] = {
    "credit_types": {"credit_type_id": pl.String(), "name": pl.String(), "body": pl.String()},
    "customers": {
        "customer_id": pl.String(),
        "name": pl.String(),
        "custom_fields": pl.String(),
        "body": pl.String(),
    },
    "products": {
        "product_id": pl.String(),
        "name": pl.String(),
        "type": pl.String(),
        "tags": pl.List(pl.String()),
        "pricing_group_key": pl.List(pl.String()),
        "presentation_group_key": pl.List(pl.String()),
        "body": pl.String(),
    },
    "rate_cards": {
        "rate_card_id": pl.String(),
        "name": pl.String(),
        "description": pl.String(),
        "fiat_credit_type_id": pl.String(),
        "body": pl.String(),
    },
    "rates": {
        "rate_card_id": pl.String(),
        "rate_index": pl.Int32(),
        "product_id": pl.String(),
        "starting_at": UTC_TIME,
        "ending_before": UTC_TIME,
        "entitled": pl.Boolean(),
        "rate_type": pl.String(),
        "price": PRICE,
        "credit_type_id": pl.String(),
        "pricing_group_values": pl.String(),
    },
    "contract_rates": {
        "rate_key": pl.Int64(),
        "contract_id": pl.String(),
        "rate_index": pl.Int32(),
        "list_rate_index": pl.Int32(),
        "product_id": pl.String(),
        "pricing_group_values": pl.String(),
        "starting_at": UTC_TIME,
        "ending_before": UTC_TIME,
        "entitled": pl.Boolean(),
        "rate_type": pl.String(),
        "credit_type_id": pl.String(),
        "continues": pl.Boolean(),
    },
    "_contract_rate_tiers": {
        "rate_key": pl.Int64(),
        "tier_key": pl.Int32(),
        "tier_start": QUANTITY,
        "tier_end": QUANTITY,
        "price": EFFECTIVE_PRICE,
    },
    "contracts": {
        "contract_id": pl.String(),
        "customer_id": pl.String(),
        "rate_card_id": pl.String(),
        "starting_at": UTC_TIME,
        "ending_before": UTC_TIME,
        "frequency": pl.String(),
        "day": pl.String(),
        "billing_anchor_date": UTC_TIME,
        "invoice_generation_starting_at": UTC_TIME,
        "billing_provider": pl.String(),
        "delivery_method": pl.String(),
        "body": pl.String(),
    },
}

CATALOG_TABLES["commit_segments"] = {
    "contract_id": pl.String(),
    "customer_id": pl.String(),
    "commit_or_credit_id": pl.String(),
    "kind": pl.String(),
    "name": pl.String(),
    "product_id": pl.String(),
    "priority": QUANTITY,
    "zero_cost_basis": pl.Boolean(),
    "applicable_products": pl.Int32(),
    "applicable_product_ids": pl.List(pl.String()),
    "applicable_product_tags": pl.List(pl.String()),
    "segment_id": pl.String(),
    "credit_type_id": pl.String(),
    "amount": pl.Decimal(38, 23),
    "starting_at": UTC_TIME,
    "ending_before": UTC_TIME,
}
CATALOG_TABLES["balance_ledger_entries"] = {
    "entry_id": pl.String(),
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "commit_or_credit_id": pl.String(),
    "kind": pl.String(),
    "segment_id": pl.String(),
    "type": pl.String(),
    "amount": pl.Decimal(38, 23),
    "invoice_id": pl.String(),
    "timestamp": UTC_TIME,
}

# One application of a commit or credit segment to an invoice (balances.allocate).
APPLICATIONS: dict[str, pl.DataType] = {
    "invoice_index": pl.Int64(),
    "invoice_id": pl.String(),
    "segment_id": pl.String(),
    "commit_or_credit_id": pl.String(),
    "kind": pl.String(),
    "name": pl.String(),
    "product_id": pl.String(),
    "credit_type_id": pl.String(),
    "applied": pl.Decimal(38, 23),
}

# What validation and pricing need to know of a contract.
CONTRACT_REFS: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "customer_id": pl.String(),
    "rate_card_id": pl.String(),
    "starting_at": UTC_TIME,
    "ending_before": UTC_TIME,
    "generation_starts_at": UTC_TIME,
}

DRAFTS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "credit_type_id": pl.String(),
    "inclusive_start": UTC_TIME,
    "exclusive_end": UTC_TIME,
}
