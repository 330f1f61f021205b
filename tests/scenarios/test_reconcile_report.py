"""report.html for people: a known reconciliation with every status, built from frames.

USD (cents), exact imported amounts. Invoices:
- A1/I1 (cus_1 June): 10,000 against 10,000.4 -> MATCH (rounded to whole cents); its lines:
  p1 MATCH, p2 only in legacy (MISSING_IN_IMPORT), p4 only imported (MISSING_IN_LEGACY);
- A2/I2 (cus_1 July): 123,456,700 against 123,456,789.123456789 -> AMOUNT_MISMATCH +89; its
  lines: p1 quantity 7 against 8 (QUANTITY_MISMATCH), p2 300 against 100 (AMOUNT_MISMATCH);
- A3 (cus_2, June 2 - July 2) and I3 (cus_2, June 1 - July 1): one PERIOD_MISMATCH pair;
- A4 (cus_3, no contract) overlaps I4 and I5 of two contracts: AMBIGUOUS;
- A5 (cus_4): MISSING_IN_IMPORT; I6 (cus_5): MISSING_IN_LEGACY.
`extra` adds matching invoices over the months after (for the chart), `missing` legacy
invoices never imported (for long lists).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import polars as pl
from tests.conftest import USD

from bulk_rating import frames, reconcile
from bulk_rating.markup import DASH
from bulk_rating.reconcile import Reconciliation, html_report
from bulk_rating.store import Store

RUN_AT = datetime(2026, 12, 7, 2, 30, tzinfo=UTC)
IMPORTED_COLUMNS = {
    "invoice_id": pl.String(),
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "credit_type_id": pl.String(),
    "start_timestamp": pl.Datetime("us", "UTC"),
    "end_timestamp": pl.Datetime("us", "UTC"),
    "total": pl.Decimal(38, 9),
}
IMPORTED_LINE_COLUMNS = {
    "invoice_id": pl.String(),
    "product_id": pl.String(),
    "quantity": pl.Decimal(38, 9),
    "total": pl.Decimal(38, 9),
}


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _month(n: int) -> tuple[datetime, datetime]:
    """The n-th month from January 2020."""
    year, month = divmod(n, 12)
    start = datetime(2020 + year, month + 1, 1, tzinfo=UTC)
    year, month = divmod(n + 1, 12)
    return start, datetime(2020 + year, month + 1, 1, tzinfo=UTC)


def scenario(extra: int = 0, missing: int = 0) -> tuple[Reconciliation, pl.DataFrame]:
    june, july, aug = _day("2024-06-01"), _day("2024-07-01"), _day("2024-08-01")
    d = Decimal
    imported: list[tuple[Any, ...]] = [
        ("I1", "cus_1", "con_1", USD, june, july, d("10000.4")),
        ("I2", "cus_1", "con_1", USD, july, aug, d("123456789.123456789")),
        ("I3", "cus_2", "con_2", USD, june, july, d("5000")),
        ("I4", "cus_3", "con_3a", USD, june, july, d("700")),
        ("I5", "cus_3", "con_3b", USD, june, july, d("800")),
        ("I6", "cus_5", "con_5", USD, june, july, d("999")),
    ]
    legacy: list[tuple[Any, ...]] = [
        ("A1", "cus_1", "con_1", USD, june, july, d("10000")),
        ("A2", "cus_1", "con_1", USD, july, aug, d("123456700")),
        ("A3", "cus_2", "con_2", USD, _day("2024-06-02"), _day("2024-07-02"), d("5000")),
        ("A4", "cus_3", None, USD, june, july, d("1500")),
        ("A5", "cus_4", "con_4", USD, june, july, d("4200")),
    ]
    for n in range(extra):
        start, end = _month(n % 60)
        amount = d(30_000_000 + 500_000 * (n % 60) + 7 * n)
        imported.append((f"IX{n}", f"cus_x{n}", f"con_x{n}", USD, start, end, amount))
        legacy.append((f"AX{n}", f"cus_x{n}", f"con_x{n}", USD, start, end, amount))
    for n in range(missing):
        start, end = _month(n % 60)
        legacy.append((f"AM{n}", f"cus_m{n}", f"con_m{n}", USD, start, end, d(n + 1)))
    imported_lines = [
        ("I1", "p1", d(10), d("10000.4")),
        ("I1", "p4", d(1), d(5)),
        ("I2", "p1", d(8), d("123456689.123456789")),
        ("I2", "p2", d(1), d(100)),
    ]
    legacy_lines = [
        ("A1", "p1", d(10), d(10000)),
        ("A1", "p2", d(1), d(50)),
        ("A2", "p1", d(7), d(123456400)),
        ("A2", "p2", d(1), d(300)),
    ]

    def frame(rows: list[tuple[Any, ...]], schema: dict[str, Any]) -> pl.DataFrame:
        return frames.conform(pl.DataFrame(rows, schema=list(schema), orient="row"), schema)

    with Store.scratch() as scratch:
        invoices, lines, periods = scratch.reconcile(
            (
                frame(legacy, reconcile.LEGACY_COLUMNS),
                frame(legacy_lines, reconcile.LEGACY_LINE_COLUMNS),
            ),
            (frame(imported, IMPORTED_COLUMNS), frame(imported_lines, IMPORTED_LINE_COLUMNS)),
            0,
        )
    result = Reconciliation(
        invoices,
        lines,
        Decimal(0),
        preview=True,
        run_at=RUN_AT,
        compared_with="a preview of data/acme",
        legacy_files=["legacy/invoices.csv"],
    )
    return result, periods


class _Page(HTMLParser):
    """The visible text, each table's rows of cells (with their titles), and the SVGs."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.table: str | None = None
        self.cell: list[str] | None = None
        self.title: str | None = None
        self.svgs: list[dict[str, str | None]] = []
        self.in_svg_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.table = found.get("id") or ""
            self.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.tables[self.table].append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell, self.title = [], found.get("title")
        elif tag == "svg":
            self.svgs.append(found)
        elif tag == "title" and self.svgs:
            self.in_svg_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.table is not None and self.cell is not None:
            self.tables[self.table][-1].append((" ".join(self.cell), self.title))
            self.cell = None
        elif tag == "title":
            self.in_svg_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cell is not None and data.strip():
            self.cell.append(data.strip())

    def rows(self, table: str) -> list[list[str]]:
        return [[text for text, _ in row] for row in self.tables[table][1:]]


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def test_every_difference_is_listed_by_status_with_money_for_people() -> None:
    result, periods = scenario()
    page = _parse(html_report(result, periods, "Reconciliation"))
    text = " ".join(page.text)

    summary = {row[0]: row[1:] for row in page.rows("summary")}
    assert summary["MATCH"] == ["1", "1"]
    assert summary["AMOUNT_MISMATCH"] == ["1", "1"]
    assert summary["QUANTITY_MISMATCH"] == ["0", "1"]
    assert summary["PERIOD_MISMATCH"] == ["2", "0"]
    assert summary["AMBIGUOUS"] == ["3", "0"]
    assert summary["MISSING_IN_IMPORT"] == ["1", "1"]
    assert summary["MISSING_IN_LEGACY"] == ["1", "1"]

    for invoice in ("A2", "I2", "A3", "I3", "A4", "I4", "I5", "A5", "I6"):
        assert re.search(rf"\b{invoice}\b", text), invoice
    amount = page.tables["invoices-AMOUNT_MISMATCH"][1]
    assert [c for c, _ in amount[5:8]] == ["$1,234,567.00", "$1,234,567.89", "$0.89"]
    assert amount[6][1] == "123456789.123456789 USD (cents)"  # the exact value on hover
    assert page.rows("invoices-MISSING_IN_IMPORT") == [
        ["cus_4", "con_4", f"2024-06-01 {DASH} 2024-07-01", "A5", "", "$42.00", "", "-$42.00", ""]
    ]
    # The period mismatch is one pair: the legacy period beside the imported one.
    assert page.rows("invoices-PERIOD_MISMATCH") == [
        [
            "cus_2",
            "con_2",
            "A3",
            f"2024-06-02 {DASH} 2024-07-02",
            "$50.00",
            "I3",
            f"2024-06-01 {DASH} 2024-07-01",
            "$50.00",
            "$0.00",
        ]
    ]
    lines = {
        status: page.rows(f"lines-{status}")
        for status in ("QUANTITY_MISMATCH", "AMOUNT_MISMATCH", "MISSING_IN_IMPORT")
    }
    assert lines["QUANTITY_MISMATCH"][0][:5] == ["A2", "I2", "p1", "7", "8"]
    assert lines["AMOUNT_MISMATCH"][0][2:] == ["p2", "1", "1", "$3.00", "$1.00", "-$2.00"]
    assert lines["MISSING_IN_IMPORT"][0][2] == "p2"
    assert page.rows("lines-MISSING_IN_LEGACY")[0][2] == "p4"
    # 89 (A2) - 5,000 + 5,000 (A3, I3) - 1,500 + 700 + 800 (A4) - 4,200 (A5) + 999 (I6) cents
    assert page.rows("difference") == [["USD (cents)", "-$31.12"]]

    # Money for people: never more than two decimals of dollars, never the credit type's UUID.
    assert not re.search(r"\d\.\d{3,}", text)
    assert USD not in text
    # What was compared, when, how.
    meta = dict(zip(*[iter(_dl(page.text))] * 2, strict=False))
    assert meta["Run"] == "2026-12-07 02:30 UTC"
    assert meta["Compared with"] == "a preview of data/acme"
    assert meta["Legacy files"] == "legacy/invoices.csv"
    assert "cents" in meta["Legacy totals in"]
    assert meta["Tolerance"].startswith("0 whole units")


