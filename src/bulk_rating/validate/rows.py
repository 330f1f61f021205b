"""Usage rows: every rule as a SQL column expression.

The rows of a usage table (load.rows_sql) or of a JSON batch (load.json_rows), resolved against
contracts, periods and rates (resolve.resolved_sql), are checked in the same scan that groups them
into lines (line_weeks_sql, then lines_sql): a valid import reads its rows twice, here and to
price them. Only when a rule fails does row_issues_sql name every failing row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bulk_rating import load, pricing, resolve
from bulk_rating.models import SUB_MICROSECOND
from bulk_rating.money import (
    MAX_QUANTITY,
    QUANTITY_SCALE,
)

HOUR_US = 3_600_000_000  # UTC hours and days are whole microsecond counts
DAY_US = resolve.DAY_US
# Tiered rows are placed in their tiers week by week (resolve.WEEK_US): few enough groups for the
# check to hold at scale, few enough rows on the weeks with an edge.
WEEK_US = resolve.WEEK_US
# A time of day, then Z or an offset: `2024-06-02` alone is a date, not a UTC timestamp.
OFFSET_AT_END = r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? ?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?$"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts_sql(column: str) -> str:
    return f"strftime({column}, '%Y-%m-%dT%H:%M:%SZ')"


def _too_many_decimals(kind: str, raw: str) -> str:
    """A DECIMAL column of at most QUANTITY_SCALE places never has too many."""
    if not kind.startswith("decimal:") or int(kind.split(":")[1]) <= QUANTITY_SCALE:
        return "false"
    return f"{raw} <> round({raw}, {QUANTITY_SCALE})"


def _quantity_rules(kind: str) -> list[Rule]:
    """The quantity's rules, by the type it was read as.

    Text is checked as text (exact digits). A float is accepted when its value, taken as the
    nearest decimal with 9 places, converts back to the same float: the one boundary rule.
    """
    q, raw = "quantity", "quantity_raw"
    typed = kind.split(":")[0] not in ("text", "float")
    well_formed = {
        "text": f"regexp_matches({raw}, {_sql_text(DECIMAL_TEXT)})",
        "float": f"isfinite({raw})",
    }.get(kind.split(":")[0], f"{raw} IS NOT NULL")
    too_many = {
        "text": f"length(regexp_extract({raw}, '\\.([0-9]*?)0*$', 1)) > {QUANTITY_SCALE}",
        "float": f"{q} IS NOT NULL AND CAST({q} AS DOUBLE) <> {raw}",
    }.get(kind, _too_many_decimals(kind, raw))
    shown = f"CAST({raw} AS VARCHAR)"
    # an empty quantity, or in a typed column one that did not convert: counted per group
    missing = "quantities < rows"
    return [
        Rule(
            "INVALID_NUMBER", "quantity", f"{raw} IS NULL", "'quantity is empty'", on_group=missing
        ),
        Rule(
            "INVALID_NUMBER",
            "quantity",
            f"NOT {well_formed}",
            f"'quantity `' || {shown} || '` is not a finite decimal number'",
            on_group=missing if typed else None,
        ),
        *(
            []
            if too_many == "false"
            else [
                Rule(
                    "TOO_MANY_DECIMALS",
                    "quantity",
                    f"{well_formed} AND {too_many}",
                    f"'quantity ' || {shown} || ' has more than {QUANTITY_SCALE} decimals'",
                )
            ]
        ),
        Rule(
            "NEGATIVE_QUANTITY",
            "quantity",
            f"{q} < 0",
            f"'quantity ' || {shown} || ' is negative'",
            on_group="quantity_min < 0",
        ),
        Rule(
            "NUMBER_TOO_LARGE",
            "quantity",
            f"{well_formed} AND ({q} IS NULL OR abs({q}) >= {MAX_QUANTITY:f})",
            f"'quantity ' || {shown} || ' is {MAX_QUANTITY:,} or more'",
            on_group=f"quantities < rows OR quantity_max >= {MAX_QUANTITY:f}"
            f" OR quantity_min <= -{MAX_QUANTITY:f}",
        ),
    ]


# A condition on a group of rows (line_weeks_sql) standing for a rule: as SQL over the group's
# bounds and lookups, or made from the table's column kinds (None: the rule is checked row by row).
GroupCondition = str | Callable[[Mapping[str, str]], str | None] | None


@dataclass(frozen=True)
class Rule:
    """One row rule: its code and field, its condition and message (SQL over RATED_ROWS), and
    how the check evaluates it."""

    code: str
    field: str
    condition: str
    message: str
    # it reads only columns a line's rows share (its key, or _UNIFORM_COLUMNS): evaluated once
    # per line (lines_sql); a line whose rows disagree on those columns is checked row by row
    per_line: bool = False
    # evaluated once per group of rows in the check's scan, from the group's bounds and the
    # small tables joined to it (some over-approximate: row_issues_sql then names the rows
    # that break the rule, if any); None: counted row by row
    on_group: GroupCondition = None
    # optional columns it reads: it can fire only when the table has one of them
    needs: tuple[str, ...] = ()
    # it reads the column's text: it can fire only when the column was read as text
    on_text: bool = False
    # it holds for rows without invoice columns of their own: rows of a table that has them
    # are checked row by row
    without_invoice_columns: bool = False

    def can_fire(self, kinds: Mapping[str, str] | None) -> bool:
        """Whether a table of these column kinds can break the rule (None: rows of a JSON
        batch or kept draft rows, where every column may hold text)."""
        if kinds is None:
            return True
        if self.on_text:
            return kinds.get(self.field) == "text"
        return not self.needs or any(column in kinds for column in self.needs)

    def group_condition(self, kinds: Mapping[str, str] | None) -> str | None:
        """The rule as a condition on a group of rows, where it has one for this input."""
        if kinds is None:  # a JSON batch or kept draft rows: few rows, every rule row by row
            return None
        if self.without_invoice_columns and rows_name_periods(kinds):
            return None  # rows may carry invoice columns of their own: checked row by row
        return self.on_group(kinds) if callable(self.on_group) else self.on_group


_UNIFORM_COLUMNS = (
    "customer_id, contract_id, product_id, credit_type_id, billable_status, granularity_given"
)


# The rule for a window whose width is neither an hour nor a day, without a given granularity.
_NO_GRANULARITY = "granularity_given IS NULL AND granularity IS NULL"
_INVOICE_COLUMNS = ("invoice_inclusive_start_date", "invoice_exclusive_end_date")


def rows_name_periods(kinds: Mapping[str, str]) -> bool:
    """A usage table's rows name their own invoice periods (invoice columns): a row's period is
    then its own, not only its contract's period holding its start."""
    return any(c in kinds for c in _INVOICE_COLUMNS)


