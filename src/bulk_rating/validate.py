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
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating import frames, rate
from bulk_rating.frames import canonical_json
from bulk_rating.models import Catalog, Contract
from bulk_rating.money import (
    MAX_PRICE,
    MAX_QUANTITY,
    MULTIPLIER_SCALE,
    PRICE_SCALE,
    QUANTITY_SCALE,
    decimal_places,
)


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
    return [
        _catalog_issue(source, code, field, f"{where}: {message}")
        for code, message in _price_problems(price)
    ]


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
            found += _override_issues(contracts_source, where, contract, known_products)
    return issue_frame(found)


def _override_issues(
    source: str, where: str, contract: Contract, known_products: set[str]
) -> list[dict[str, Any]]:
    """What each override's type needs (METRONOME.md 2.3)."""
    found: list[dict[str, Any]] = []
    explicit = contract.multiplier_override_prioritization == "EXPLICIT"
    for n, override in enumerate(contract.overrides):
        at = f"{where}, override {n}"
        problems: list[tuple[str, str, str]] = []
        if (override.product_id is None) == (override.applicable_product_tags is None):
            problems.append(
                ("INVALID_OVERRIDE", "product_id", "give product_id or applicable_product_tags")
            )
        elif override.product_id is not None and override.product_id not in known_products:
            problems.append(
                ("UNKNOWN_PRODUCT", "product_id", f"unknown product `{override.product_id}`")
            )
        if override.ending_before is not None and override.ending_before <= override.starting_at:
            problems.append(("INVALID_PERIOD", "ending_before", "ends before it starts"))
        if override.type is None and override.entitled is None:
            problems.append(("INVALID_OVERRIDE", "type", "sets neither a type nor entitled"))
        multipliers = [override.multiplier] if override.type == "MULTIPLIER" else []
        if override.type == "MULTIPLIER" and override.multiplier is None:
            problems.append(("INVALID_OVERRIDE", "multiplier", "MULTIPLIER needs multiplier"))
        if override.type == "OVERWRITE":
            new = override.overwrite_rate
            if (
                new is None
                or (new.rate_type == "FLAT") != (new.price is not None)
                or (new.rate_type == "TIERED" and not new.tiers)
            ):
                problems.append(
                    (
                        "INVALID_OVERRIDE",
                        "overwrite_rate",
                        "OVERWRITE needs overwrite_rate with a price (FLAT) or tiers (TIERED)",
                    )
                )
            else:
                for price in (
                    [new.price] if new.price is not None else [t.price for t in new.tiers or []]
                ):
                    problems += [(c, "overwrite_rate", m) for c, m in _price_problems(price)]
        if override.type == "TIERED":
            if not override.tiers:
                problems.append(("INVALID_OVERRIDE", "tiers", "TIERED needs tiers"))
            multipliers += [t.multiplier for t in override.tiers or []]
        if override.type in ("TIERED", "MULTIPLIER") and explicit and override.priority is None:
            problems.append(
                ("INVALID_OVERRIDE", "priority", "EXPLICIT prioritization needs a priority")
            )
        if override.type == "TIERED" and not explicit:
            problems.append(
                (
                    "INVALID_OVERRIDE",
                    "type",
                    "TIERED overrides need multiplier_override_prioritization EXPLICIT",
                )
            )
        for multiplier in multipliers:
            if multiplier is not None and multiplier < 0:
                problems.append(
                    ("INVALID_OVERRIDE", "multiplier", f"multiplier {multiplier} is negative")
                )
            if multiplier is not None and decimal_places(multiplier) > MULTIPLIER_SCALE:
                problems.append(
                    (
                        "TOO_MANY_DECIMALS",
                        "multiplier",
                        f"multiplier {multiplier} has more than {MULTIPLIER_SCALE} decimals",
                    )
                )
        found += [
            _catalog_issue(source, code, field, f"{at}: {message}")
            for code, field, message in problems
        ]
    return found


def _price_problems(price: Decimal) -> list[tuple[str, str]]:
    problems = []
    if price < 0:
        problems.append(("INVALID_RATE", f"price {price} is negative"))
    if decimal_places(price) > PRICE_SCALE:
        problems.append(
            ("TOO_MANY_DECIMALS", f"price {price} has more than {PRICE_SCALE} decimals")
        )
    if abs(price) >= MAX_PRICE:
        problems.append(("NUMBER_TOO_LARGE", f"price {price} is {MAX_PRICE:,} or more"))
    return problems


