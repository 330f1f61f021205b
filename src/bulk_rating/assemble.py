"""Checked lines -> the invoices and lines frames pricing and the store read.

A usage table's rows are grouped into invoices by their invoice columns when given, else by the
contract's billing periods (only those it does not generate itself): one invoice per contract,
period and credit type (the rate's, unless a credit_type_id column says it). A line is the rows
of one invoice with the same product, pricing and presentation group values and granularity.
A JSON batch brings its own invoices and lines; they only get their line keys here.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from bulk_rating import frames, resolve, schedule
from bulk_rating.models import Contract

PERIOD_WEEKS: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "week": pl.Int64(),
    "inclusive_start": frames.UTC_TIME,
    "exclusive_end": frames.UTC_TIME,
    "draft": pl.Boolean(),
}


def period_weeks(contracts: Sequence[Contract], drafts: pl.DataFrame) -> pl.DataFrame:
    """Each contract's importable billing periods (those ending by generation start) and its
    DRAFT periods (`draft`), one row per UTC week they touch (resolve.WEEK_US), so a row finds its
    period by an equality join on (contract, week) and its range; a week holding a period
    boundary has a row for each side. (By day, the table was seven times larger, and at 100M
    rows each scan's join to it about 0.3 s slower.)"""
    ids, starts, ends = [], [], []  # columns, not a dict a period: 192,998 contracts
    for c in contracts:
        for p in schedule.periods(c, until=c.generation_starts_at):
            ids.append(c.id)
            starts.append(p.inclusive_start)
            ends.append(p.exclusive_end)
    periods = pl.concat(
        [
            frames.from_columns(
                {"contract_id": ids, "inclusive_start": starts, "exclusive_end": ends},
                {k: v for k, v in PERIOD_WEEKS.items() if k not in ("week", "draft")},
            ).with_columns(draft=pl.lit(False)),
            drafts.select("contract_id", "inclusive_start", "exclusive_end", draft=pl.lit(True)),
        ]
    )
    week = pl.col("inclusive_start").dt.epoch("us") // resolve.WEEK_US
    last = (pl.col("exclusive_end").dt.epoch("us") - 1) // resolve.WEEK_US
    return frames.conform(
        periods.with_columns(week=pl.int_ranges(week, last + 1)).explode("week"), PERIOD_WEEKS
    )


def keys_are_unique(checked: pl.DataFrame, *, table: bool) -> bool:
    """Line keys and tier-group keys are 64-bit hashes: prove they name distinct things here."""
    invoice = (
        ["invoice_index"]
        if not table
        else ["contract_id", "invoice_period_start", "invoice_credit_type_id"]
    )
    group = [*invoice, "product_id", "pricing_group_values"]
    # tier groups: their key and a second, independent hash of the same columns pair one to one
    # (as lines' keys and checks do; comparing the columns themselves held a copy of them, the
    # run's peak of memory at 100M rows)
    pairs = checked.select("tier_group", pl.struct(group).hash(seed=7).alias("check")).unique()
    return (
        not checked["key_collision"].any()
        and checked["line_key"].n_unique() == checked.height
        and pairs["tier_group"].n_unique() == pairs.height
        and pairs["check"].n_unique() == pairs.height
    )


_INVOICE_KEY = (
    "contract_id",
    "invoice_credit_type_id",
    "invoice_period_start",
    "invoice_period_end",
)
_LINE_ORDER = ("product_id", "pricing_group_values", "presentation_group_values", "granularity")
# What a table's invoices and lines are made of (of the checked lines): every copy made of them
# is of these columns only (at 100M rows the lines are 400k rows, and the sort's copy was the
# run's peak of memory; at 1B, 4.2M lines).
LINE_FIELDS = [
    *_INVOICE_KEY,
    *_LINE_ORDER,
    "line_key",
    "source",
    "file_index",
    "customer_id",
    "issued_at",
    "issue_dates_differ",
    "billable_status",
    "billable_differs",
]


def table_invoices_and_lines(
    checked: pl.DataFrame, sources: Sequence[str] = ()
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Number a usage table's invoices (by contract, credit type, period) and their lines.

    Returns the invoices (frames.INVOICES), the lines (frames.STORE_LINES) and the issues of
    rows that disagree on what must be one value per invoice. `sources`: the table's files, by
    the `file_index` each line carries (an invoice is named by the first file holding its rows).
    """
    invoice_key = list(_INVOICE_KEY)
    line_order = list(_LINE_ORDER)
    ordered = (
        checked.select(LINE_FIELDS)
        .sort([*invoice_key, *line_order], nulls_last=False)
        .with_columns(invoice_index=pl.struct(invoice_key).rank("dense").cast(pl.Int64) - 1)
        .with_columns(line_index=pl.int_range(pl.len(), dtype=pl.Int64).over("invoice_index"))
    )
    invoices = ordered.group_by("invoice_index", maintain_order=True).agg(
        pl.col("source").min(),
        pl.col("file_index").min(),
        pl.col("customer_id").first(),
        pl.col("contract_id").first(),
        pl.col("invoice_credit_type_id").first().alias("credit_type_id"),
        pl.col("invoice_period_start").first().alias("inclusive_start"),
        pl.col("invoice_period_end").first().alias("exclusive_end"),
        pl.col("issued_at").max(),
        ((pl.col("issue_dates_differ").any()) | (pl.col("issued_at").n_unique() > 1)).alias(
            "issue_dates_differ"
        ),
        pl.col("billable_status").first(),
        ((pl.col("billable_differs").any()) | (pl.col("billable_status").n_unique() > 1)).alias(
            "billable_differs"
        ),
    )
    if sources:
        names = dict(enumerate(sources))
        invoices = invoices.with_columns(
            source=pl.col("file_index").replace_strict(names, return_dtype=pl.String())
        )
    found = pl.concat(
        [
            _issue(
                invoices.filter(pl.col("issue_dates_differ")),
                "issue_date",
                "rows of one invoice disagree on issue_date",
            ),
            _issue(
                invoices.filter(pl.col("billable_differs")),
                "billable_status",
                "rows of one invoice disagree on billable_status",
            ),
        ]
    )
    invoices_frame = frames.conform(
        invoices.with_columns(
            issued_at=pl.coalesce("issued_at", "exclusive_end"),
            granularity=pl.lit(None, pl.String),
            custom_fields=pl.lit("{}"),
        ),
        frames.INVOICES,
    )
    lines = ordered.rename(
        {"invoice_period_start": "inclusive_start", "invoice_period_end": "exclusive_end"}
    )
    return invoices_frame, frames.conform(lines, frames.STORE_LINES), found


def json_lines(lines: pl.DataFrame, invoices: pl.DataFrame, checked: pl.DataFrame) -> pl.DataFrame:
    """A JSON batch's lines as the store keeps them: a plain quantity is granularity NONE."""
    return frames.conform(
        lines.join(invoices.select("invoice_index", "granularity"), on="invoice_index")
        .join(
            checked.select("invoice_index", "line_index", "line_key"),
            on=["invoice_index", "line_index"],
            how="left",
        )
        .with_columns(
            granularity=pl.when(pl.col("quantity").is_not_null())
            .then(pl.lit("NONE"))
            .otherwise(pl.col("granularity"))
        ),
        frames.STORE_LINES,
    )


def _issue(rows: pl.DataFrame, field: str, message: str) -> pl.DataFrame:
    return rows.select(
        source=pl.col("source"),
        row=pl.lit(None, pl.Int64),
        invoice_index=pl.col("invoice_index"),
        line_index=pl.lit(None, pl.Int64),
        window_index=pl.lit(None, pl.Int64),
        field=pl.lit(field),
        code=pl.lit("INVALID_VALUE"),
        message=pl.format(
            "invoice {} of contract `{}`: " + message,
            pl.col("invoice_index"),
            pl.col("contract_id"),
        ),
    )
