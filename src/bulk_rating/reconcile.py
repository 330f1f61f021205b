"""Legacy invoices against imported ones: one FULL OUTER JOIN per level, as SQL that `store` runs.

Invoices match on customer, contract (when the legacy file names it), credit type and period; an
unmatched pair of one customer and contract whose periods overlap is a PERIOD_MISMATCH. A legacy
invoice without a contract that overlaps imported invoices of more than one contract is AMBIGUOUS
(never paired with any; the imported invoices left without a pair are AMBIGUOUS too), and
`candidates` names the other side's ids. Each legacy invoice is listed once. Lines
match on invoice and product (an imported product's lines, across tiers and rate pieces, add
up), for the invoices whose legacy export lists lines. Amounts compare after rounding half-even to whole units (money.round_to_units, done in SQL
as round_even), within a tolerance in units. Legacy totals are in the credit type's smallest unit
(cents) unless given in whole units (`--legacy-unit major`, turned into cents exactly in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating.markup import DASH, STYLE, escaped, when
from bulk_rating.models import USD_CENTS_ID, USD_CENTS_NAME
from bulk_rating.money import exact_money, format_decimal, format_money, round_to_units

STATUSES = (
    "MATCH",
    "AMOUNT_MISMATCH",
    "QUANTITY_MISMATCH",
    "PERIOD_MISMATCH",
    "AMBIGUOUS",
    "MISSING_IN_IMPORT",
    "MISSING_IN_LEGACY",
)

# Relations: legacy_invoices(legacy_invoice_id, customer_id, contract_id, credit_type_id,
# inclusive_start, exclusive_end, total), legacy_lines(legacy_invoice_id, product_id, quantity,
# total), imported_invoices(invoice_id, customer_id, contract_id, credit_type_id,
# start_timestamp, end_timestamp, total), imported_lines(invoice_id, product_id, quantity, total).
INVOICE_DIFF = """
WITH legacy AS (  -- legacy_row: one key per legacy invoice row, whatever its id
    SELECT *, round_even(total, 0) AS units, row_number() OVER () AS legacy_row FROM legacy_invoices
),
imported AS (
    SELECT *, round_even(total, 0) AS units FROM imported_invoices
),
candidates AS (  -- what each legacy invoice could be: same customer and credit type, the same
                 -- contract when the export names one, an overlapping period
    SELECT l.legacy_row, l.legacy_invoice_id, i.invoice_id, i.contract_id,
           l.inclusive_start = i.start_timestamp AND l.exclusive_end = i.end_timestamp AS same_period
    FROM legacy l JOIN imported i
      ON l.customer_id = i.customer_id AND l.credit_type_id = i.credit_type_id
     AND (l.contract_id IS NULL OR l.contract_id = i.contract_id)
     AND l.inclusive_start < i.end_timestamp AND i.start_timestamp < l.exclusive_end
),
ambiguous AS (  -- no contract named and candidates of more than one contract: reported, not guessed
    SELECT legacy_row FROM candidates GROUP BY legacy_row HAVING count(DISTINCT contract_id) > 1
),
pairs AS (  -- at most one per legacy invoice: the periods of one contract never overlap
    SELECT legacy_row, invoice_id FROM candidates
    WHERE same_period AND legacy_row NOT IN (SELECT legacy_row FROM ambiguous)
),
unpaired AS (  -- candidates whose legacy and imported invoices are both left without a pair
    SELECT * FROM candidates
    WHERE legacy_row NOT IN (SELECT legacy_row FROM pairs)
      AND invoice_id NOT IN (SELECT invoice_id FROM pairs)
),
legacy_named AS (  -- each unpaired legacy invoice's overlapping unpaired imported ones (every
                   -- candidate, when ambiguous)
    SELECT legacy_row, string_agg(invoice_id, ',' ORDER BY invoice_id) AS candidates
    FROM candidates
    WHERE legacy_row IN (SELECT legacy_row FROM ambiguous)
       OR (legacy_row NOT IN (SELECT legacy_row FROM pairs)
           AND invoice_id NOT IN (SELECT invoice_id FROM pairs))
    GROUP BY legacy_row
),
imported_named AS (  -- each unpaired imported invoice's overlapping unpaired legacy ones
    SELECT invoice_id, string_agg(legacy_invoice_id, ',' ORDER BY legacy_invoice_id) AS candidates,
           bool_or(legacy_row IN (SELECT legacy_row FROM ambiguous)) AS ambiguous
    FROM unpaired GROUP BY invoice_id
),
paired AS (  -- one row per legacy invoice, then one per imported invoice without a pair
    SELECT l.legacy_invoice_id, i.invoice_id, l.customer_id,
           coalesce(l.contract_id, i.contract_id) AS contract_id, l.credit_type_id,
           l.inclusive_start, l.exclusive_end,
           l.total AS legacy_total, i.total AS imported_total, l.units AS legacy_units, i.units AS imported_units,
           CASE
             WHEN i.invoice_id IS NOT NULL THEN NULL
             WHEN l.legacy_row IN (SELECT legacy_row FROM ambiguous) THEN 'AMBIGUOUS'
             WHEN n.candidates IS NOT NULL THEN 'PERIOD_MISMATCH'
             ELSE 'MISSING_IN_IMPORT'
           END AS unpaired_status,
           n.candidates
    FROM legacy l
    LEFT JOIN pairs p ON p.legacy_row = l.legacy_row
    LEFT JOIN imported i ON i.invoice_id = p.invoice_id
    LEFT JOIN legacy_named n ON n.legacy_row = l.legacy_row
    UNION ALL
    SELECT NULL, i.invoice_id, i.customer_id, i.contract_id, i.credit_type_id,
           i.start_timestamp, i.end_timestamp, NULL, i.total, NULL, i.units,
           CASE
             WHEN n.ambiguous THEN 'AMBIGUOUS'
             WHEN n.invoice_id IS NOT NULL THEN 'PERIOD_MISMATCH'
             ELSE 'MISSING_IN_LEGACY'
           END,
           n.candidates
    FROM imported i LEFT JOIN imported_named n ON n.invoice_id = i.invoice_id
    WHERE i.invoice_id NOT IN (SELECT invoice_id FROM pairs)
)
SELECT legacy_invoice_id, invoice_id, customer_id, contract_id, credit_type_id, inclusive_start,
       exclusive_end, legacy_total, imported_total, legacy_units, imported_units,
       coalesce(imported_units, 0) - coalesce(legacy_units, 0) AS difference,
       coalesce(
         unpaired_status,
         CASE WHEN abs(imported_units - legacy_units) > $tolerance THEN 'AMOUNT_MISMATCH' ELSE 'MATCH' END
       ) AS status,
       candidates