# What line_weeks_sql looks up for each group, which the line rules read.
_LOOKED_UP = (
    "known_customer",
    "known_contract",
    "contract_customer_id",
    "known_product",
    "known_credit_type",
)


def row_rules(
    quantity_kind: str, *, table: bool, kinds: Mapping[str, str] | None = None
) -> list[Rule]:
    """Every row rule (its condition and message SQL over RATED_ROWS); with the column kinds of
    a usage table, only the rules its columns can break."""
    return [r for r in _all_rules(quantity_kind, table=table) if r.can_fire(kinds)]


def _all_rules(quantity_kind: str, *, table: bool) -> list[Rule]:
    width = "(epoch_us(exclusive_end) - epoch_us(inclusive_start))"
    rules: list[Rule] = []
    for column, field, parsed in (
        ("start_text", "inclusive_start_date", "inclusive_start"),
        ("end_text", "exclusive_end_date", "exclusive_end"),
        ("invoice_start_text", "invoice_inclusive_start_date", "invoice_start"),
        ("invoice_end_text", "invoice_exclusive_end_date", "invoice_end"),
        ("issue_text", "issue_date", "issue_date"),
    ):
        rules += [
            Rule(
                "INVALID_TIMESTAMP",
                field,
                f"{column} IS NOT NULL AND {parsed} IS NULL",
                f"'`' || {column} || CASE WHEN regexp_matches({column}, {_sql_text(SUB_MICROSECOND)})"
                " THEN '` is more precise than a microsecond, which is not supported'"
                " ELSE '` is not a timestamp (write e.g. 2024-06-01T00:00:00Z)' END",
                on_text=True,
            ),
            Rule(
                "TIMESTAMP_WITHOUT_OFFSET",
                field,
                f"{column} IS NOT NULL AND {parsed} IS NOT NULL AND NOT regexp_matches(trim({column}), {_sql_text(OFFSET_AT_END)})",
                f"'`' || {column} || '` has no UTC offset'",
                on_text=True,
            ),
        ]
    if table:
        for column in ("customer_id", "contract_id", "product_id"):
            rules.append(
                Rule(
                    "MISSING_FIELD",
                    column,
                    f"coalesce({column}, '') = ''",
                    f"'{column} is empty'",
                    per_line=True,
                )
            )
        rules += [
            Rule(
                "MISSING_FIELD",
                "inclusive_start_date",
                "start_text IS NULL AND inclusive_start IS NULL",
                "'inclusive_start_date is empty'",
                on_group="starts < rows",
            ),
            Rule(
                "MISSING_FIELD",
                "exclusive_end_date",
                "end_text IS NULL AND exclusive_end IS NULL",
                "'exclusive_end_date is empty'",
                on_group="ends < rows",
            ),
            Rule(
                "UNKNOWN_CUSTOMER",
                "customer_id",
                "customer_id IS NOT NULL AND NOT known_customer",
                "'unknown customer `' || customer_id || '`'",
                per_line=True,
            ),
            Rule(
                "UNKNOWN_CONTRACT",
                "contract_id",
                "contract_id IS NOT NULL AND NOT known_contract",
                "'unknown contract `' || contract_id || '`'",
                per_line=True,
            ),
            Rule(
                "CONTRACT_CUSTOMER_MISMATCH",
                "contract_id",
                "known_contract AND known_customer AND contract_customer_id <> customer_id",
                "'contract `' || contract_id || '` belongs to customer `' || contract_customer_id || '`, not `' || customer_id || '`'",
                per_line=True,
            ),
            Rule(
                "UNKNOWN_PRODUCT",
                "product_id",
                "product_id IS NOT NULL AND NOT known_product",
                "'unknown product `' || product_id || '`'",
                per_line=True,
            ),
            Rule(
                "UNKNOWN_CREDIT_TYPE",
                "credit_type_id",
                "credit_type_id IS NOT NULL AND NOT known_credit_type",
                "'unknown credit type `' || credit_type_id || '`'",
                per_line=True,
                needs=("credit_type_id",),
            ),
            Rule(
                "INVALID_VALUE",
                "billable_status",
                "billable_status NOT IN ('billable', 'unbillable')",
                "'billable_status `' || billable_status || '` is not billable or unbillable'",
                per_line=True,
                needs=("billable_status",),
            ),
            # Without invoice columns a row belongs to the billing period containing its start.
            Rule(
                "INVOICE_OUTSIDE_CONTRACT",
                "inclusive_start_date",
                "invoice_start IS NULL AND known_contract AND (inclusive_start < contract_start OR inclusive_start >= contract_end)",
                f"'the window starting ' || {_ts_sql('inclusive_start')} || ' is outside contract `' || contract_id || '`'",
                on_group="known_contract AND (start_min < contract_start OR start_max >= contract_end)",
                without_invoice_columns=True,
            ),
            Rule(
                "INVOICE_AFTER_GENERATION_START",
                "inclusive_start_date",
                "invoice_start IS NULL AND known_contract AND inclusive_start >= generation_starts_at AND NOT in_draft"
                " AND (contract_end IS NULL OR inclusive_start < contract_end)",
                f"'the window starting ' || {_ts_sql('inclusive_start')} || ' falls in a period the contract generates itself (from ' || {_ts_sql('generation_starts_at')} || ')'",
                on_group="known_contract AND start_max >= generation_starts_at AND NOT draft"
                " AND (contract_end IS NULL OR start_min < contract_end)",
                without_invoice_columns=True,
            ),
            Rule(
                "WINDOW_OUTSIDE_LINE",
                "exclusive_end_date",
                "invoice_start IS NULL AND invoice_period_end IS NOT NULL AND exclusive_end > invoice_period_end",
                f"'the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' crosses the end of its billing period ' || {_ts_sql('invoice_period_end')}",
                on_group="invoice_period_end IS NOT NULL AND end_max > invoice_period_end",
                without_invoice_columns=True,
            ),
            Rule(
                "WINDOW_OUTSIDE_LINE",
                "inclusive_start_date",
                "invoice_start IS NOT NULL AND (inclusive_start < invoice_start OR exclusive_end > invoice_end)",
                f"'the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' is not within its invoice ' || {_ts_sql('invoice_start')} || ' to ' || {_ts_sql('invoice_end')}",
                needs=("invoice_inclusive_start_date",),
            ),
            Rule(
                "MISSING_FIELD",
                "invoice_exclusive_end_date",
                "(invoice_start IS NULL) <> (invoice_end IS NULL)",
                "'invoice_inclusive_start_date and invoice_exclusive_end_date go together'",
                needs=("invoice_inclusive_start_date", "invoice_exclusive_end_date"),
            ),
        ]
    rules += [
        Rule(
            "INVALID_PERIOD",
            "exclusive_end_date",
            "inclusive_start >= exclusive_end",
            f"'starts at ' || {_ts_sql('inclusive_start')} || ' but ends at ' || {_ts_sql('exclusive_end')}",
            # without the column, a granularity is inferred only from a positive width
            on_group=lambda kinds: (
                None if "breakdown_granularity" in kinds else "granularity IS NULL"
            ),
        ),
        Rule(
            "INVALID_VALUE",
            "breakdown_granularity",
            "granularity_given NOT IN ('HOUR', 'DAY', 'NONE')",
            "'breakdown_granularity `' || granularity_given || '` is not HOUR, DAY or NONE'",
            per_line=True,
            needs=("breakdown_granularity",),
        ),
        Rule(
            "WINDOW_WRONG_WIDTH",
            "exclusive_end_date",
            "granularity_given IS NULL AND inclusive_start < exclusive_end AND granularity IS NULL",
            "'a window of ' || (exclusive_end - inclusive_start)::VARCHAR || ' is neither one hour nor one day; give breakdown_granularity NONE for a whole line'",
            on_group=_NO_GRANULARITY,
        ),
        Rule(
            "WINDOW_WRONG_WIDTH",
            "exclusive_end_date",
            f"(granularity = 'HOUR' AND {width} <> {HOUR_US}) OR (granularity = 'DAY' AND {width} <> {DAY_US})",
            f"'window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')} || ' is not one ' || lower(granularity)",
            # an inferred granularity has the width it was inferred from
            needs=("breakdown_granularity",),
        ),
        Rule(
            "WINDOW_NOT_ALIGNED",
            "inclusive_start_date",
            f"(granularity = 'HOUR' AND epoch_us(inclusive_start) % {HOUR_US} <> 0)"
            f" OR (granularity = 'DAY' AND epoch_us(inclusive_start) % {DAY_US} <> 0)",
            f"'window starts at ' || {_ts_sql('inclusive_start')} || ', not on a UTC ' || lower(granularity) || ' boundary'",
            # hour windows start on a whole hour, day windows at 0:00
            on_group="(granularity = 'HOUR' AND hour_offset_max > 0)"
            " OR (granularity = 'DAY' AND day_offset_max > 0)",
        ),
        *_quantity_rules(quantity_kind),
        # Rates (they need a known contract and product; those problems are named above).
        Rule(
            "NO_RATE",
            "product_id",
            "known_contract AND known_product AND inclusive_start IS NOT NULL AND rate_key IS NULL",
            f"'no rate for product `' || product_id || '`' || coalesce(' with pricing group values ' || pricing_group_values, '') || ' on the rate card of contract `' || contract_id || '` at ' || {_ts_sql('inclusive_start')}",
            on_group="known_contract AND known_product AND start_max IS NOT NULL AND rate_key IS NULL",
        ),
        Rule(
            "PRODUCT_NOT_ENTITLED",
            "product_id",
            "NOT entitled",
            f"'product `' || product_id || '` is not entitled at ' || {_ts_sql('inclusive_start')}",
            on_group="NOT entitled",
        ),
        Rule(
            "CREDIT_TYPE_MISMATCH",
            "credit_type_id",
            "known_credit_type AND rate_credit_type_id <> credit_type_id",
            "'product `' || product_id || '` is priced in credit type `' || rate_credit_type_id || '`, the invoice in `' || credit_type_id || '`'",
            on_group="known_credit_type AND rate_credit_type_id <> credit_type_id",
            needs=("credit_type_id",),
        ),
        Rule(
            "NO_RATE",
            "exclusive_end_date",
            "granularity IN ('HOUR', 'DAY') AND rate_ending_before < exclusive_end AND NOT rate_continues",
            f"'no rate for product `' || product_id || '` from ' || {_ts_sql('rate_ending_before')} || ', inside the window ' || {_ts_sql('inclusive_start')} || ' to ' || {_ts_sql('exclusive_end')}",
            on_group="granularity IN ('HOUR', 'DAY') AND rate_ending_before < end_max"
            " AND NOT rate_continues",
        ),
        Rule(
            "QUANTITY_SPANS_RATE_CHANGE",
            "quantity",
            "granularity = 'NONE' AND rate_ending_before < exclusive_end",
            f"'the line spans a rate change at ' || {_ts_sql('rate_ending_before')} || '; send hourly or daily windows'",
            on_group="granularity = 'NONE' AND rate_ending_before < end_max",
        ),
    ]
    return rules