def _dl(text: list[str]) -> list[str]:
    """The metadata list's terms and values, in order (the text between 'Run' and 'Rounding')."""
    words = [t.strip() for t in text if t.strip()]
    start = words.index("Run")
    return words[start : words.index("Rounding")]


def test_the_chart_has_axes_a_legend_months_with_years_and_a_fixed_width() -> None:
    result, periods = scenario(extra=120)
    page = _parse(html_report(result, periods, "Reconciliation"))
    (svg,) = page.svgs
    assert int(svg["width"] or 0) <= 1100
    text = " ".join(page.text)
    for words in ("imported", "legacy", "month of the invoice start (UTC)", "2020-01", "2024-06"):
        assert words in text
    assert "total per month, USD (cents)" in text


def test_six_thousand_invoices_every_one_listed_and_the_chart_stays_narrow() -> None:
    result, periods = scenario(extra=3000, missing=3000)
    page = html_report(result, periods, "Reconciliation")

    parsed = _parse(page)
    assert [int(s["width"] or 0) for s in parsed.svgs] == [reconcile.CHART_WIDTH]
    assert reconcile.CHART_WIDTH <= 1100
    missing = parsed.rows("invoices-MISSING_IN_IMPORT")
    assert len(missing) == 3001  # A5 and every one never imported: collapsed, not cut
    assert {row[3] for row in missing} >= {f"AM{n}" for n in range(3000)}
    assert "<details><summary>show all 3,001 invoices</summary>" in page