FROM paired
ORDER BY customer_id, contract_id, inclusive_start, legacy_invoice_id, invoice_id
"""

LINE_DIFF = """
WITH pairs AS (  -- matched invoices whose legacy export itemizes lines
    SELECT legacy_invoice_id, invoice_id FROM invoice_diff
    WHERE legacy_invoice_id IS NOT NULL AND invoice_id IS NOT NULL
      AND legacy_invoice_id IN (SELECT legacy_invoice_id FROM legacy_lines)
),
legacy AS (
    SELECT l.legacy_invoice_id, p.invoice_id, l.product_id, sum(l.quantity) AS quantity, sum(l.total) AS total
    FROM legacy_lines l JOIN pairs p USING (legacy_invoice_id) GROUP BY ALL
),
imported AS (
    SELECT p.legacy_invoice_id, l.invoice_id, l.product_id, sum(l.quantity) AS quantity, sum(l.total) AS total
    FROM imported_lines l JOIN pairs p USING (invoice_id) GROUP BY ALL
),
paired AS (
    SELECT coalesce(l.legacy_invoice_id, i.legacy_invoice_id) AS legacy_invoice_id,
           coalesce(l.invoice_id, i.invoice_id) AS invoice_id,
           coalesce(l.product_id, i.product_id) AS product_id,
           l.quantity AS legacy_quantity, i.quantity AS imported_quantity,
           l.total AS legacy_total, i.total AS imported_total,
           l.product_id IS NOT NULL AS in_legacy, i.product_id IS NOT NULL AS in_import
    FROM legacy l FULL OUTER JOIN imported i USING (legacy_invoice_id, product_id)
)
SELECT *, coalesce(round_even(imported_total, 0), 0) - coalesce(round_even(legacy_total, 0), 0) AS difference,
       CASE
         WHEN NOT in_import THEN 'MISSING_IN_IMPORT'
         WHEN NOT in_legacy THEN 'MISSING_IN_LEGACY'
         WHEN legacy_quantity IS NOT NULL AND legacy_quantity <> imported_quantity THEN 'QUANTITY_MISMATCH'
         WHEN abs(round_even(imported_total, 0) - round_even(legacy_total, 0)) > $tolerance THEN 'AMOUNT_MISMATCH'
         ELSE 'MATCH'
       END AS status