# The week a tiered row is placed in its tier by (rate.WEEK_TIERS): untiered rows group by line.
TIER_WEEK_SQL = f"CASE WHEN {pricing.positioned_sql('rate_type')} THEN epoch_us(inclusive_start) // {WEEK_US} END"


def _slot_aggregates_sql(slots: int) -> str:
    """Per group of rows (a line, or a line's week for tiered rows): how far its starts lie from a
    whole UTC hour (the most), and how many distinct slots they fill in a bitmap of `slots` hours,
    a start's slot being its hour since the epoch modulo `slots`. When every start is on a whole
    hour and they span less than `slots` hours, no two hours share a slot: the group repeats
    `starts - slots_filled` windows (repeated_windows_sql counts the others). A bitmap costs a
    tenth of a distinct count; at 100M rows, slots by plain arithmetic saved the check about 3 of
    its 50 CPU seconds against slots bounded by a CASE."""
    hour = f"epoch_us(inclusive_start) // {HOUR_US}"
    slot = f"(({hour}) % {slots} + {slots}) % {slots}"  # never negative, even before 1970
    return f"""max(abs(epoch_us(inclusive_start) % {HOUR_US})) AS hour_offset_max,
               coalesce(bit_count(bitstring_agg({slot}, 0, {slots - 1})), 0) AS slots_filled"""


