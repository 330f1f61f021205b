"""Reconciliation: a legacy export that differs from the rate card in known ways.

Imported (acme rate card, API calls at 1250 cents): acme June 10 = 12,500, July 20 = 25,000;
globex June 4 = 5,000, July 2 = 2,500. The legacy export says:
- acme June 12,501 (one cent off: AMOUNT_MISMATCH -1), its line also 12,501;
- acme July 25,000 (MATCH) but its line says quantity 21 (QUANTITY_MISMATCH);
- globex July 2,500 (MATCH, line MATCH); globex June is not in it (MISSING_IN_LEGACY, +5,000);
- globex May 100, which was never imported (MISSING_IN_IMPORT, -100).
Total difference in USD cents, imported minus legacy: -1 + 5,000 - 100 = 4,899.
"""

from __future__ import annotations

import copy
import csv
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import USD, acme, invoice, line, query, run_cli, write_dataset

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")
MAY = ("2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z")
LEGACY = [
    # legacy_invoice_id, customer_id, contract_id, start, end, product_id, quantity, total
    ("L1", "cus_acme", "con_acme_2024", *JUNE, "", "", "12501"),
    ("L1", "", "", "", "", "prod_api_calls", "10", "12501"),
    ("L2", "cus_acme", "con_acme_2024", *JULY, "", "", "25000"),
    ("L2", "", "", "", "", "prod_api_calls", "21", "25000"),
    ("L4", "cus_globex", "con_globex", *JULY, "", "", "2500"),
    ("L4", "", "", "", "", "prod_api_calls", "2", "2500"),
    ("L5", "cus_globex", "con_globex", *MAY, "", "", "100"),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    files = acme()
    globex = copy.deepcopy(files["contracts"][0])
    globex.update(id="con_globex", customer_id="cus_globex", starting_at="2024-05-01T00:00:00Z")
    files["catalog"]["customers"].append({"id": "cus_globex", "name": "Globex"})
    files["contracts"].append(globex)
    files["invoices"]["invoices"] += [
        invoice(
            *JUNE,
            [line("prod_api_calls", *JUNE, quantity=4)],
            contract="con_globex",
            customer="cus_globex",
        ),
        invoice(
            *JULY,
            [line("prod_api_calls", *JULY, quantity=2)],
            contract="con_globex",
            customer="cus_globex",
        ),
    ]
    return write_dataset(tmp_path / "set", files)


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "legacy.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "legacy_invoice_id",
                "customer_id",
                "contract_id",
                "inclusive_start_date",
                "exclusive_end_date",
                "product_id",
                "quantity",
                "total",
            ]
        )
        writer.writerows(LEGACY)
    return path


def _statuses(rows: list[dict[str, Any]], key: str) -> dict[Any, str]:
    return {r[key]: r["status"] for r in rows}