FROM paired
ORDER BY legacy_invoice_id, product_id
"""

# The digits of a credit type's smallest unit in its whole unit: a cent is 10^-2 dollars. Custom
# credit types have no smaller unit (0). `--legacy-unit major` multiplies legacy totals by 10^digits.
MINOR_DIGITS = {USD_CENTS_ID: 2}
LEGACY_UNITS = ("minor", "major")


def legacy_to_minor_sql() -> list[str]:
    """Statements that turn legacy totals given in whole units (dollars) into the credit type's
    smallest unit (cents), exactly: DECIMAL times an integer, never a float. Lines take their
    invoice's credit type. Run on the legacy temp tables, lines first (invoices keep their type)."""
    factor = " ".join(
        f"WHEN '{credit_type}' THEN {10**digits}" for credit_type, digits in MINOR_DIGITS.items()
    )
    case = f"CASE credit_type_id {factor} ELSE 1 END"
    return [
        f"""UPDATE legacy_lines SET total = total * f.factor
            FROM (SELECT legacy_invoice_id, max({case}) AS factor FROM legacy_invoices GROUP BY ALL) f
            WHERE legacy_lines.legacy_invoice_id = f.legacy_invoice_id""",
        f"UPDATE legacy_invoices SET total = total * {case}",
    ]


PERIOD_TOTALS = """
SELECT strftime(inclusive_start, '%Y-%m') AS period, credit_type_id,
       sum(imported_units) AS imported, sum(legacy_units) AS legacy
FROM invoice_diff GROUP BY ALL ORDER BY period, credit_type_id
"""

# PERIOD_TOTALS's rows, as a reconciliation run keeps them for its report's chart
PERIOD_COLUMNS = {
    "period": pl.String(),
    "credit_type_id": pl.String(),
    "imported": pl.Decimal(38, 0),
    "legacy": pl.Decimal(38, 0),
}

LEGACY_COLUMNS = {
    "legacy_invoice_id": pl.String(),
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "credit_type_id": pl.String(),
    "inclusive_start": pl.Datetime("us", "UTC"),
    "exclusive_end": pl.Datetime("us", "UTC"),
    "total": pl.Decimal(38, 9),
}
LEGACY_LINE_COLUMNS = {
    "legacy_invoice_id": pl.String(),
    "product_id": pl.String(),
    "quantity": pl.Decimal(38, 9),
    "total": pl.Decimal(38, 9),
}