def _rate_card_issues(
    source: str, card: Any, known_products: set[str], known_credit_types: set[str]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    spans: dict[tuple[str, str | None], list[tuple[Any, Any, int]]] = defaultdict(list)
    for n, card_rate in enumerate(card.rates):
        where = f"rate card `{card.id}`, rate {n}"
        if card_rate.product_id not in known_products:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_PRODUCT",
                    "product_id",
                    f"{where}: unknown product `{card_rate.product_id}`",
                )
            )
        if card_rate.credit_type_id not in known_credit_types:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_CREDIT_TYPE",
                    "credit_type_id",
                    f"{where}: unknown credit type `{card_rate.credit_type_id}`",
                )
            )
        if card_rate.ending_before is not None and card_rate.ending_before <= card_rate.starting_at:
            found.append(
                _catalog_issue(
                    source, "INVALID_PERIOD", "ending_before", f"{where}: ends before it starts"
                )
            )
        if card_rate.rate_type == "FLAT":
            if card_rate.price is None or card_rate.tiers:
                found.append(
                    _catalog_issue(
                        source, "INVALID_RATE", "price", f"{where}: FLAT needs price and no tiers"
                    )
                )
            else:
                found += _price_issues(source, where, "price", card_rate.price)
        elif not card_rate.tiers or card_rate.price is not None:
            found.append(
                _catalog_issue(
                    source, "INVALID_RATE", "tiers", f"{where}: TIERED needs tiers and no price"
                )
            )
        else:
            for t, tier in enumerate(card_rate.tiers):
                found += _price_issues(source, f"{where}, tier {t + 1}", "tiers", tier.price)
                last = t == len(card_rate.tiers) - 1
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
        spans[(card_rate.product_id, canonical_json(card_rate.pricing_group_values))].append(
            (card_rate.starting_at, card_rate.ending_before, n)
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


# --- usage rows: every rule as a SQL column expression ---------------------------------------
# The rows of a usage table (load.rows_sql) or of a JSON batch (load.json_rows), resolved against
# contracts, periods and rates (rate.resolved_sql), are checked in the same scan that groups them
# into lines (check_sql): a valid import reads its rows twice, here and to price them. Only when
# a rule fails does row_issues_sql name every failing row.

HOUR_US, DAY_US = 3_600_000_000, 86_400_000_000  # UTC hours and days are whole microsecond counts
# A time of day, then Z or an offset: `2024-06-02` alone is a date, not a UTC timestamp.
OFFSET_AT_END = r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? ?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?$"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts_sql(column: str) -> str:
    return f"strftime({column}, '%Y-%m-%dT%H:%M:%SZ')"


def _quantity_rules_sql(kind: str) -> list[tuple[str, str, str, str]]:
    """(code, field, condition, message) for the quantity, by the type it was read as.

    Text is checked as text (exact digits). A float is accepted when its value, taken as the
    nearest decimal with 9 places, converts back to the same float: the one boundary rule.
    """
    q, raw = "quantity", "quantity_raw"
    well_formed = {
        "text": f"regexp_matches({raw}, {_sql_text(DECIMAL_TEXT)})",
        "float": f"isfinite({raw})",
    }.get(kind.split(":")[0], f"{raw} IS NOT NULL")
    too_many = {
        "text": f"length(regexp_extract({raw}, '\\.([0-9]*?)0*$', 1)) > {QUANTITY_SCALE}",
        "float": f"{q} IS NOT NULL AND CAST({q} AS DOUBLE) <> {raw}",
    }.get(
        kind, f"{raw} <> round({raw}, {QUANTITY_SCALE})" if kind.startswith("decimal:") else "false"
    )
    shown = f"CAST({raw} AS VARCHAR)"
    return [
        ("INVALID_NUMBER", "quantity", f"{raw} IS NULL", "'quantity is empty'"),
        (
            "INVALID_NUMBER",
            "quantity",
            f"NOT {well_formed}",
            f"'quantity `' || {shown} || '` is not a finite decimal number'",
        ),
        (
            "TOO_MANY_DECIMALS",
            "quantity",
            f"{well_formed} AND {too_many}",
            f"'quantity ' || {shown} || ' has more than {QUANTITY_SCALE} decimals'",
        ),
        ("NEGATIVE_QUANTITY", "quantity", f"{q} < 0", f"'quantity ' || {shown} || ' is negative'"),
        (
            "NUMBER_TOO_LARGE",
            "quantity",
            f"{well_formed} AND ({q} IS NULL OR abs({q}) >= {MAX_QUANTITY:f})",
            f"'quantity ' || {shown} || ' is {MAX_QUANTITY:,} or more'",
        ),
    ]


def row_rules(quantity_kind: str, *, table: bool) -> list[tuple[str, str, str, str]]:
    """Every row rule as (code, field, condition, message), all SQL over RATED_ROWS."""
    width = "(epoch_us(exclusive_end) - epoch_us(inclusive_start))"
    rules: list[tuple[str, str, str, str]] = []
    for column, field in (
        ("start_text", "inclusive_start_date"),
        ("end_text", "exclusive_end_date"),
        ("invoice_start_text", "invoice_inclusive_start_date"),
        ("invoice_end_text", "invoice_exclusive_end_date"),
        ("issue_text", "issue_date"),
    ):
        parsed = {
            "start_text": "inclusive_start",
            "end_text": "exclusive_end",
            "invoice_start_text": "invoice_start",
            "invoice_end_text": "invoice_end",
            "issue_text": "issue_date",
        }[column]
        rules += [
            (
                "INVALID_TIMESTAMP",
                field,
                f"{column} IS NOT NULL AND {parsed} IS NULL",
                f"'`' || {column} || '` is not a timestamp (write e.g. 2024-06-01T00:00:00Z)'",
            ),
            (
                "TIMESTAMP_WITHOUT_OFFSET",
                field,
                f"{column} IS NOT NULL AND {parsed} IS NOT NULL AND NOT regexp_matches(trim({column}), {_sql_text(OFFSET_AT_END)})",
                f"'`' || {column} || '` has no UTC offset'",
            ),
        ]
    if table:
        for column in ("customer_id", "contract_id", "product_id"):
            rules.append(
                (
                    "MISSING_FIELD",
                    column,
                    f"{column} IS NULL OR trim({column}) = ''",
                    f"'{column} is empty'",
                )
            )
        rules += [
            (
                "MISSING_FIELD",
                "inclusive_start_date",
                "start_text IS NULL AND inclusive_start IS NULL",
                "'inclusive_start_date is empty'",
            ),
            (
                "MISSING_FIELD",
                "exclusive_end_date",
                "end_text IS NULL AND exclusive_end IS NULL",
                "'exclusive_end_date is empty'",
            ),
            (
                "UNKNOWN_CUSTOMER",
                "customer_id",
                "customer_id IS NOT NULL AND NOT known_customer",
                "'unknown customer `' || customer_id || '`'",
            ),
            (
                "UNKNOWN_CONTRACT",
                "contract_id",
                "contract_id IS NOT NULL AND NOT known_contract",
                "'unknown contract `' || contract_id || '`'",
            ),
            (
                "CONTRACT_CUSTOMER_MISMATCH",
                "contract_id",
                "known_contract AND known_customer AND contract_customer_id <> customer_id",
                "'contract `' || contract_id || '` belongs to customer `' || contract_customer_id || '`, not `' || customer_id || '`'",
            ),
            (
                "UNKNOWN_PRODUCT",
                "product_id",
                "product_id IS NOT NULL AND NOT known_product",
                "'unknown product `' || product_id || '`'",
            ),
            (
                "UNKNOWN_CREDIT_TYPE",
                "credit_type_id",
                "credit_type_id IS NOT NULL AND NOT known_credit_type",
                "'unknown credit type `' || credit_type_id || '`'",
            ),
            (
                "INVALID_VALUE",
                "billable_status",
                "billable_status NOT IN ('billable', 'unbillable')",
                "'billable_status `' || billable_status || '` is not billable or unbillable'",
            ),
            # Without invoice columns a row belongs to the billing period containing its start.
            (
                "INVOICE_OUTSIDE_CONTRACT",
                "inclusive_start_date",
                "invoice_start IS NULL AND known_contract AND (inclusive_start < contract_start OR inclusive_start >= contract_end)",
                f"'the window starting ' || {_ts_sql('inclusive_start')} || ' is outside contract `' || contract_id || '`'",
            ),
            (
                "INVOICE_AFTER_GENERATION_START",
                "inclusive_start_date",
                "invoice_start IS NULL AND known_contract AND inclusive_start >= generation_starts_at"
                " AND (contract_end IS NULL OR inclusive_start < contract_end)",
                f"'the window starting ' || {_ts_sql('inclusive_start')} || ' falls in a period the contract generates itself (from ' || {_ts_sql('generation_starts_at')} || ')'",
            ),
            (
                "WINDOW_OUTSIDE_LINE",
                "exclusive_end_date",
                "invoice_start IS NULL AND invoice_period_end IS NOT NULL AND exclusive_end > invoice_period_end",
                f"'the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' crosses the end of its billing period ' || {_ts_sql('invoice_period_end')}",
            ),
            (
                "WINDOW_OUTSIDE_LINE",
                "inclusive_start_date",
                "invoice_start IS NOT NULL AND (inclusive_start < invoice_start OR exclusive_end > invoice_end)",
                f"'the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' is not within its invoice ' || {_ts_sql('invoice_start')} || ' to ' || {_ts_sql('invoice_end')}",
            ),
            (
                "MISSING_FIELD",
                "invoice_exclusive_end_date",
                "(invoice_start IS NULL) <> (invoice_end IS NULL)",
                "'invoice_inclusive_start_date and invoice_exclusive_end_date go together'",
            ),
        ]
    rules += [
        (
            "INVALID_PERIOD",
            "exclusive_end_date",
            "inclusive_start >= exclusive_end",
            f"'starts at ' || {_ts_sql('inclusive_start')} || ' but ends at ' || {_ts_sql('exclusive_end')}",
        ),
        (
            "INVALID_VALUE",
            "breakdown_granularity",
            "granularity_given NOT IN ('HOUR', 'DAY', 'NONE')",
            "'breakdown_granularity `' || granularity_given || '` is not HOUR, DAY or NONE'",
        ),
        (
            "WINDOW_WRONG_WIDTH",
            "exclusive_end_date",
            "granularity_given IS NULL AND inclusive_start < exclusive_end AND granularity IS NULL",
            "'a window of ' || (exclusive_end - inclusive_start)::VARCHAR || ' is neither one hour nor one day; give breakdown_granularity NONE for a whole line'",
        ),
        (
            "WINDOW_WRONG_WIDTH",
            "exclusive_end_date",
            f"(granularity = 'HOUR' AND {width} <> {HOUR_US}) OR (granularity = 'DAY' AND {width} <> {DAY_US})",
            f"'window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' is not one ' || lower(granularity)",
        ),
        (
            "WINDOW_NOT_ALIGNED",
            "inclusive_start_date",
            f"(granularity = 'HOUR' AND epoch_us(inclusive_start) % {HOUR_US} <> 0)"
            f" OR (granularity = 'DAY' AND epoch_us(inclusive_start) % {DAY_US} <> 0)",
            f"'window starts at ' || {_ts_sql('inclusive_start')} || ', not on a UTC ' || lower(granularity) || ' boundary'",
        ),
        *_quantity_rules_sql(quantity_kind),
        # Rates (they need a known contract and product; those problems are named above).
        (
            "NO_RATE",
            "product_id",
            "known_contract AND known_product AND inclusive_start IS NOT NULL AND rate_key IS NULL",
            f"'no rate for product `' || product_id || '`' || coalesce(' with pricing group values ' || pricing_group_values, '') || ' on the rate card of contract `' || contract_id || '` at ' || {_ts_sql('inclusive_start')}",
        ),
        (
            "PRODUCT_NOT_ENTITLED",
            "product_id",
            "NOT entitled",
            f"'product `' || product_id || '` is not entitled at ' || {_ts_sql('inclusive_start')}",
        ),
        (
            "CREDIT_TYPE_MISMATCH",
            "credit_type_id",
            "known_credit_type AND rate_credit_type_id <> credit_type_id",
            "'product `' || product_id || '` is priced in credit type `' || rate_credit_type_id || '`, the invoice in `' || credit_type_id || '`'",
        ),
        (
            "NO_RATE",
            "exclusive_end_date",
            "granularity IN ('HOUR', 'DAY') AND rate_ending_before < exclusive_end AND NOT rate_continues",
            f"'no rate for product `' || product_id || '` from ' || {_ts_sql('rate_ending_before')} || ', inside the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')}",
        ),
        (
            "QUANTITY_SPANS_RATE_CHANGE",
            "quantity",
            "granularity = 'NONE' AND rate_ending_before < exclusive_end",
            f"'the line spans a rate change at ' || {_ts_sql('rate_ending_before')} || '; send hourly or daily windows'",
        ),
    ]
    return rules


def check_sql(quantity_kind: str, *, table: bool) -> str:
    """One scan: the rows grouped into lines (by line key), with each line's count of rows that
    break a rule and of rows repeating a window. Lines and invoices are made from this; a second
    hash of the same key columns tells a (never seen) collision of line keys from a real line."""
    rules = row_rules(quantity_kind, table=table)
    any_problem = " OR ".join(f"coalesce({condition}, false)" for _, _, condition, _ in rules)
    columns = dict.fromkeys(
        [*rate.line_key_columns(table=table).split(", "), "product_id", "pricing_group_values"]
    )
    attributes = ", ".join(f"any_value({column}) AS {column}" for column in columns)
    return f"""
SELECT line_key, {attributes}, any_value(tier_group) AS tier_group,
       min(line_check) <> max(line_check) AS key_collision,
       any_value(customer_id) AS customer_id, max(issue_date) AS issued_at,
       coalesce(min(issue_date) <> max(issue_date), false) OR count(issue_date) NOT IN (0, count(*))
         AS issue_dates_differ,
       coalesce(min(billable_status), 'billable') AS billable_status,
       coalesce(min(billable_status) <> max(billable_status), false)
         OR count(billable_status) NOT IN (0, count(*)) AS billable_differs,
       min(source) AS source, count(*) AS rows,
       sum(hash({ROW_IDENTITY}, {ROW_CONTENT}))::HUGEINT AS content_sum,
       count(inclusive_start) - count(DISTINCT inclusive_start) AS repeated_windows,
       count_if({any_problem}) AS problems
FROM ({rate.resolved_sql(table=table)})
GROUP BY line_key
"""


def row_issues_sql(quantity_kind: str, *, table: bool) -> str:
    """Every failing row with every rule it breaks (run only when check_sql counted problems)."""
    rules = row_rules(quantity_kind, table=table)
    checks = ",\n        ".join(
        f"CASE WHEN coalesce({condition}, false) THEN {{'code': {_sql_text(code)}, 'field': {_sql_text(field)},"
        f" 'message': {message}}} END"
        for code, field, condition, message in rules
    )
    any_problem = " OR ".join(f"coalesce({condition}, false)" for _, _, condition, _ in rules)
    return f"""
WITH rated AS ({rate.resolved_sql(table=table)}),
found AS (
    SELECT source, row, invoice_index, line_index, window_index,
           unnest(list_filter([
        {checks}
           ], lambda x: x IS NOT NULL)) AS issue
    FROM rated
    WHERE {any_problem}
)
SELECT source, row, invoice_index, line_index, window_index, issue.field AS field, issue.code AS code,
       {_ROW_NAME} || ': ' || issue.message AS message
FROM found
"""


_ROW_NAME = """CASE WHEN row IS NOT NULL THEN 'row ' || row ELSE 'invoice ' || invoice_index || ', line ' || line_index
            || CASE WHEN window_index >= 0 THEN ', window ' || window_index ELSE '' END END"""


# What a row says: who, what, when (with ROW_CONTENT, all of it; file and row number aside).
ROW_IDENTITY = (
    "customer_id, contract_id, product_id, inclusive_start, pricing_group_values,"
    " presentation_group_values, granularity"
)
# What makes two rows of one line and window the same row (their file and row number aside).
ROW_CONTENT = "quantity, exclusive_end, invoice_start, invoice_end, issue_date, billable_status, credit_type_id"

# A usage table's rows with exact duplicates collapsed to their first copy: what is priced when
# the check found duplicates (the check itself reads every row).
UNIQUE_ROWS = f"""
SELECT * FROM usage_rows
QUALIFY row_number() OVER (
    PARTITION BY {ROW_IDENTITY}, {ROW_CONTENT}
    ORDER BY source, row) = 1
"""


def repeated_windows_sql(*, table: bool) -> str:
    """Rows of one line for the same window (run only when check_sql counted some).

    In a usage table, copies that agree in every column are exact duplicates: collapsed, priced
    once and reported (code DUPLICATE_ROW, not a problem); copies that disagree are a
    CONFLICTING_DUPLICATE. In a JSON batch two windows of one line never share a start.
    """
    if table:
        code = "CASE WHEN variants = 1 THEN 'DUPLICATE_ROW' ELSE 'CONFLICTING_DUPLICATE' END"
        what = "CASE WHEN variants = 1 THEN ' identical rows' ELSE ' rows that disagree' END"
    else:
        code, what = "'WINDOW_OVERLAP'", "' windows'"
    return f"""
WITH counted AS (
    SELECT *, count(*) OVER (PARTITION BY line_key, inclusive_start) AS copies,
           count(DISTINCT hash({ROW_CONTENT})) OVER (PARTITION BY line_key, inclusive_start) AS variants,
           row_number() OVER (PARTITION BY line_key, inclusive_start ORDER BY source, row, window_index)
             AS copy_number
    FROM ({rate.resolved_sql(table=table)})
)
SELECT source, row, invoice_index, line_index, window_index, copy_number, 'inclusive_start_date' AS field,
       {code} AS code,
       {_ROW_NAME} || ': ' || copies || {what} || ' of the same line for the window starting '
       || strftime(inclusive_start, '%Y-%m-%dT%H:%M:%SZ') AS message
FROM counted WHERE copies > 1 AND inclusive_start IS NOT NULL
"""
