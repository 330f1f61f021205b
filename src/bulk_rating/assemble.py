"""Checked lines -> the invoices and lines pricing and the store read (a usage table's history:
as SQL run where its checked lines are kept; a DRAFT's few lines and a JSON batch: frames).

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

PERIOD_WEEKS: dict[str, pl.DataType] = {
    "contract_id": pl.String(),
    "week": pl.Int64(),
    "inclusive_start": frames.UTC_TIME,
    "exclusive_end": frames.UTC_TIME,
    "draft": pl.Boolean(),
}


# What a contract's billing periods depend on (schedule.Terms), as columns of its stored row
# (frames.CATALOG_TABLES["contracts"]) with its generation start resolved.
TERMS_COLUMNS = list(schedule.Terms._fields)


def contract_terms_sql(contracts: str) -> str:
    """Each contract of `contracts` (a relation of contract rows) with its schedule.Terms."""
    return f"""
SELECT contract_id, starting_at, ending_before, frequency, day, billing_anchor_date,
       coalesce(invoice_generation_starting_at, starting_at) AS generation_starts_at
FROM {contracts}"""


def period_weeks(contract_terms: pl.DataFrame, drafts: pl.DataFrame) -> pl.DataFrame:
    """Each contract's importable billing periods (those ending by generation start) and its
    DRAFT periods (`draft`), one row per UTC week they touch (resolve.WEEK_US), so a row finds its
    period by an equality join on (contract, week) and its range; a week holding a period
    boundary has a row for each side. (By day, the table was seven times larger, and at 100M
    rows each scan's join to it about 0.3 s slower.) `contract_terms`: contract_id and
    TERMS_COLUMNS (contract_terms_sql). Periods are computed once per terms, which contracts
    share: at 192,998 stored contracts, reading them back as models took 10 s of a run."""
    distinct = contract_terms.select(TERMS_COLUMNS).unique().sort(TERMS_COLUMNS, nulls_last=False)
    index, starts, ends = [], [], []  # columns, not a dict a period
    for n, row in enumerate(distinct.iter_rows()):
        for p in schedule.importable_periods(schedule.Terms(*row)):
            index.append(n)
            starts.append(p.inclusive_start)
            ends.append(p.exclusive_end)
    periods = frames.from_columns(
        {"terms_index": index, "inclusive_start": starts, "exclusive_end": ends},
        {
            "terms_index": pl.UInt32(),  # as with_row_index numbers them
            "inclusive_start": frames.UTC_TIME,
            "exclusive_end": frames.UTC_TIME,
        },
    )
    owned = (
        contract_terms.join(
            distinct.with_row_index("terms_index"), on=TERMS_COLUMNS, nulls_equal=True
        )
        .select("contract_id", "terms_index")
        .join(periods, on="terms_index")
        .select("contract_id", "inclusive_start", "exclusive_end", draft=pl.lit(False))
    )
    every = pl.concat(
        [
            owned,
            drafts.select("contract_id", "inclusive_start", "exclusive_end", draft=pl.lit(True)),
        ]
    )
    week = _week_of(pl.col("inclusive_start").dt.epoch("us"))
    last = _week_of(pl.col("exclusive_end").dt.epoch("us") - 1)
    return frames.conform(
        every.with_columns(week=pl.int_ranges(week, last + 1)).explode("week"), PERIOD_WEEKS
    )


def _week_of(microseconds: pl.Expr) -> pl.Expr:
    """The week rows are joined on (`epoch_us(x) // WEEK_US` in DuckDB, which rounds toward
    zero; polars' `//` rounds down): the same numbers before 1970, where they differ."""
    return (microseconds.abs() // resolve.WEEK_US) * microseconds.sign()


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


def _nulls_first(columns: Sequence[str]) -> str:
    return ", ".join(f"{column} NULLS FIRST" for column in columns)


# A usage table's lines (frames.STORE_LINES) from its checked lines outside DRAFT periods
# (`_lines`), numbered as table_invoices_and_lines numbers them: invoices in the order of their
# key, lines in an invoice in LINE_ORDER, nulls first. Made where the lines are (at 1B rows, 4.2M
# lines with 36-character ids: a copy in Python was the run's peak of memory).
TABLE_LINES_SQL = f"""
SELECT line_key,
       dense_rank() OVER (ORDER BY {_nulls_first(_INVOICE_KEY)}) - 1 AS invoice_index,
       row_number() OVER (PARTITION BY {", ".join(_INVOICE_KEY)}
                          ORDER BY {_nulls_first(_LINE_ORDER)}) - 1 AS line_index,
       product_id, invoice_period_start AS inclusive_start, invoice_period_end AS exclusive_end,
       granularity, pricing_group_values, presentation_group_values
FROM _lines
WHERE NOT draft"""

# The invoices of TABLE_LINES_SQL's lines, as table_invoices_and_lines makes them before they are
# checked (`invoices_checked`): each named by the first file holding its rows (`_sources`); what
# must be one value per invoice taken from its first line, and whether its lines disagree (a
# null is a value of its own).
TABLE_INVOICES_SQL = f"""
SELECT dense_rank() OVER (ORDER BY {_nulls_first(_INVOICE_KEY)}) - 1 AS invoice_index,
       s.source, i.file_index, customer_id, contract_id, invoice_credit_type_id AS credit_type_id,
       invoice_period_start AS inclusive_start, invoice_period_end AS exclusive_end, issued_at,
       issue_dates_differ, billable_status, billable_differs
FROM (
    SELECT {", ".join(_INVOICE_KEY)}, min(file_index) AS file_index,
           first(customer_id ORDER BY {_nulls_first(_LINE_ORDER)}) AS customer_id,
           max(issued_at) AS issued_at,
           bool_or(issue_dates_differ)
             OR count(DISTINCT issued_at) + bool_or(issued_at IS NULL)::INTEGER > 1
             AS issue_dates_differ,
           first(billable_status ORDER BY {_nulls_first(_LINE_ORDER)}) AS billable_status,
           bool_or(billable_differs)
             OR count(DISTINCT billable_status) + bool_or(billable_status IS NULL)::INTEGER > 1
             AS billable_differs
    FROM _lines
    WHERE NOT draft
    GROUP BY {", ".join(_INVOICE_KEY)}
) i
LEFT JOIN _sources s ON s.file_index = i.file_index
ORDER BY invoice_index"""


def table_invoices_and_lines(
    checked: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Number the invoices (by contract, credit type, period) and lines of a usage table's checked
    lines held here (a DRAFT's; a run's history is numbered where its lines are kept:
    TABLE_LINES_SQL, TABLE_INVOICES_SQL). An invoice is named by the first source of its rows.

    Returns the invoices (frames.INVOICES), the lines (frames.STORE_LINES) and the issues of
    rows that disagree on what must be one value per invoice.
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
    lines = ordered.rename(
        {"invoice_period_start": "inclusive_start", "invoice_period_end": "exclusive_end"}
    )
    invoices_frame, found = invoices_checked(invoices)
    return invoices_frame, frames.conform(lines, frames.STORE_LINES), found


def invoices_checked(invoices: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A usage table's invoices as made from their lines (TABLE_INVOICES_SQL's columns) ->
    the invoices (frames.INVOICES) and the issues of those whose rows disagree on what must be
    one value per invoice."""
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
    return invoices_frame, found


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