@dataclass
class Reconciliation:
    invoices: pl.DataFrame
    lines: pl.DataFrame
    tolerance: Decimal
    preview: bool
    issues: pl.DataFrame = field(default_factory=pl.DataFrame)
    # What the report says about the run: names of the credit types (id -> name), when it ran,
    # what it compared with ("the database x.duckdb", "a preview of ..."), the legacy files and
    # the unit of their totals.
    credit_types: dict[str, str] = field(default_factory=lambda: {USD_CENTS_ID: USD_CENTS_NAME})
    run_at: datetime | None = None
    compared_with: str = ""
    legacy_files: Sequence[str] = ()
    legacy_unit: str = "minor"

    @property
    def differences(self) -> int:
        """Invoices and lines that are not a MATCH."""
        frames = [f for f in (self.invoices, self.lines) if f.height]
        return sum(int(f.filter(pl.col("status") != "MATCH").height) for f in frames)

    def counts(self) -> dict[str, dict[str, int]]:
        def by_status(frame: pl.DataFrame) -> dict[str, int]:
            found = dict(frame.group_by("status").len().iter_rows()) if frame.height else {}
            return {status: int(found.get(status, 0)) for status in STATUSES}

        return {"invoices": by_status(self.invoices), "lines": by_status(self.lines)}

    def money_difference(self) -> list[dict[str, Any]]:
        """The total difference per credit type, in whole units (imported minus legacy)."""
        if not self.invoices.height:
            return []
        frame = (
            self.invoices.group_by("credit_type_id")
            .agg(pl.col("difference").sum())
            .sort("credit_type_id")
        )
        return [{"credit_type_id": c, "difference": d} for c, d in frame.iter_rows()]

    def summary(self) -> dict[str, Any]:
        return {
            "preview": self.preview,
            "tolerance": self.tolerance,
            "legacy_unit": self.legacy_unit,
            "counts": self.counts(),
            "difference": self.money_difference(),
            "differences": self.differences,
        }


def results_table(result: Reconciliation) -> pl.DataFrame:
    """Invoice and line results in the shape of `reconciliation_results`."""
    invoices = result.invoices.select(
        pl.lit("invoice").alias("level"),
        "status",
        "customer_id",
        "contract_id",
        "credit_type_id",
        "inclusive_start",
        "exclusive_end",
        "legacy_invoice_id",
        "invoice_id",
        pl.lit(None, pl.String).alias("product_id"),
        pl.lit(None, pl.Decimal(38, 9)).alias("legacy_quantity"),
        pl.lit(None, pl.Decimal(38, 9)).alias("imported_quantity"),
        "legacy_total",
        "imported_total",
        "difference",
        "candidates",
        "legacy_units",
        "imported_units",
    )
    if not result.lines.height:
        return invoices
    lines = result.lines.join(
        result.invoices.select(
            "invoice_id",
            "customer_id",
            "contract_id",
            "credit_type_id",
            "inclusive_start",
            "exclusive_end",
        ),
        on="invoice_id",
        how="left",
    ).select(
        pl.lit("line").alias("level"),
        "status",
        "customer_id",
        "contract_id",
        "credit_type_id",
        "inclusive_start",
        "exclusive_end",
        "legacy_invoice_id",
        "invoice_id",
        "product_id",
        "legacy_quantity",
        "imported_quantity",
        "legacy_total",
        "imported_total",
        "difference",
        pl.lit(None, pl.String).alias("candidates"),
        pl.lit(None, pl.Decimal(38, 0)).alias("legacy_units"),
        pl.lit(None, pl.Decimal(38, 0)).alias("imported_units"),
    )
    return pl.concat([invoices, lines], how="vertical_relaxed")


# --- the report for people ----------------------------------------------------------------------

