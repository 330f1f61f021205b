"""Every rule as a column expression: input frames -> (kernel input, issues frame).

Rules that need the rate card (a rate at the window's time, entitlement, a plain line spanning a
rate change) are checked where rates are looked up, in `rate.py`; everything else is here. The
catalog and contracts are a handful of objects, so their rules are plain Python over the models.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating import frames
from bulk_rating.frames import canonical_json
from bulk_rating.models import Catalog, Contract
from bulk_rating.money import MAX_PRICE, MAX_QUANTITY, PRICE_SCALE, QUANTITY_SCALE, decimal_places

GRANULARITY_WIDTH = {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1)}
TRUNCATE_EVERY = {"HOUR": "1h", "DAY": "1d"}
# Exact decimal text as load writes it: optional minus, digits, optional fraction.
DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?$"


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


def issue_frame(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=frames.ISSUES)


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


def _quantity_rules(frame: pl.DataFrame, field: str) -> list[pl.DataFrame]:
    q = pl.col("quantity")
    where = _where(frame)
    integer_digits = q.str.strip_prefix("-").str.split(".").list.first().str.strip_chars_start("0")
    decimals = q.str.split(".").list.get(1, null_on_oob=True).str.strip_chars_end("0")
    well_formed = q.str.contains(DECIMAL_TEXT)
    too_large = integer_digits.str.len_chars() > len(str(MAX_QUANTITY)) - 1
    return [
        _rows(
            frame,
            q.is_not_null() & ~well_formed,
            "INVALID_NUMBER",
            field,
            pl.format("{}: quantity `{}` is not a decimal number", where, q),
        ),
        _rows(
            frame,
            well_formed & q.str.starts_with("-") & (q.str.strip_chars("-0.") != ""),
            "NEGATIVE_QUANTITY",
            field,
            pl.format("{}: quantity {} is negative", where, q),
        ),
        _rows(
            frame,
            well_formed & (decimals.str.len_chars().fill_null(0) > QUANTITY_SCALE),
            "TOO_MANY_DECIMALS",
            field,
            pl.format(
                "{}: quantity {} has more than " + str(QUANTITY_SCALE) + " decimals", where, q
            ),
        ),
        _rows(
            frame,
            well_formed & too_large,
            "NUMBER_TOO_LARGE",
            field,
            pl.format("{}: quantity {} is " + f"{MAX_QUANTITY:,}" + " or more", where, q),
        ),
    ]


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
    # Overlaps, in the batch (D3: even identical invoices) and with stored invoices.
    key = ["contract_id", "credit_type_id"]
    periods = invoices.select("source", "invoice_index", *key, "inclusive_start", "exclusive_end")
    pairs = periods.join(periods.drop("source"), on=key, suffix="_other").filter(
        (pl.col("invoice_index_other") < pl.col("invoice_index"))
        & (pl.col("inclusive_start") < pl.col("exclusive_end_other"))
        & (pl.col("inclusive_start_other") < pl.col("exclusive_end"))
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
        *_quantity_rules(lines, "quantity"),
    ]


def _window_rules(
    invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame
) -> list[pl.DataFrame]:
    windows = windows.join(
        invoices.select("invoice_index", "source", "granularity"), on="invoice_index"
    ).join(
        lines.select(
            "invoice_index",
            "line_index",
            pl.col("inclusive_start").alias("line_start"),
            pl.col("exclusive_end").alias("line_end"),
        ),
        on=["invoice_index", "line_index"],
    )
    where = _where(windows)
    start, end, granularity = (
        pl.col("inclusive_start"),
        pl.col("exclusive_end"),
        pl.col("granularity"),
    )
    width = (
        pl.when(granularity == "HOUR")
        .then(pl.duration(hours=1))
        .when(granularity == "DAY")
        .then(pl.duration(days=1))
    )
    aligned = (
        pl.when(granularity == "HOUR")
        .then(start.dt.truncate("1h"))
        .when(granularity == "DAY")
        .then(start.dt.truncate("1d"))
    )
    ordered = windows.sort(
        "invoice_index", "line_index", "inclusive_start", "window_index"
    ).with_columns(
        previous_end=end.shift(1).over("invoice_index", "line_index"),
        previous_index=pl.col("window_index").shift(1).over("invoice_index", "line_index"),
    )
    return [
        _period_rule(windows, "exclusive_end_date"),
        _rows(
            windows,
            (start < pl.col("line_start")) | (end > pl.col("line_end")),
            "WINDOW_OUTSIDE_LINE",
            "inclusive_start_date",
            pl.format(
                "{}: window {} to {} is not within its line {} to {}",
                where,
                _ts("inclusive_start"),
                _ts("exclusive_end"),
                _ts("line_start"),
                _ts("line_end"),
            ),
        ),
        _rows(
            windows,
            granularity.is_not_null() & (end - start != width),
            "WINDOW_WRONG_WIDTH",
            "exclusive_end_date",
            pl.format(
                "{}: window {} to {} is not one {}",
                where,
                _ts("inclusive_start"),
                _ts("exclusive_end"),
                granularity.str.to_lowercase(),
            ),
        ),
        _rows(
            windows,
            granularity.is_not_null() & (aligned != start),
            "WINDOW_NOT_ALIGNED",
            "inclusive_start_date",
            pl.format(
                "{}: window starts at {}, not on a UTC {} boundary",
                where,
                _ts("inclusive_start"),
                granularity.str.to_lowercase(),
            ),
        ),
        _rows(
            ordered,
            pl.col("previous_end").is_not_null() & (start < pl.col("previous_end")),
            "WINDOW_OVERLAP",
            "inclusive_start_date",
            pl.format(
                "{}: overlaps window {} of the same line", _where(ordered), pl.col("previous_index")
            ),
        ),
        *_quantity_rules(windows, "quantity"),
    ]


def validate_usage(
    invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame, refs: References
) -> pl.DataFrame:
    """All problems of the invoices, lines and windows frames (empty when the batch is valid)."""
    found = [
        *_invoice_rules(invoices, refs),
        *_line_rules(invoices, lines, refs),
        *_window_rules(invoices, lines, windows),
    ]
    return pl.concat(found).sort(
        "invoice_index", "line_index", "window_index", "code", nulls_last=False
    )


def kernel_windows(
    invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame, contracts: pl.DataFrame
) -> pl.DataFrame:
    """The pricing kernel's input from valid frames: one row per quantity to price.

    A plain `quantity` line becomes one NONE window spanning the line; each subtotal keeps its
    invoice's granularity. Rows carry what pricing joins on (rate card, product, pricing group).
    """
    plain = lines.filter(pl.col("quantity").is_not_null()).select(
        "invoice_index",
        "line_index",
        pl.lit(-1, pl.Int64).alias("window_index"),
        pl.lit("NONE").alias("granularity"),
        "inclusive_start",
        "exclusive_end",
        "quantity",
    )
    windowed = windows.join(
        invoices.select("invoice_index", "granularity"), on="invoice_index"
    ).select(
        "invoice_index",
        "line_index",
        "window_index",
        "granularity",
        "inclusive_start",
        "exclusive_end",
        "quantity",
    )
    usage = frames.conform(pl.concat([plain, windowed]), frames.WINDOWS)
    return (
        usage.join(
            lines.select("invoice_index", "line_index", "product_id", "pricing_group_values"),
            on=["invoice_index", "line_index"],
        )
        .join(invoices.select("invoice_index", "contract_id", "credit_type_id"), on="invoice_index")
        .join(contracts.select("contract_id", "rate_card_id"), on="contract_id")
        .drop("contract_id")
    )


# --- catalog and contracts (a handful of objects: plain Python over the models) ------------


def _catalog_issue(source: str, code: str, field: str, message: str) -> dict[str, Any]:
    return {"source": source, "code": code, "field": field, "message": message}


def _duplicates(source: str, kind: str, ids: list[str]) -> list[dict[str, Any]]:
    return [
        _catalog_issue(source, "DUPLICATE_ID", "id", f"{kind} id `{i}` appears {n} times")
        for i, n in Counter(ids).items()
        if n > 1
    ]


def _price_issues(source: str, where: str, field: str, price: Decimal) -> list[dict[str, Any]]:
    found = []
    if price < 0:
        found.append(
            _catalog_issue(source, "INVALID_RATE", field, f"{where}: price {price} is negative")
        )
    if decimal_places(price) > PRICE_SCALE:
        found.append(
            _catalog_issue(
                source,
                "TOO_MANY_DECIMALS",
                field,
                f"{where}: price {price} has more than {PRICE_SCALE} decimals",
            )
        )
    if abs(price) >= MAX_PRICE:
        found.append(
            _catalog_issue(
                source,
                "NUMBER_TOO_LARGE",
                field,
                f"{where}: price {price} is {MAX_PRICE:,} or more",
            )
        )
    return found


def validate_catalog(
    catalog: Catalog | None,
    contracts: list[Contract] | None,
    *,
    known_products: set[str],
    known_customers: set[str],
    known_credit_types: set[str],
    known_rate_cards: set[str],
    source_dir: str,
) -> pl.DataFrame:
    """Problems of the catalog and contracts of this run, against what is stored and given."""
    found: list[dict[str, Any]] = []
    catalog_source = f"{source_dir}/catalog.json"
    if catalog is not None:
        found += _duplicates(catalog_source, "credit type", [c.id for c in catalog.credit_types])
        found += _duplicates(catalog_source, "customer", [c.id for c in catalog.customers])
        found += _duplicates(catalog_source, "product", [p.id for p in catalog.products])
        found += _duplicates(catalog_source, "rate card", [r.id for r in catalog.rate_cards])
        for card in catalog.rate_cards:
            found += _rate_card_issues(catalog_source, card, known_products, known_credit_types)
    if contracts is not None:
        contracts_source = f"{source_dir}/contracts.json"
        found += _duplicates(contracts_source, "contract", [c.id for c in contracts])
        for n, contract in enumerate(contracts):
            where = f"contract {n} (`{contract.id}`)"
            if contract.customer_id not in known_customers:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "UNKNOWN_CUSTOMER",
                        "customer_id",
                        f"{where}: unknown customer `{contract.customer_id}`",
                    )
                )
            if contract.rate_card_id not in known_rate_cards:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "UNKNOWN_RATE_CARD",
                        "rate_card_id",
                        f"{where}: unknown rate card `{contract.rate_card_id}`",
                    )
                )
            if (
                contract.ending_before is not None
                and contract.ending_before <= contract.starting_at
            ):
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "INVALID_PERIOD",
                        "ending_before",
                        f"{where}: ends before it starts",
                    )
                )
            schedule = contract.usage_statement_schedule
            if schedule.day == "CUSTOM_DATE" and schedule.billing_anchor_date is None:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "MISSING_FIELD",
                        "billing_anchor_date",
                        f"{where}: day CUSTOM_DATE needs billing_anchor_date",
                    )
                )
    return issue_frame(found)


def _rate_card_issues(
    source: str, card: Any, known_products: set[str], known_credit_types: set[str]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    spans: dict[tuple[str, str | None], list[tuple[Any, Any, int]]] = defaultdict(list)
    for n, rate in enumerate(card.rates):
        where = f"rate card `{card.id}`, rate {n}"
        if rate.product_id not in known_products:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_PRODUCT",
                    "product_id",
                    f"{where}: unknown product `{rate.product_id}`",
                )
            )
        if rate.credit_type_id not in known_credit_types:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_CREDIT_TYPE",
                    "credit_type_id",
                    f"{where}: unknown credit type `{rate.credit_type_id}`",
                )
            )
        if rate.ending_before is not None and rate.ending_before <= rate.starting_at:
            found.append(
                _catalog_issue(
                    source, "INVALID_PERIOD", "ending_before", f"{where}: ends before it starts"
                )
            )
        if rate.rate_type == "FLAT":
            if rate.price is None or rate.tiers:
                found.append(
                    _catalog_issue(
                        source, "INVALID_RATE", "price", f"{where}: FLAT needs price and no tiers"
                    )
                )
            else:
                found += _price_issues(source, where, "price", rate.price)
        elif not rate.tiers or rate.price is not None:
            found.append(
                _catalog_issue(
                    source, "INVALID_RATE", "tiers", f"{where}: TIERED needs tiers and no price"
                )
            )
        else:
            for t, tier in enumerate(rate.tiers):
                found += _price_issues(source, f"{where}, tier {t + 1}", "tiers", tier.price)
                last = t == len(rate.tiers) - 1
                if (tier.size is None and not last) or (tier.size is not None and tier.size <= 0):
                    found.append(
                        _catalog_issue(
                            source,
                            "INVALID_RATE",
                            "tiers",
                            f"{where}, tier {t + 1}: size must be positive (only the last may be open)",
                        )
                    )
                elif tier.size is not None and decimal_places(tier.size) > QUANTITY_SCALE:
                    found.append(
                        _catalog_issue(
                            source,
                            "TOO_MANY_DECIMALS",
                            "tiers",
                            f"{where}, tier {t + 1}: size has more than {QUANTITY_SCALE} decimals",
                        )
                    )
        spans[(rate.product_id, canonical_json(rate.pricing_group_values))].append(
            (rate.starting_at, rate.ending_before, n)
        )
    for (product_id, _), periods in spans.items():
        periods.sort(key=lambda p: p[0])
        for (_, end, first), (start, _, second) in itertools.pairwise(periods):
            if end is None or start < end:
                found.append(
                    _catalog_issue(
                        source,
                        "RATE_OVERLAP",
                        "starting_at",
                        f"rate card `{card.id}`: rates {first} and {second} of product "
                        f"`{product_id}` overlap in time",
                    )
                )
    return found
