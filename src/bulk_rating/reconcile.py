"""Legacy invoices against imported ones: one FULL OUTER JOIN per level, as SQL that `store` runs.

Invoices match on customer, contract (when the legacy file names it), credit type and period; an
unmatched pair of one customer and contract whose periods overlap is a PERIOD_MISMATCH. A legacy
invoice without a contract that overlaps imported invoices of more than one contract is AMBIGUOUS
(never paired with any; the imported invoices left without a pair are AMBIGUOUS too), and
`candidates` names the other side's ids. Each legacy invoice is listed once. Lines
match on invoice and product (an imported product's lines, across tiers and rate pieces, add
up), for the invoices whose legacy export lists lines. Amounts compare after rounding half-even to whole units (money.round_to_units, done in SQL
as round_even), within a tolerance in units.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

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
    )
    return pl.concat([invoices, lines], how="vertical_relaxed")


def html_report(result: Reconciliation, daily: pl.DataFrame, title: str) -> str:
    """A self-contained page: the summary, the largest differences, and a chart (inline SVG)."""
    counts = result.counts()
    rows = "".join(
        f"<tr><td>{s}</td><td>{counts['invoices'][s]}</td><td>{counts['lines'][s]}</td></tr>"
        for s in STATUSES
    )
    money = "".join(
        f"<tr><td>{html.escape(str(d['credit_type_id']))}</td><td class=n>{d['difference']}</td></tr>"
        for d in result.money_difference()
    )
    largest = (
        result.invoices.filter(pl.col("status") != "MATCH")
        .with_columns(size=pl.col("difference").abs())
        .sort("size", descending=True, nulls_last=True)
        .head(20)
    )
    worst = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape('' if v is None else str(v))}</td>"
            for v in (
                r["status"],
                r["customer_id"],
                r["contract_id"],
                str(r["inclusive_start"])[:10],
                r["legacy_invoice_id"],
                r["invoice_id"],
                r["legacy_total"],
                r["imported_total"],
                r["difference"],
            )
        )
        + "</tr>"
        for r in largest.iter_rows(named=True)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px}}td.n{{text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Summary</h2>
<table id="summary"><tr><th>status</th><th>invoices</th><th>lines</th></tr>{rows}</table>
<h2>Total difference per credit type (whole units, imported minus legacy)</h2>
<table id="difference"><tr><th>credit type</th><th>difference</th></tr>{money}</table>
<h2>Largest differences</h2>
<table id="largest"><tr><th>status</th><th>customer</th><th>contract</th><th>period</th><th>legacy id</th>
<th>invoice id</th><th>legacy total</th><th>imported total</th><th>difference</th></tr>{worst}</table>
<h2>Daily totals: imported and legacy</h2>
{_chart(daily)}
</body></html>
"""


def _chart(daily: pl.DataFrame) -> str:
    """Bars per day (by period start): imported in dark, legacy in light. No script, no network."""
    if not daily.height:
        return "<p>No invoices.</p>"
    values = [float(v or 0) for v in (*daily["imported"].to_list(), *daily["legacy"].to_list())]
    top = max([*values, 1.0])  # pixel heights only: never money
    width, bar = 40 * daily.height + 40, 16
    bars = []
    for n, row in enumerate(daily.iter_rows(named=True)):
        for k, (key, color) in enumerate((("imported", "#335"), ("legacy", "#99c"))):
            value = float(row[key] or 0)  # pixel heights, not money
            height = 180 * value / top
            x = 30 + 40 * n + k * bar
            bars.append(
                f'<rect class="{key}" data-day="{row["day"]}" data-total="{row[key] or 0}" x="{x}" '
                f'y="{200 - height:.1f}" width="{bar - 2}" height="{height:.1f}" fill="{color}"/>'
            )
        bars.append(f'<text x="{30 + 40 * n}" y="215" font-size="9">{str(row["day"])[5:]}</text>')
    return f'<svg id="chart" width="{width}" height="225" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