DESCRIPTIONS = {
    "AMOUNT_MISMATCH": "matched, but the totals differ beyond the tolerance",
    "QUANTITY_MISMATCH": "the quantities differ",
    "PERIOD_MISMATCH": "the same customer and contract, overlapping but different periods",
    "AMBIGUOUS": "no contract named and several contracts possible: not paired",
    "MISSING_IN_IMPORT": "in the legacy export only",
    "MISSING_IN_LEGACY": "imported only",
}
# Lists longer than this are collapsed (<details>), never cut.
COLLAPSE_AFTER = 25
CHART_WIDTH = 1000
# what the report adds to the pages' style (the Contracts page shows kept runs with it too)
REPORT_STYLE_ADDED = """
td,th{overflow-wrap:anywhere;font-size:13px}td.id{font-family:ui-monospace,monospace;font-size:12px}
h3{font-size:15px;margin:20px 0 4px}p.note{font-size:13px;color:#4a5260;margin:4px 0 8px}
details summary{cursor:pointer;margin:6px 0;color:#3559c7}svg .imported{fill:#2f4fb3}
svg .legacy{fill:#a9b9e8}svg{background:#fff;border:1px solid #dde1e7;max-width:100%}
table#summary,table#difference{width:auto;min-width:420px}
"""
REPORT_STYLE = STYLE + REPORT_STYLE_ADDED


def html_report(result: Reconciliation, periods: pl.DataFrame, title: str) -> str:
    """A self-contained page for finance: what was compared, the summary per status, every
    difference grouped by status (money through `format_money`, exact on hover), and a chart of
    imported against legacy totals per month (inline SVG, no script, nothing fetched)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escaped(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{REPORT_STYLE}</style></head>
<body><main><h1>{escaped(title)}</h1>
{report_sections(result, periods)}
</main></body></html>
"""


def report_sections(result: Reconciliation, periods: pl.DataFrame) -> str:
    """The report's content, below its title: what html_report and the page of a kept run show."""
    return f"""{_metadata(result)}
<h2>Summary</h2>
{_summary(result)}
<h2>Total difference per credit type (imported minus legacy)</h2>
{_money_differences(result)}
<h2>Invoice differences</h2>
{_invoice_differences(result)}
<h2>Line differences</h2>
{_line_differences(result)}
<h2>Totals per month: imported and legacy</h2>
{_charts(result, periods)}
"""


def _name(result: Reconciliation, credit_type_id: str | None) -> str:
    return result.credit_types.get(credit_type_id or "", credit_type_id or "")


def _money(result: Reconciliation, amount: Any, credit_type_id: str | None) -> str:
    """An amount's cell: rounded half-even to whole units (cents), as compared; exact on hover."""
    if amount is None:
        return '<td class="num"></td>'
    value = Decimal(str(amount))
    name = _name(result, credit_type_id)
    shown = format_money(round_to_units(value), credit_type_id or "", name)
    return f'<td class="num" title="{escaped(exact_money(value, name))}">{escaped(shown)}</td>'


def _period(start: Any, end: Any) -> str:
    return f"{when(start)} {DASH} {when(end)}" if start is not None else ""


def _unit_words(unit: str) -> str:
    if unit == "major":
        return (
            "whole currency units (dollars for USD), multiplied by 10^(the credit type's decimals:"
            " 100 for USD) on reading"
        )
    return "the credit type's smallest unit (cents for USD; custom credit types: whole units)"


def _metadata(result: Reconciliation) -> str:
    run_at = result.run_at.strftime("%Y-%m-%d %H:%M UTC") if result.run_at else ""
    files = "<br>".join(escaped(f) for f in result.legacy_files)
    return f"""<dl id="meta">
<dt>Run</dt><dd>{escaped(run_at)}</dd>
<dt>Compared with</dt><dd>{escaped(result.compared_with)}</dd>
<dt>Legacy files</dt><dd>{files}</dd>
<dt>Legacy totals in</dt><dd>{escaped(_unit_words(result.legacy_unit))}</dd>
<dt>Tolerance</dt><dd>{escaped(result.tolerance)} whole units (cents for USD) per total</dd>
<dt>Rounding</dt><dd>amounts compared and shown rounded half-even to whole units;
hover an amount for its exact value. Differences are imported minus legacy. Dates are UTC.</dd>
</dl>"""


