"""Usage-table rows -> invoices and lines, the same frames a JSON batch gives.

Rows are grouped into invoices by their invoice columns when given, else by the contract's
billing periods (only those the contract does not generate itself); one invoice per contract,
period and credit type (the rate's, unless a credit_type_id column says it). A line is the rows
of one invoice with the same product, pricing and presentation group values and granularity.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from bulk_rating import frames, schedule
from bulk_rating.models import Contract


def periods_frame(contracts: Sequence[Contract]) -> pl.DataFrame:
    """Each contract's importable billing periods: those that end by generation start."""
    rows = [
        {
            "contract_id": c.id,
            "inclusive_start": p.inclusive_start,
            "exclusive_end": p.exclusive_end,
        }
        for c in contracts
        for p in schedule.periods(c, until=c.generation_starts_at)
    ]
    return pl.DataFrame(rows, schema=PERIODS)


PERIODS: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "inclusive_start": frames.UTC_TIME,
    "exclusive_end": frames.UTC_TIME,
}


def lines_sql(*, has_credit_type: bool) -> str:
    """The distinct lines of the usage rows, with what their invoice needs."""
    credit = "u.credit_type_id" if has_credit_type else "r.credit_type_id"
    rate_join = (
        ""
        if has_credit_type
        else """
LEFT JOIN rates r
  ON r.rate_card_id = c.rate_card_id AND r.product_id = u.product_id
 AND coalesce(r.pricing_group_values, '') = coalesce(u.pricing_group_values, '')
 AND r.starting_at <= u.inclusive_start AND (r.ending_before IS NULL OR u.inclusive_start < r.ending_before)"""
    )
    return f"""
SELECT u.contract_id, any_value(u.customer_id) AS customer_id,
       coalesce(u.invoice_start, p.inclusive_start) AS inclusive_start,
       coalesce(u.invoice_end, p.exclusive_end) AS exclusive_end,
       u.product_id, u.pricing_group_values, u.presentation_group_values, u.granularity,
       min({credit}) AS credit_type_id, count(DISTINCT {credit}) AS credit_types,
       max(u.issue_date) AS issued_at, count(DISTINCT u.issue_date) AS issue_dates,
       coalesce(min(u.billable_status), 'billable') AS billable_status,
       count(DISTINCT u.billable_status) AS billable_statuses,
       min(u.source) AS source, min(u.row) AS first_row, count(*) AS rows
FROM usage_rows u
JOIN _contract_refs c ON c.contract_id = u.contract_id
LEFT JOIN _periods p
  ON p.contract_id = u.contract_id AND p.inclusive_start <= u.inclusive_start AND u.inclusive_start < p.exclusive_end{rate_join}
GROUP BY u.contract_id, 3, 4, u.product_id, u.pricing_group_values, u.presentation_group_values, u.granularity
"""


def invoices_and_lines(
    lines: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Number invoices (by contract, credit type, period) and their lines; name disagreements.

    Returns the invoices (frames.INVOICES), the lines as the store keeps them
    (frames.STORE_LINES), the lines with the keys rows find them by (frames.TABLE_LINES), and
    the issues found.
    """
    invoice_key = ["contract_id", "credit_type_id", "inclusive_start", "exclusive_end"]
    line_order = ["product_id", "pricing_group_values", "presentation_group_values", "granularity"]
    ordered = (
        lines.sort([*invoice_key, *line_order], nulls_last=False)
        .with_columns(
            invoice_index=pl.struct(invoice_key).rank("dense").cast(pl.Int64) - 1,
        )
        .with_columns(line_index=pl.int_range(pl.len(), dtype=pl.Int64).over("invoice_index"))
    )
    invoices = ordered.group_by("invoice_index", maintain_order=True).agg(
        pl.col("source").first(),
        pl.col("customer_id").first(),
        *[pl.col(c).first() for c in invoice_key],
        pl.col("issued_at").max(),
        ((pl.col("issue_dates").max() > 1) | (pl.col("issued_at").n_unique() > 1)).alias(
            "issue_dates_differ"
        ),
        pl.col("billable_status").first(),
        (
            (pl.col("billable_statuses").max() > 1) | (pl.col("billable_status").n_unique() > 1)
        ).alias("billable_differs"),
    )
    found = [
        _issue(
            ordered.filter(pl.col("credit_types") > 1),
            "CREDIT_TYPE_MISMATCH",
            "credit_type_id",
            "rows of one line are priced in more than one credit type",
        ),
        _issue(
            invoices.filter(pl.col("issue_dates_differ")),
            "INVALID_VALUE",
            "issue_date",
            "rows of one invoice disagree on issue_date",
        ),
        _issue(
            invoices.filter(pl.col("billable_differs")),
            "INVALID_VALUE",
            "billable_status",
            "rows of one invoice disagree on billable_status",
        ),
    ]
    invoices_frame = frames.conform(
        invoices.with_columns(
            issued_at=pl.coalesce("issued_at", "exclusive_end"),
            granularity=pl.lit(None, pl.String),
            custom_fields=pl.lit("{}"),
        ),
        frames.INVOICES,
    )
    return (
        invoices_frame,
        frames.conform(ordered, frames.STORE_LINES),
        frames.conform(ordered, frames.TABLE_LINES),
        pl.concat(found),
    )


def _issue(rows: pl.DataFrame, code: str, field: str, message: str) -> pl.DataFrame:
    return rows.select(
        source=pl.col("source"),
        row=pl.lit(None, pl.Int64),
        invoice_index=pl.col("invoice_index"),
        line_index=pl.col("line_index") if "line_index" in rows.columns else pl.lit(None, pl.Int64),
        window_index=pl.lit(None, pl.Int64),
        field=pl.lit(field),
        code=pl.lit(code),
        message=pl.format(
            "invoice {} of contract `{}`: " + message,
            pl.col("invoice_index"),
            pl.col("contract_id"),
        ),
    )