def _line_columns(table: bool) -> list[str]:
    """What a line is: its key columns, and what its lines are made with."""
    values = ["pricing_group_values", *(["presentation_group_values"] if table else [])]
    return list(
        dict.fromkeys([*resolve.line_key_columns(table=table).split(", "), "product_id", *values])
    )


# A table's line is keyed by its group keys (load.group_key_sql); its values' text is made once
# per group of the check: its pricing group values from its rate piece (matched on the same
# values), its presentation group values from its key.
_FROM_KEYS = {
    "pricing_key": "pricing_group_values",
    "presentation_key": "presentation_group_values",
}


def _hashed_columns(table: bool) -> str:
    """The group columns a table's content hash reads: the values' text, not the keys (the same
    rows give the same hash whatever the form of their group values)."""
    return ", ".join(dict.fromkeys(_FROM_KEYS.get(c, c) for c in _group_columns(table)))


def _group_columns(table: bool) -> list[str]:
    """The columns `_line_weeks` groups rows by: the line's (its credit type comes with its rate
    piece), those its rows should share, and the rate piece."""
    line = [c for c in _line_columns(table) if c != "invoice_credit_type_id"]
    return list(dict.fromkeys([*line, *_UNIFORM_COLUMNS.split(", "), "rate_key"]))


# What a usage table row's rate piece (contract_rates.rate_key) decides: the piece is joined on
# them (resolve.resolved_sql).
_RATE_DETERMINES = ("contract_id", "product_id", "pricing_key")

# Usage row columns that are null on every row when the input has none of these columns.
_FROM_COLUMNS = {
    "presentation_group_values": ("presentation_group_values", "presentation."),
    "pricing_group_values": ("pricing_group_values", "pricing."),
    "pricing_key": ("pricing_group_values", "pricing."),
    "presentation_key": ("presentation_group_values", "presentation."),
    "credit_type_id": ("credit_type_id",),
    "billable_status": ("billable_status",),
    "granularity_given": ("breakdown_granularity",),
    "issue_date": ("issue_date",),
}


def _absent(column: str, kinds: Mapping[str, str] | None) -> bool:
    """The column is null on every row: the input has nothing it is read from."""
    sources = _FROM_COLUMNS.get(column)
    if kinds is None or sources is None:
        return False
    return not any(k == s or (s.endswith(".") and k.startswith(s)) for k in kinds for s in sources)


def _content_columns(kinds: Mapping[str, str] | None) -> str:
    """What a row says beyond the columns it is grouped by (those enter the content hash once
    per group): its window, quantity and the optional columns the input has."""
    optional = {
        "invoice_start": "invoice_inclusive_start_date",
        "invoice_end": "invoice_exclusive_end_date",
        "issue_date": "issue_date",
    }
    return ", ".join(
        [
            "inclusive_start",
            "exclusive_end",
            "quantity",
            *(c for c, name in optional.items() if kinds is None or name in kinds),
        ]
    )