def _summary(result: Reconciliation) -> str:
    counts = result.counts()
    rows = "".join(
        f'<tr><td>{s}</td><td class="num">{counts["invoices"][s]:,}</td>'
        f'<td class="num">{counts["lines"][s]:,}</td></tr>'
        for s in STATUSES
    )
    return (
        '<table id="summary"><tr><th>status</th><th class="num">invoices</th>'
        f'<th class="num">lines</th></tr>{rows}</table>'
    )


def _money_differences(result: Reconciliation) -> str:
    rows = "".join(
        f"<tr><td>{escaped(_name(result, d['credit_type_id']))}</td>"
        f"{_money(result, d['difference'], d['credit_type_id'])}</tr>"
        for d in result.money_difference()
    )
    return (
        '<table id="difference"><tr><th>credit type</th><th class="num">difference</th></tr>'
        f"{rows}</table>"
    )


def _listing(table_id: str, header: str, rows: list[str], noun: str) -> str:
    """A table of every row; a long one collapsed under <details>, never cut."""
    table = f'<table id="{table_id}"><tr>{header}</tr>{"".join(rows)}</table>'
    if len(rows) > COLLAPSE_AFTER:
        return f"<details><summary>show all {len(rows):,} {noun}</summary>{table}</details>"
    return table