def test_a_preview_reconciliation_names_every_difference(
    data: Path, legacy: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.duckdb"
    result = run_cli(
        "reconcile", data, "--legacy", legacy, "--db", db, "--as-of", "2024-08-15", "--json"
    )

    assert result.exit_code == 1, result.stdout + result.stderr
    document = result.json()
    by_legacy = {
        (r["legacy_invoice_id"], r["customer_id"], r["inclusive_start"][:10]): (
            r["status"],
            r["difference"],
        )
        for r in document["invoices"]
    }
    assert by_legacy == {
        ("L1", "cus_acme", "2024-06-01"): ("AMOUNT_MISMATCH", -1),
        ("L2", "cus_acme", "2024-07-01"): ("MATCH", 0),
        ("L4", "cus_globex", "2024-07-01"): ("MATCH", 0),
        ("L5", "cus_globex", "2024-05-01"): ("MISSING_IN_IMPORT", -100),
        (None, "cus_globex", "2024-06-01"): ("MISSING_IN_LEGACY", 5000),
    }
    assert _statuses(document["lines"], "legacy_invoice_id") == {
        "L1": "AMOUNT_MISMATCH",
        "L2": "QUANTITY_MISMATCH",
        "L4": "MATCH",
    }
    summary = document["summary"]
    assert summary["difference"] == [{"credit_type_id": USD, "difference": 4899}]
    assert summary["counts"]["invoices"] == {
        "MATCH": 2,
        "AMOUNT_MISMATCH": 1,
        "QUANTITY_MISMATCH": 0,
        "PERIOD_MISMATCH": 0,
        "AMBIGUOUS": 0,
        "MISSING_IN_IMPORT": 1,
        "MISSING_IN_LEGACY": 1,
    }
    assert summary["preview"] is True
    assert not db.exists(), "a preview reconciliation saves nothing"


def test_a_tolerance_of_one_unit_forgives_the_cent(
    data: Path, legacy: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "reconcile",
        data,
        "--legacy",
        legacy,
        "--db",
        tmp_path / "s.duckdb",
        "--as-of",
        "2024-08-15",
        "--tolerance",
        "1",
        "--json",
    )
    assert _statuses(result.json()["invoices"], "legacy_invoice_id")["L1"] == "MATCH"
    assert result.exit_code == 1  # the missing invoices still differ


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table: str | None = None
        self.rects: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table = dict(attrs).get("id") or ""
            self.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.tables[self.table].append([])
        elif tag == "rect":
            self.rects.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        if self.table is not None and self.tables[self.table] and data.strip():
            self.tables[self.table][-1].append(data.strip())


def test_the_stored_import_is_reconciled_and_the_report_is_written(
    data: Path, legacy: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.duckdb"
    assert run_cli("import", data, "--db", db, "--as-of", "2024-08-15").exit_code == 0
    out = tmp_path / "report"

    result = run_cli("reconcile", "--legacy", legacy, "--db", db, "--out", out)

    assert result.exit_code == 1
    assert "difference $48.99 (imported minus legacy, 4899 USD (cents))" in result.stdout
    assert query(db, "SELECT differences, invoices_compared FROM reconciliation_runs") == [(5, 5)]
    stored = query(
        db, "SELECT level, status, count(*) FROM reconciliation_results GROUP BY ALL ORDER BY ALL"
    )
    assert ("invoice", "MISSING_IN_LEGACY", 1) in stored
    assert ("line", "QUANTITY_MISMATCH", 1) in stored
    assert {p.name for p in out.iterdir()} == {
        "invoices.csv",
        "invoices.parquet",
        "lines.csv",
        "lines.parquet",
        "report.html",
    }
    page = _Cells()
    page.feed((out / "report.html").read_text())
    summary = {row[0]: (row[1], row[2]) for row in page.tables["summary"][1:]}
    assert summary["AMOUNT_MISMATCH"] == ("1", "1")
    assert summary["MISSING_IN_IMPORT"] == ("1", "0")
    assert page.tables["difference"][1] == ["USD (cents)", "$48.99"]
    row = page.tables["invoices-AMOUNT_MISMATCH"][1]  # customer, contract, period, ids, totals
    assert (row[3], row[5:]) == ("L1", ["$125.01", "$125.00", "-$0.01"])
    assert page.tables["invoices-MISSING_IN_LEGACY"][1][-1] == "$50.00"
    assert page.tables["lines-QUANTITY_MISMATCH"][1][:1] == ["L2"]
    totals = {(r["class"], r.get("data-period")): r.get("data-total") for r in page.rects}
    assert totals[("imported", "2024-06")] == "17500"  # acme 12,500 + globex 5,000
    assert totals[("legacy", "2024-06")] == "12501"


def test_a_bad_legacy_file_is_named(data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "legacy.csv"
    bad.write_text(
        "legacy_invoice_id,customer_id,inclusive_start_date,exclusive_end_date,totl\nL1,c,x,y,1\n"
    )
    result = run_cli("reconcile", data, "--legacy", bad, "--db", tmp_path / "s.duckdb", "--json")

    assert result.exit_code == 1
    assert {i["code"] for i in result.json()["issues"]} == {"MISSING_COLUMN", "UNKNOWN_COLUMN"}


def test_a_period_that_differs_and_a_parquet_legacy_file(data: Path, tmp_path: Path) -> None:
    # Legacy billed acme for June 2 - July 2 (not June 1 - July 1): both sides PERIOD_MISMATCH.
    import polars as pl

    legacy = tmp_path / "legacy.parquet"
    pl.DataFrame(
        {
            "legacy_invoice_id": ["L1", "L2"],
            "customer_id": ["cus_acme", "cus_acme"],
            "contract_id": ["con_acme_2024", "con_acme_2024"],
            "inclusive_start_date": ["2024-06-02T00:00:00Z", "2024-07-02T00:00:00Z"],
            "exclusive_end_date": ["2024-07-02T00:00:00Z", "2024-08-01T00:00:00Z"],
            "total": [12500, 25000],
        }
    ).with_columns(
        pl.col("inclusive_start_date", "exclusive_end_date").str.to_datetime(time_zone="UTC"),
        pl.col("total").cast(pl.Decimal(38, 2)),
    ).write_parquet(legacy)

    result = run_cli(
        "reconcile",
        data,
        "--legacy",
        legacy,
        "--db",
        tmp_path / "s.duckdb",
        "--as-of",
        "2024-08-15",
        "--json",
    )

    assert result.exit_code == 1, result.stdout
    acme_rows = [
        (r["legacy_invoice_id"], r["invoice_id"] is not None, r["status"])
        for r in result.json()["invoices"]
        if r["customer_id"] == "cus_acme"
    ]
    assert sorted(acme_rows, key=str) == sorted(
        [
            ("L1", False, "PERIOD_MISMATCH"),
            ("L2", False, "PERIOD_MISMATCH"),
            (None, True, "PERIOD_MISMATCH"),
            (None, True, "PERIOD_MISMATCH"),
        ],
        key=str,
    )


def test_legacy_totals_in_dollars_with_legacy_unit_major(data: Path, tmp_path: Path) -> None:
    """The same export with totals in dollars (125.01 for 12,501 cents): multiplied by 100
    exactly, it gives the same result as in cents; read as cents, nothing matches."""
    dollars = tmp_path / "dollars.csv"
    with dollars.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "legacy_invoice_id",
                "customer_id",
                "contract_id",
                "inclusive_start_date",
                "exclusive_end_date",
                "product_id",
                "quantity",
                "total",
            ]
        )
        writer.writerows(
            (*row[:-1], str(Decimal(row[-1]) / 100) if row[-1] else "") for row in LEGACY
        )

    def statuses(*unit: str) -> tuple[dict[Any, str], dict[Any, str], Any]:
        result = run_cli(
            "reconcile", data, "--legacy", dollars, "--db", tmp_path / "s.duckdb",
            "--as-of", "2024-08-15", "--json", *unit,
        )  # fmt: skip
        document = result.json()
        return (
            _statuses(document["invoices"], "legacy_invoice_id"),
            _statuses(document["lines"], "legacy_invoice_id"),
            document["summary"]["difference"],
        )

    invoices, lines, difference = statuses("--legacy-unit", "major")
    assert invoices == {"L1": "AMOUNT_MISMATCH", "L2": "MATCH", "L4": "MATCH", "L5": "MISSING_IN_IMPORT", None: "MISSING_IN_LEGACY"}  # fmt: skip
    assert lines == {"L1": "AMOUNT_MISMATCH", "L2": "QUANTITY_MISMATCH", "L4": "MATCH"}
    assert difference == [{"credit_type_id": USD, "difference": 4899}]
    assert statuses()[0]["L4"] == "AMOUNT_MISMATCH"  # 25 cents is not $25.00
    refused = run_cli("reconcile", data, "--legacy", dollars, "--legacy-unit", "dollars")
    assert refused.exit_code == 2


def test_legacy_unit_reaches_the_nightly_reconciliation(data: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data.rename(inbox / "set")
    legacy = tmp_path / "legacy.csv"
    legacy.write_text(
        "legacy_invoice_id,customer_id,contract_id,inclusive_start_date,exclusive_end_date,total\n"
        "L2,cus_acme,con_acme_2024,2024-07-01T00:00:00Z,2024-08-01T00:00:00Z,250.00\n"
    )
    reports = tmp_path / "reports"
    result = run_cli(
        "nightly", "--inbox", inbox, "--db", tmp_path / "s.duckdb", "--as-of", "2024-08-15",
        "--legacy", legacy, "--legacy-unit", "major", "--reports", reports,
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr  # the other invoices are missing
    page = (reports / "2024-08-15" / "reconciliation" / "report.html").read_text()
    assert "whole currency units" in page
    assert query(
        tmp_path / "s.duckdb",
        "SELECT status FROM reconciliation_results WHERE legacy_invoice_id = 'L2' AND level = 'invoice'",
    ) == [("MATCH",)]