def line_weeks_sql(
    quantity_kind: str,
    *,
    table: bool,
    rows: str = "usage_rows",
    slots: int = 24 * 31,
    kinds: Mapping[str, str] | None = None,
    day_splits: Sequence[int] | None = None,
) -> str:
    """The one scan that checks rows (into `_line_weeks`): the rows grouped by their line's
    columns, the columns a line's rows should share and their rate piece, a tiered line's rows by
    week too, with what the check needs (counts of rows that break a rule and of repeated
    windows, bounds for the rules checked per group) and what pricing needs (each group's
    quantity). Keys are hashed per group, not per row; rules on what a line's rows share are left
    to lines_sql. `slots`: the hours of the longest billing period expected (at least 24).

    `day_splits`: the times of day (microseconds past midnight) at which any billing period or
    rate piece the rows can meet begins or ends, midnight aside (resolve.DAY_SPLITS). Cut there,
    all rows of one part of a UTC day (and of one contract, product, pricing group values,
    customer and granularity) resolve alike. A usage table's rows are then grouped first as they
    are read (_day_groups_sql), and only those groups are resolved against periods and rates (at
    10M hourly rows, 1M groups joined instead of 10M rows). Where a rule checked row by row
    reads what a row resolves to, or rows name their own invoice periods, or `day_splits` is
    None, each row is resolved."""
    checked = [
        (r, r.group_condition(kinds))
        for r in row_rules(quantity_kind, table=table, kinds=kinds)
        if not r.per_line
    ]
    on_rows = [r for r, on_group in checked if on_group is None]
    on_groups = [
        f"coalesce({condition}, false)::INTEGER"
        for condition in dict.fromkeys(c for _, c in checked if c is not None)
    ]
    any_problem = (
        " OR ".join(f"coalesce({c}, false)" for c in dict.fromkeys(r.condition for r in on_rows))
        or "false"
    )
    # a column null on every row is not grouped by (hashing it costs as much as any other)
    # a table's groups make their values' text (_FROM_KEYS), so no row needs it
    made = list(_FROM_KEYS.values()) if table else []
    present = [c for c in _group_columns(table) if not _absent(c, kinds) and c not in made]
    # A table row's rate piece is of its contract, product and pricing group values: grouped by
    # the piece, those three come with it (at 100M rows, half a second less than hashing them).
    # Rows without a piece all have a problem: whatever their group, the rows are then checked
    # one by one (row_issues_sql).
    by_rate = [c for c in _RATE_DETERMINES if c in present] if table else []
    grouped = ", ".join(c for c in present if c not in by_rate)
    carried = "".join(f"any_value({c}) AS {c}, " for c in by_rate)
    nulls = "".join(
        f"NULL::VARCHAR AS {c}, "
        for c in _group_columns(table)
        if _absent(c, kinds) and c not in made
    )
    texts = (
        "r.pricing_group_values,"
        f" {load.group_values_sql(kinds, 'presentation', 'g.presentation_key')} AS presentation_group_values, "
        if table
        else ""
    )
    issue = (
        "NULL::TIMESTAMPTZ AS issue_min, NULL::TIMESTAMPTZ AS issue_max, 0 AS issue_count"
        if _absent("issue_date", kinds)
        else "min(issue_date) AS issue_min, max(issue_date) AS issue_max,"
        " count(issue_date) AS issue_count"
    )
    needs = " ".join(r.condition for r in on_rows)
    # a table's line is named by its first file: a file's index is far cheaper to carry than its
    # name (lines_sql's result is about a second faster at 100M rows); the run gives the name
    source = (
        "NULL::VARCHAR AS source, min(file_index) AS file_index"
        if table
        else "min(source) AS source, NULL::BIGINT AS file_index"
    )
    keys = resolve.line_key_columns(table=table)
    slot_count = max(slots, WEEK_US // HOUR_US)  # a tiered group is a week
    slot_span = slot_count * HOUR_US
    if (
        day_splits is not None
        and kinds is not None
        and table
        and not rows_name_periods(kinds)
        and not _reads_resolved(needs)
    ):
        days = _day_groups_sql(
            [c for c in present if c not in resolve.RESOLVED_COLUMNS],
            any_problem,
            nulls=nulls,
            splits=day_splits,
            rows=rows,
            kinds=kinds,
        )
        # the same value on every row of a rate piece; without one (a rejected run), the same
        # whatever order the day groups come in (the run's content hash reads it)
        carried_alike = carried.replace("any_value(", "min(")
        issue_of_days = (
            issue
            if _absent("issue_date", kinds)
            else "min(issue_min) AS issue_min, max(issue_max) AS issue_max,"
            " sum(issue_count)::BIGINT AS issue_count"
        )
        groups = f"""
        SELECT {grouped}, {carried_alike}{nulls}{TIER_WEEK_SQL} AS week,
               min(inclusive_start) AS start_min, max(start_max) AS start_max,
               max(end_max) AS end_max, sum(starts)::BIGINT AS starts, sum(ends)::BIGINT AS ends,
               {issue_of_days}, {source}, sum(rows)::BIGINT AS rows, sum(content_sum)::HUGEINT AS content_sum,
               max(hour_offset_max) AS hour_offset_max,
               -- hours of distinct days (or parts of a day) are distinct; without a rate
               -- piece, rows of several contracts may share a group: counted exactly
               CASE WHEN rate_key IS NOT NULL THEN coalesce(sum(bit_count(hours)), 0) END
                 AS slots_filled,
               max(day_offset_max) AS day_offset_max,
               sum(quantities)::BIGINT AS quantities, min(quantity_min) AS quantity_min,
               max(quantity_max) AS quantity_max,
               sum(row_problems)::BIGINT AS row_problems, bool_or(in_draft) AS draft,
               sum(quantity) AS quantity
        FROM ({resolve.resolved_sql(table=True, rows=f"({days})", keys=False, needs=needs)})
        GROUP BY {grouped}, {TIER_WEEK_SQL}"""
    else:
        groups = f"""
        SELECT {grouped}, {carried}{nulls}{TIER_WEEK_SQL} AS week,
               min(inclusive_start) AS start_min, max(inclusive_start) AS start_max,
               max(exclusive_end) AS end_max, count(inclusive_start) AS starts,
               count(exclusive_end) AS ends,
               {issue}, {source}, count(*) AS rows,
               sum(hash({_content_columns(kinds)}))::HUGEINT AS content_sum,
               {_slot_aggregates_sql(slot_count)},
               max(epoch_us(inclusive_start) % {DAY_US}) AS day_offset_max,
               count(quantity) AS quantities, min(quantity) AS quantity_min,
               max(quantity) AS quantity_max,
               count_if({any_problem}) AS row_problems, bool_or(in_draft) AS draft,
               sum(quantity) AS quantity
        FROM ({resolve.resolved_sql(table=table, rows=rows, keys=False, needs=needs)})
        GROUP BY {grouped}, {TIER_WEEK_SQL}"""
    # kept: what lines_sql, the tiers and the line items read (not the bounds the rules used)
    kept = ", ".join(
        dict.fromkeys(
            [
                *_group_columns(table),
                "week",
                "invoice_credit_type_id",
                "issue_min",
                "issue_max",
                "issue_count",
                "source",
                "file_index",
                "rows",
                "content_sum",
                "draft",
                "quantity",
                *_LOOKED_UP,
            ]
        )
    )
    return f"""
SELECT {kept}, hash({keys}) AS line_key, hash('check', {keys}) AS line_check,
       hash({resolve.tier_group_columns(table=table)}) AS tier_group,
       CASE WHEN starts <= 1 THEN 0
            WHEN hour_offset_max = 0 AND epoch_us(start_max) - epoch_us(start_min) < {slot_span}
            THEN starts - slots_filled END AS repeated_windows,
       row_problems + {" + ".join(on_groups) or "0"} AS problems
FROM (
    SELECT g.*, {texts}coalesce(g.credit_type_id, r.credit_type_id) AS invoice_credit_type_id,
           r.entitled, r.credit_type_id AS rate_credit_type_id, r.ending_before AS rate_ending_before,
           r.continues AS rate_continues,
           c.contract_id IS NOT NULL AS known_contract, c.customer_id AS contract_customer_id,
           c.starting_at AS contract_start, c.ending_before AS contract_end, c.generation_starts_at,
           kc.customer_id IS NOT NULL AS known_customer, kp.product_id IS NOT NULL AS known_product,
           kt.credit_type_id IS NOT NULL AS known_credit_type
    FROM ({groups}
    ) g
    LEFT JOIN {resolve.of_partition("contract_rates")} r ON r.rate_key = g.rate_key
    LEFT JOIN {resolve.of_partition("_contract_refs")} c ON c.contract_id = g.contract_id
    LEFT JOIN _known_customers kc ON kc.customer_id = g.customer_id
    LEFT JOIN _known_products kp ON kp.product_id = g.product_id
    LEFT JOIN _known_credit_types kt ON kt.credit_type_id = g.credit_type_id
) g
"""


def _reads_resolved(sql: str) -> bool:
    """Whether SQL over resolved rows reads a column resolving adds (resolve.RESOLVED_COLUMNS)."""
    return any(re.search(rf"\b{column}\b", sql) for column in resolve.RESOLVED_COLUMNS)


def _day_groups_sql(
    columns: list[str],
    any_problem: str,
    *,
    nulls: str,
    splits: Sequence[int],
    rows: str,
    kinds: Mapping[str, str],
) -> str:
    """A usage table's rows grouped as read, before they are resolved (line_weeks_sql with
    `day_splits`): by their own group columns, UTC day, part of the day (cut at `splits`) and
    week, each group with what the check sums up of its rows. A group's `inclusive_start` is its
    first start: what it is resolved by. The hours its windows start in are a bitmap of the
    day's 24 (a window starting off the hour is counted exactly: line_weeks_sql's
    repeated_windows). `nulls`: the group columns the table has not (resolving reads some)."""
    us = "epoch_us(inclusive_start)"
    since_midnight = resolve.since_midnight_sql("inclusive_start")
    issue = (
        ""
        if _absent("issue_date", kinds)
        else "min(issue_date) AS issue_min, max(issue_date) AS issue_max,"
        " count(issue_date) AS issue_count, "
    )
    # the part of the day: how many cuts lie at or before the start (none: the whole day)
    cuts = " + ".join(f"({since_midnight} >= {offset})::INTEGER" for offset in splits)
    part = [f"({cuts})"] if splits else []
    keys = ", ".join(
        [*columns, resolve.utc_day_sql("inclusive_start"), *part, f"{us} // {WEEK_US}"]
    )
    return f"""
    SELECT {", ".join(columns)}, {nulls}NULL::TIMESTAMPTZ AS invoice_start, NULL::TIMESTAMPTZ AS invoice_end,
           min(inclusive_start) AS inclusive_start, max(inclusive_start) AS start_max,
           max(exclusive_end) AS end_max, count(inclusive_start) AS starts,
           count(exclusive_end) AS ends, {issue}min(file_index) AS file_index, count(*) AS rows,
           sum(hash({_content_columns(kinds)}))::HUGEINT AS content_sum,
           max(abs({us} % {HOUR_US})) AS hour_offset_max,
           bit_or(1::INTEGER << ({since_midnight} // {HOUR_US})::INTEGER) AS hours,
           max({us} % {DAY_US}) AS day_offset_max,
           count(quantity) AS quantities, min(quantity) AS quantity_min,
           max(quantity) AS quantity_max, count_if({any_problem}) AS row_problems,
           sum(quantity) AS quantity
    FROM {rows}
    GROUP BY {keys}"""


def lines_sql(quantity_kind: str, *, table: bool, kinds: Mapping[str, str] | None = None) -> str:
    """The lines of `_line_weeks`, checked: each line's count of problems (its rows' and, once per
    line, the rules on what its rows share; a line whose rows disagree on those counts one, and
    row_issues_sql then checks its rows one by one) and of repeated windows (null: count them
    exactly). Lines and invoices are made from this; a second hash of the same key columns tells
    a (never seen) collision of line keys from a real line."""
    rules = row_rules(quantity_kind, table=table, kinds=kinds)
    per_line = [r for r in rules if r.per_line]
    line_problems = " + ".join(f"coalesce({r.condition}, false)::INTEGER" for r in per_line) or "0"
    columns = _line_columns(table)
    # what the line rules read: the same on every group of a uniform line (`_line_weeks` looked
    # each group's ids up); the line's own columns are grouped by (they make its key, cheaper
    # than carrying them: a collision of keys then shows as a key on two rows)
    attributes = "".join(
        f"any_value({column}) AS {column}, "
        for column in dict.fromkeys([*_UNIFORM_COLUMNS.split(", "), *_LOOKED_UP])
        if column not in columns
    )
    # the group keys stay here: lines are made of their values' text (less to hold at 100M rows)
    return f"""
SELECT line_key, {", ".join(c for c in columns if c not in _FROM_KEYS)}, tier_group, key_collision, customer_id, issued_at,
       issue_dates_differ, line_billable_status AS billable_status, billable_differs, source,
       file_index, rows,
       content_sum, repeated_windows, draft,
       (row_problems + CASE WHEN uniform THEN {line_problems} ELSE 1 END)::BIGINT AS problems
FROM (
    SELECT line_key, {", ".join(columns)}, {attributes}any_value(tier_group) AS tier_group,
           min(line_check) <> max(line_check) AS key_collision,
           max(issue_max) AS issued_at,
           coalesce(min(issue_min) <> max(issue_max), false)
             OR sum(issue_count) NOT IN (0, sum(rows)) AS issue_dates_differ,
           coalesce(min(billable_status), 'billable') AS line_billable_status,
           coalesce(min(billable_status) <> max(billable_status), false)
             OR coalesce(sum(rows) FILTER (WHERE billable_status IS NOT NULL), 0)
                NOT IN (0, sum(rows)) AS billable_differs,
           min(source) AS source, min(file_index) AS file_index, sum(rows)::BIGINT AS rows,
           sum(hash({_hashed_columns(table)}, week, content_sum))::HUGEINT AS content_sum,
           CASE WHEN count(repeated_windows) = count(*) THEN sum(repeated_windows)::BIGINT END
             AS repeated_windows,
           sum(problems) AS row_problems, bool_or(draft) AS draft,
           min(hash({_UNIFORM_COLUMNS})) = max(hash({_UNIFORM_COLUMNS})) AS uniform
    FROM _line_weeks
    GROUP BY line_key, {", ".join(columns)}
)
"""


# What the check counts over a run's checked lines (`_lines`, of lines_sql): one row.
LINES_COUNTED = """
SELECT coalesce(sum(rows), 0)::BIGINT AS rows,
       coalesce(sum(content_sum), 0)::VARCHAR AS content_sum,
       coalesce(bool_or(draft), false) AS has_drafts,
       coalesce(sum(problems), 0)::BIGINT AS problems,
       coalesce(sum(repeated_windows), 0)::BIGINT AS repeated_windows,
       count(*) - count(repeated_windows) AS repeats_uncounted
FROM _lines"""


def keys_unique_sql(*, table: bool) -> str:
    """Whether the line keys and tier-group keys of `_lines` (64-bit hashes) name distinct things:
    no line's two hashes disagree, no key is on two lines, and each tier group's key pairs one to
    one with a second hash of the same columns (as lines' keys and checks do)."""
    group = resolve.tier_group_columns(table=table)
    return f"""
SELECT NOT coalesce(bool_or(key_collision), false) AND count(DISTINCT line_key) = count(*)
       AND (SELECT count(DISTINCT tier_group) = count(*) AND count(DISTINCT tier_check) = count(*)
            FROM (SELECT DISTINCT tier_group, hash('check', {group}) AS tier_check FROM _lines))
FROM _lines"""


# Rows listed per rule (code and field), in input order; the others are counted. A systematic
# mistake in a hundred million rows (an unknown product, a file sent twice) is then a report,
# not a list of millions that outgrows the machine.
ROWS_LISTED_PER_RULE = 1000
_PLACE = "source, row, invoice_index, line_index, window_index"


def listed_sql(rows: str) -> str:
    """The rows of `rows` (_PLACE, field, code, message): the first
    ROWS_LISTED_PER_RULE of each rule in input order, each with `count` 1, then one line counting
    the rule's other rows (`count` their number). An aggregate: bounded memory."""
    place = ", ".join(f"'{c}': {c}" for c in _PLACE.split(", "))
    listed = ROWS_LISTED_PER_RULE
    return f"""
WITH ruled AS (
    SELECT code, field, count(*) AS occurrences,
           arg_min({{{place}, 'message': message}}, {{{place}}}, {listed})
             AS first
    FROM ({rows}) GROUP BY ALL
),
listed AS (SELECT code, field, occurrences, unnest(first, recursive := true) FROM ruled)
SELECT {_PLACE}, field, code, message, 1 AS count FROM listed
UNION ALL
SELECT first[1].source, NULL, NULL, NULL, NULL, field, code,
       format('{{:,}} more rows like these; the first {listed:,} are listed', occurrences - {listed}),
       occurrences - {listed}
FROM ruled WHERE occurrences > {listed}
"""


def row_issues_sql(
    quantity_kind: str, *, table: bool, kinds: Mapping[str, str] | None = None
) -> str:
    """The failing rows with every rule they break (run only when lines_sql counted problems),
    listed (listed_sql)."""
    rules = row_rules(quantity_kind, table=table, kinds=kinds)
    checks = ",\n        ".join(
        f"CASE WHEN coalesce({r.condition}, false) THEN {{'code': {_sql_text(r.code)},"
        f" 'field': {_sql_text(r.field)}, 'message': {r.message}}} END"
        for r in rules
    )
    any_problem = " OR ".join(f"coalesce({r.condition}, false)" for r in rules)
    return listed_sql(f"""
WITH rated AS ({resolve.resolved_sql(table=table)}),
found AS (
    SELECT {_PLACE},
           unnest(list_filter([
        {checks}
           ], lambda x: x IS NOT NULL)) AS issue
    FROM rated
    WHERE {any_problem}
)
SELECT {_PLACE}, issue.field AS field, issue.code AS code,
       {_ROW_NAME} || ': ' || issue.message AS message
FROM found
""")


_ROW_NAME = """CASE WHEN row IS NOT NULL THEN 'row ' || row ELSE 'invoice ' || invoice_index || ', line ' || line_index
            || CASE WHEN window_index >= 0 THEN ', window ' || window_index ELSE '' END END"""


# What a row says: who, what, when (with ROW_CONTENT, all of it; file and row number aside).
ROW_IDENTITY = (
    "customer_id, contract_id, product_id, inclusive_start, pricing_group_values,"
    " presentation_group_values, granularity"
)
# What makes two rows of one line and window the same row (their file and row number aside).
ROW_CONTENT = "quantity, exclusive_end, invoice_start, invoice_end, issue_date, billable_status, credit_type_id"


def row_position(alias: str) -> str:
    """A table row's place as one integer, in input order: its file's index, then its row (rows
    below 2^40)."""
    return f"({alias}.file_index << 40) + {alias}.row"


# A usage table's rows with exact duplicates collapsed to their first copy: what is priced when
# the check found duplicates (the check itself reads every row). An anti-join on the copies
# (`_dropped_copies`, dropped_copies_sql), not a window over every row; written as one (NOT
# EXISTS on an expression was planned as a correlated join, three times as slow).
UNIQUE_ROWS = f"""
SELECT u.* FROM usage_rows u ANTI JOIN _dropped_copies d ON d.position = {row_position("u")}
"""


def repeated_windows_sql(*, table: bool) -> str:
    """Rows of one line for the same window (run only when lines_sql counted some).

    In a usage table, copies that agree in every column are exact duplicates: collapsed, priced
    once and reported (code DUPLICATE_ROW, not a problem; the first copy is not reported);
    copies that disagree are a CONFLICTING_DUPLICATE. In a JSON batch two windows of one line
    never share a start. Listed (listed_sql).
    """
    if table:
        code = "CASE WHEN identical THEN 'DUPLICATE_ROW' ELSE 'CONFLICTING_DUPLICATE' END"
        what = "CASE WHEN identical THEN ' identical rows' ELSE ' rows that disagree' END"
        # a file's index, its name found only for the repeated rows
        place, named = (
            f"{row_position('u')} AS position, file_index",
            "JOIN _sources USING (file_index)",
        )
        reported = "NOT (identical AND position = first)"  # the first copy is the one priced
    else:
        code, what = "'WINDOW_OVERLAP'", "' windows'"
        place, named, reported = "NULL::BIGINT AS position, source", "", "true"
    # Repeats are found by grouping (which spills), on integers, and only their rows are joined
    # back: window functions over every row ran DuckDB out of memory at 100M rows, and over the
    # repeated rows, with the file names carried along, took most of a 20M-row run's check.
    return listed_sql(f"""
WITH rows AS (
    SELECT {place}, row, invoice_index, line_index, window_index, line_key, inclusive_start,
           hash({ROW_CONTENT}) AS content
    FROM ({resolve.resolved_sql(table=table)}) u
    WHERE inclusive_start IS NOT NULL
),
repeated AS (
    SELECT line_key, inclusive_start, count(*) AS copies, min(content) = max(content) AS identical,
           min(position) AS first
    FROM rows GROUP BY ALL HAVING count(*) > 1
)
SELECT source, row, invoice_index, line_index, window_index, 'inclusive_start_date' AS field,
       {code} AS code,
       {_ROW_NAME} || ': ' || copies || {what} || ' of the same line for the window starting '
       || strftime(inclusive_start, '%Y-%m-%dT%H:%M:%SZ') AS message
FROM rows JOIN repeated USING (line_key, inclusive_start) {named}
WHERE {reported}
""")


def dropped_copies_sql() -> str:
    """The rows of a usage table (`position`) that are exact copies of an earlier row: those
    whose every column (but file and row) hashes as an earlier row's does, in two hashes of 64
    bits. Rows are grouped by that, on integers only: with window functions, or with the file's
    name carried along, it took four times as long at 20M rows."""
    # the group keys stand for the group values one for one, and need no JSON text per row
    columns = ROW_IDENTITY.replace("_group_values", "_key") + ", " + ROW_CONTENT
    return f"""
WITH rows AS (
    SELECT {row_position("u")} AS position, hash({columns}) AS content, hash('again', {columns}) AS again
    FROM usage_rows u
),
repeated AS (
    SELECT content, again, min(position) AS first FROM rows GROUP BY ALL HAVING count(*) > 1
)
SELECT position FROM rows JOIN repeated USING (content, again) WHERE position <> first
"""


def _same(columns: str, left: str, right: str) -> str:
    """Column by column equality, nulls equal (a join condition)."""
    return " AND ".join(f"{left}.{c} IS NOT DISTINCT FROM {right}.{c}" for c in columns.split(", "))


def same_row(left: str, right: str) -> str:
    """Two usage rows say the same (their file and row number aside): a join condition."""
    return f"{_same(ROW_IDENTITY, left, right)} AND {_same(ROW_CONTENT, left, right)}"


# A usage table's row for a window of a current DRAFT period whose usage an earlier run kept
# (`_draft_usage`): the same row again is an exact duplicate (collapsed, reported), another
# row for that window a CONFLICTING_DUPLICATE, as within one run. Shaped as repeated_windows_sql
# (the kept row is the window's first copy, so this one is always reported).
KEPT_DRAFT_REPEATS = listed_sql(f"""
SELECT source, row, invoice_index, line_index, window_index, 'inclusive_start_date' AS field,
       CASE WHEN same THEN 'DUPLICATE_ROW' ELSE 'CONFLICTING_DUPLICATE' END AS code,
       'row ' || row || ': the window starting ' || strftime(inclusive_start, '%Y-%m-%dT%H:%M:%SZ')
         || ' was given by import run ' || kept_by
         || CASE WHEN same THEN ' with the same values' ELSE ' with other values' END AS message
FROM (
    SELECT u.source, u.row, u.invoice_index, u.line_index, u.window_index, u.inclusive_start,
           bool_or({_same(ROW_CONTENT, "u", "k")}) AS same, min(k.run_id) AS kept_by
    FROM usage_rows u
    JOIN _draft_usage k ON {_same(ROW_IDENTITY, "u", "k")}
    JOIN _draft_periods dp
      ON dp.contract_id = k.contract_id AND dp.inclusive_start <= k.inclusive_start
     AND k.inclusive_start < dp.exclusive_end
    GROUP BY ALL
)
""")