def _by_size(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(_size=pl.col("difference").abs()).sort(
        ["_size", "customer_id", "inclusive_start"], descending=[True, False, False]
    )


def _invoice_differences(result: Reconciliation) -> str:
    invoices = result.invoices
    if not invoices.height or not invoices.filter(pl.col("status") != "MATCH").height:
        return "<p>None: every invoice matches.</p>"
    parts = []
    for status in STATUSES[1:]:
        if status == "QUANTITY_MISMATCH":
            continue  # a line-level status
        chosen = invoices.filter(pl.col("status") == status)
        if not chosen.height:
            continue
        if status == "PERIOD_MISMATCH":
            rows, header = _period_pairs(result, chosen), _PAIR_HEADER
        else:
            rows = [_invoice_row(result, r) for r in _by_size(chosen).iter_rows(named=True)]
            header = _INVOICE_HEADER
        noun = ("pair" if status == "PERIOD_MISMATCH" else "invoice") + (
            "" if len(rows) == 1 else "s"
        )
        parts.append(
            f'<h3 id="{status}">{status}: {len(rows):,} {noun}</h3>'
            f'<p class="note">{escaped(DESCRIPTIONS[status])}</p>'
            + _listing(f"invoices-{status}", header, rows, noun)
        )
    return "\n".join(parts)


_INVOICE_HEADER = (
    "<th>customer</th><th>contract</th><th>period</th><th>legacy invoice</th>"
    '<th>imported invoice</th><th class="num">legacy total</th>'
    '<th class="num">imported total</th><th class="num">difference</th><th>candidates</th>'
)
_PAIR_HEADER = (
    "<th>customer</th><th>contract</th><th>legacy invoice</th><th>legacy period</th>"
    '<th class="num">legacy total</th><th>imported invoice</th><th>imported period</th>'
    '<th class="num">imported total</th><th class="num">difference</th>'
)


def _invoice_row(result: Reconciliation, r: dict[str, Any]) -> str:
    credit_type = r["credit_type_id"]
    return (
        f'<tr><td class="id">{escaped(r["customer_id"])}</td><td class="id">{escaped(r["contract_id"])}</td>'
        f"<td>{escaped(_period(r['inclusive_start'], r['exclusive_end']))}</td>"
        f'<td class="id">{escaped(r["legacy_invoice_id"])}</td><td class="id">{escaped(r["invoice_id"])}</td>'
        + _money(result, r["legacy_total"], credit_type)
        + _money(result, r["imported_total"], credit_type)
        + _money(result, r["difference"], credit_type)
        + f'<td class="id">{escaped((r["candidates"] or "").replace(",", ", "))}</td></tr>'
    )


def _period_pairs(result: Reconciliation, chosen: pl.DataFrame) -> list[str]:
    """One row per legacy invoice: its period beside the imported invoices it overlaps (its
    `candidates`); an imported one that no legacy row names gets a row of its own."""
    imported = {
        r["invoice_id"]: r
        for r in chosen.filter(pl.col("invoice_id").is_not_null()).iter_rows(named=True)
    }
    named: set[str] = set()
    rows = []
    for r in chosen.filter(pl.col("legacy_invoice_id").is_not_null()).iter_rows(named=True):
        ids = [i for i in (r["candidates"] or "").split(",") if i in imported]
        named.update(ids)
        others = [imported[i] for i in ids]
        credit_type = r["credit_type_id"]
        units = sum((Decimal(o["imported_units"] or 0) for o in others), Decimal(0))
        total = sum((Decimal(o["imported_total"] or 0) for o in others), Decimal(0))
        rows.append(
            f'<tr><td class="id">{escaped(r["customer_id"])}</td><td class="id">{escaped(r["contract_id"])}</td>'
            f'<td class="id">{escaped(r["legacy_invoice_id"])}</td>'
            f"<td>{escaped(_period(r['inclusive_start'], r['exclusive_end']))}</td>"
            + _money(result, r["legacy_total"], credit_type)
            + f'<td class="id">{"<br>".join(escaped(o["invoice_id"]) for o in others)}</td>'
            f"<td>{'<br>'.join(escaped(_period(o['inclusive_start'], o['exclusive_end'])) for o in others)}</td>"
            + _money(result, total if others else None, credit_type)
            + _money(result, units - Decimal(r["legacy_units"] or 0), credit_type)
            + "</tr>"
        )
    for invoice_id, o in imported.items():
        if invoice_id in named:
            continue
        credit_type = o["credit_type_id"]
        rows.append(
            f'<tr><td class="id">{escaped(o["customer_id"])}</td><td class="id">{escaped(o["contract_id"])}</td>'
            f'<td class="id">{escaped(o["candidates"])}</td><td></td>'
            + _money(result, None, credit_type)
            + f'<td class="id">{escaped(invoice_id)}</td>'
            f"<td>{escaped(_period(o['inclusive_start'], o['exclusive_end']))}</td>"
            + _money(result, o["imported_total"], credit_type)
            + _money(result, o["difference"], credit_type)
            + "</tr>"
        )
    return rows


def _line_differences(result: Reconciliation) -> str:
    lines = result.lines
    if not lines.height or not lines.filter(pl.col("status") != "MATCH").height:
        return "<p>None: every line the legacy export lists matches.</p>"
    kinds = result.invoices.filter(pl.col("invoice_id").is_not_null()).select(
        "invoice_id", "credit_type_id"
    )
    lines = lines.join(kinds, on="invoice_id", how="left")
    parts = []
    header = (
        "<th>legacy invoice</th><th>imported invoice</th><th>product</th>"
        '<th class="num">legacy quantity</th><th class="num">imported quantity</th>'
        '<th class="num">legacy total</th><th class="num">imported total</th>'
        '<th class="num">difference</th>'
    )
    for status in STATUSES[1:]:
        chosen = lines.filter(pl.col("status") == status)
        if not chosen.height:
            continue
        rows = [
            f'<tr><td class="id">{escaped(r["legacy_invoice_id"])}</td>'
            f'<td class="id">{escaped(r["invoice_id"])}</td><td class="id">{escaped(r["product_id"])}</td>'
            f'<td class="num">{escaped(_quantity(r["legacy_quantity"]))}</td>'
            f'<td class="num">{escaped(_quantity(r["imported_quantity"]))}</td>'
            + _money(result, r["legacy_total"], r["credit_type_id"])
            + _money(result, r["imported_total"], r["credit_type_id"])
            + _money(result, r["difference"], r["credit_type_id"])
            + "</tr>"
            for r in chosen.with_columns(_size=pl.col("difference").abs())
            .sort(["_size", "legacy_invoice_id", "product_id"], descending=[True, False, False])
            .iter_rows(named=True)
        ]
        parts.append(
            f'<h3 id="lines-{status}-heading">{status}: {len(rows):,} line{"" if len(rows) == 1 else "s"}</h3>'
            + _listing(f"lines-{status}", header, rows, "lines")
        )
    return "\n".join(parts)


def _quantity(value: Any) -> str:
    return "" if value is None else format_decimal(Decimal(str(value)))


def _charts(result: Reconciliation, periods: pl.DataFrame) -> str:
    if not periods.height:
        return "<p>No invoices.</p>"
    return "\n".join(
        chart(result, periods.filter(pl.col("credit_type_id") == credit_type), credit_type)
        for credit_type in periods["credit_type_id"].unique(maintain_order=True).to_list()
    )


def _nice_step(top: int) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) so that four steps reach `top`."""
    raw = max(1, -(-top // 4))
    magnitude: int = 10 ** (len(str(raw)) - 1)
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def chart(result: Reconciliation, periods: pl.DataFrame, credit_type: str) -> str:
    """Imported and legacy totals per month of one credit type: bars, both axes, a legend, and
    a fixed width (CHART_WIDTH) whatever the number of months or invoices. Heights are pixels
    from whole units; the labels are money through `format_money`."""
    name = _name(result, credit_type)
    left, right, top_margin, bottom, height = 110, 20, 40, 60, 340
    plot_w, plot_h = CHART_WIDTH - left - right, height - top_margin - bottom
    rows = list(periods.iter_rows(named=True))
    highest = max([int(r[k] or 0) for r in rows for k in ("imported", "legacy")] + [1])
    step = _nice_step(highest)
    scale = plot_h / (4 * step)
    base = top_margin + plot_h
    slot = plot_w / len(rows)
    bar = max(slot * 0.38, 0.5)
    parts = []
    for k in range(5):
        y = base - k * step * scale
        label = format_money(Decimal(k * step), credit_type, name)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escaped(label)}</text>'
        )
    every = max(1, -(-len(rows) * 64 // plot_w))  # a label at least 64 px from the next
    for n, r in enumerate(rows):
        x0 = left + n * slot + (slot - 2 * bar) / 2
        for j, key in enumerate(("imported", "legacy")):
            value = int(r[key] or 0)
            h = max(value, 0) * scale
            shown = format_money(Decimal(value), credit_type, name)
            parts.append(
                f'<rect class="{key}" data-period="{escaped(r["period"])}" data-total="{value}" '
                f'x="{x0 + j * bar:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{escaped(r['period'])} {key}: {escaped(shown)}</title></rect>"
            )
        if n % every == 0:
            parts.append(
                f'<text x="{left + (n + 0.5) * slot:.1f}" y="{base + 16}" '
                f'text-anchor="middle">{escaped(r["period"])}</text>'
            )
    axes = (
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top_margin}" y2="{base}"/>'
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 12}" text-anchor="middle">'
        "month of the invoice start (UTC)</text>"
        f'<text x="14" y="{top_margin + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top_margin + plot_h / 2:.0f})">total per month, {escaped(name)}</text>'
    )
    legend = (
        f'<g class="legend"><rect class="imported" x="{left}" y="12" width="14" height="14"/>'
        f'<text x="{left + 20}" y="24">imported</text>'
        f'<rect class="legacy" x="{left + 100}" y="12" width="14" height="14"/>'
        f'<text x="{left + 120}" y="24">legacy</text></g>'
    )
    return (
        f'<svg class="chart" id="chart-{escaped(credit_type)}" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="imported and legacy totals per month, {escaped(name)}">'
        f"{legend}{axes}{''.join(parts)}</svg>"
    )
