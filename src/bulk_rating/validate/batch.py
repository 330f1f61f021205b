"""A JSON batch's invoices, lines and windows, and any run's invoices: rules as Polars expressions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from bulk_rating import frames


@dataclass(frozen=True)
class References:
    """What invoices may refer to: the stored catalog and contracts plus those of this run."""

    customer_ids: pl.DataFrame  # customer_id
    credit_type_ids: pl.DataFrame  # credit_type_id
    product_ids: pl.DataFrame  # product_id
    contracts: pl.DataFrame  # contract_id, customer_id, rate_card_id, starting_at, ending_before,
    #                          generation_starts_at
    stored_invoices: pl.DataFrame  # invoice_id, contract_id, credit_type_id, inclusive_start,
    #                                exclusive_end
    rate_card_ids: pl.DataFrame  # rate_card_id: stored and given
    product_tags: set[str]  # every tag a stored or given product has


def issue_frame(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    return frames.issues(pl.DataFrame(list(rows), schema=frames.ISSUES))


def _rows(
    frame: pl.DataFrame, condition: pl.Expr, code: str, field: str, message: pl.Expr
) -> pl.DataFrame:
    """The issue rows of one rule: the rows of `frame` where `condition` holds."""
    columns = frame.columns
    return frame.filter(condition).select(
        source=pl.col("source") if "source" in columns else pl.lit(None, pl.String),
        row=pl.col("row") if "row" in columns else pl.lit(None, pl.Int64),
        invoice_index=pl.col("invoice_index"),
        line_index=pl.col("line_index") if "line_index" in columns else pl.lit(None, pl.Int64),
        window_index=pl.col("window_index")
        if "window_index" in columns
        else pl.lit(None, pl.Int64),
        field=pl.lit(field),
        code=pl.lit(code),
        message=message,
        count=pl.lit(1, pl.Int64),
    )


def _ts(name: str) -> pl.Expr:
    """A timestamp column as messages show it: 2024-06-01T00:00:00Z."""
    return pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _where(frame: pl.DataFrame) -> pl.Expr:
    """`invoice 3, line 2, window 5`: how a message names the row."""
    parts = [pl.lit("invoice "), pl.col("invoice_index").cast(pl.String)]
    if "line_index" in frame.columns:
        parts += [pl.lit(", line "), pl.col("line_index").cast(pl.String)]
    if "window_index" in frame.columns:
        parts += [pl.lit(", window "), pl.col("window_index").cast(pl.String)]
    return pl.concat_str(parts)


def _period_rule(frame: pl.DataFrame, field: str) -> pl.DataFrame:
    return _rows(
        frame,
        pl.col("inclusive_start") >= pl.col("exclusive_end"),
        "INVALID_PERIOD",
        field,
        pl.format(
            "{}: starts at {} but ends at {}",
            _where(frame),
            _ts("inclusive_start"),
            _ts("exclusive_end"),
        ),
    )


def validate_invoices(invoices: pl.DataFrame, refs: References) -> pl.DataFrame:
    """Invoice-level problems: of a JSON batch, or of the invoices a usage table groups into."""
    return pl.concat(_invoice_rules(invoices, refs))


def _invoice_rules(invoices: pl.DataFrame, refs: References) -> list[pl.DataFrame]:
    where = _where(invoices)
    contracts = refs.contracts.rename({"customer_id": "contract_customer_id"})
    joined = invoices.join(contracts, on="contract_id", how="left")
    known_contract = pl.col("rate_card_id").is_not_null()
    found: list[pl.DataFrame] = [
        _period_rule(invoices, "exclusive_end_date"),
        _rows(
            invoices,
            ~pl.col("customer_id").is_in(refs.customer_ids["customer_id"].implode()),
            "UNKNOWN_CUSTOMER",
            "customer_id",
            pl.format("{}: unknown customer `{}`", where, pl.col("customer_id")),
        ),
        _rows(
            invoices,
            ~pl.col("credit_type_id").is_in(refs.credit_type_ids["credit_type_id"].implode()),
            "UNKNOWN_CREDIT_TYPE",
            "credit_type_id",
            pl.format("{}: unknown credit type `{}`", where, pl.col("credit_type_id")),
        ),
        _rows(
            joined,
            ~known_contract,
            "UNKNOWN_CONTRACT",
            "contract_id",
            pl.format("{}: unknown contract `{}`", where, pl.col("contract_id")),
        ),
        _rows(
            joined,
            known_contract & (pl.col("contract_customer_id") != pl.col("customer_id")),
            "CONTRACT_CUSTOMER_MISMATCH",
            "contract_id",
            pl.format(
                "{}: contract `{}` belongs to customer `{}`, not `{}`",
                where,
                pl.col("contract_id"),
                pl.col("contract_customer_id"),
                pl.col("customer_id"),
            ),
        ),
        _rows(
            joined,
            known_contract
            & (
                (pl.col("inclusive_start") < pl.col("starting_at"))
                | (pl.col("exclusive_end") > pl.col("ending_before")).fill_null(False)
            ),
            "INVOICE_OUTSIDE_CONTRACT",
            "inclusive_start_date",
            pl.format(
                "{}: period {} to {} is not within contract `{}` ({} to {})",
                where,
                _ts("inclusive_start"),
                _ts("exclusive_end"),
                pl.col("contract_id"),
                _ts("starting_at"),
                _ts("ending_before").fill_null("open"),
            ),
        ),
        _rows(
            joined,
            known_contract & (pl.col("exclusive_end") > pl.col("generation_starts_at")),
            "INVOICE_AFTER_GENERATION_START",
            "exclusive_end_date",
            pl.format(
                "{}: ends {}, after invoice_generation_starting_at {} of contract `{}`",
                where,
                _ts("exclusive_end"),
                _ts("generation_starts_at"),
                pl.col("contract_id"),
            ),
        ),
    ]
    # Overlaps, in the batch (D3: even identical invoices) and with stored invoices. The batch's
    # pairs are found on numbers, not on the invoices' ids: at 1B rows, 579k invoices make 1.7M
    # pairs of one contract and credit type, as text the run's peak of memory (a null key pairs
    # with nothing, as in a join on the ids)
    key = ["contract_id", "credit_type_id"]
    periods = invoices.select("source", "invoice_index", *key, "inclusive_start", "exclusive_end")
    spans = invoices.select(
        "invoice_index",
        "inclusive_start",
        "exclusive_end",
        same=pl.when(pl.all_horizontal(pl.col(key).is_not_null())).then(
            pl.struct(key).rank("dense")
        ),
    )
    pairs = (
        spans.join(spans, on="same", suffix="_other")
        .filter(
            (pl.col("invoice_index_other") < pl.col("invoice_index"))
            & (pl.col("inclusive_start") < pl.col("exclusive_end_other"))
            & (pl.col("inclusive_start_other") < pl.col("exclusive_end"))
        )
        .join(invoices.select("invoice_index", "source"), on="invoice_index")
    )
    found.append(
        _rows(
            pairs,
            pl.lit(True),
            "INVOICE_OVERLAP",
            "inclusive_start_date",
            pl.format(
                "{}: overlaps invoice {} of the same contract and credit type",
                _where(pairs),
                pl.col("invoice_index_other"),
            ),
        )
    )
    stored = periods.join(refs.stored_invoices, on=key, suffix="_stored").filter(
        (pl.col("inclusive_start") < pl.col("exclusive_end_stored"))
        & (pl.col("inclusive_start_stored") < pl.col("exclusive_end"))
    )
    found.append(
        _rows(
            stored,
            pl.lit(True),
            "INVOICE_OVERLAPS_STORED",
            "inclusive_start_date",
            pl.format(
                "{}: overlaps stored invoice `{}` ({} to {})",
                _where(stored),
                pl.col("invoice_id"),
                _ts("inclusive_start_stored"),
                _ts("exclusive_end_stored"),
            ),
        )
    )
    return found


def _line_rules(
    invoices: pl.DataFrame, lines: pl.DataFrame, refs: References
) -> list[pl.DataFrame]:
    lines = lines.join(
        invoices.select(
            "invoice_index",
            "source",
            "granularity",
            pl.col("inclusive_start").alias("invoice_start"),
            pl.col("exclusive_end").alias("invoice_end"),
        ),
        on="invoice_index",
    )
    where = _where(lines)
    has_quantity = pl.col("quantity").is_not_null()
    has_subtotals = pl.col("subtotal_count").is_not_null() & (pl.col("subtotal_count") > 0)
    return [
        _period_rule(lines, "exclusive_end_date"),
        _rows(
            lines,
            (pl.col("inclusive_start") < pl.col("invoice_start"))
            | (pl.col("exclusive_end") > pl.col("invoice_end")),
            "LINE_OUTSIDE_INVOICE",
            "inclusive_start_date",
            pl.format(
                "{}: line {} to {} is not within its invoice {} to {}",
                where,
                _ts("inclusive_start"),
                _ts("exclusive_end"),
                _ts("invoice_start"),
                _ts("invoice_end"),
            ),
        ),
        _rows(
            lines,
            has_quantity & has_subtotals,
            "QUANTITY_AND_SUBTOTALS",
            "quantity",
            pl.format("{}: has both quantity and subtotals_with_quantity", where),
        ),
        _rows(
            lines,
            ~has_quantity & ~has_subtotals,
            "NO_QUANTITY",
            "quantity",
            pl.format("{}: has neither quantity nor subtotals_with_quantity", where),
        ),
        _rows(
            lines,
            has_subtotals & pl.col("granularity").is_null(),
            "MISSING_GRANULARITY",
            "breakdown_granularity",
            pl.format(
                "{}: subtotals_with_quantity need the invoice's breakdown_granularity", where
            ),
        ),
        _rows(
            lines,
            ~pl.col("product_id").is_in(refs.product_ids["product_id"].implode()),
            "UNKNOWN_PRODUCT",
            "product_id",
            pl.format("{}: unknown product `{}`", where, pl.col("product_id")),
        ),
    ]


def _window_rules(
    invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame
) -> list[pl.DataFrame]:
    """JSON windows against their line; everything else of a window is a row rule (SQL)."""
    windows = windows.join(invoices.select("invoice_index", "source"), on="invoice_index").join(
        lines.select(
            "invoice_index",
            "line_index",
            pl.col("inclusive_start").alias("line_start"),
            pl.col("exclusive_end").alias("line_end"),
        ),
        on=["invoice_index", "line_index"],
    )
    return [
        _rows(
            windows,
            (pl.col("inclusive_start") < pl.col("line_start"))
            | (pl.col("exclusive_end") > pl.col("line_end")),
            "WINDOW_OUTSIDE_LINE",
            "inclusive_start_date",
            pl.format(
                "{}: window {} to {} is not within its line {} to {}",
                _where(windows),
                _ts("inclusive_start"),
                _ts("exclusive_end"),
                _ts("line_start"),
                _ts("line_end"),
            ),
        )
    ]


def validate_batch(
    invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame, refs: References
) -> pl.DataFrame:
    """The invoice-, line- and structure-level problems of a batch (row rules are in SQL)."""
    found = [
        *_invoice_rules(invoices, refs),
        *_line_rules(invoices, lines, refs),
        *_window_rules(invoices, lines, windows),
    ]
    return pl.concat(found).sort(
        "invoice_index", "line_index", "window_index", "code", nulls_last=False
    )
