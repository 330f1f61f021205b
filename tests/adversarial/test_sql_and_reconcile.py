"""`sql` reaches nothing but the database; reconciliation without contract ids never guesses; a
second nightly run of the day keeps the first one's report.

- `sql`: every way out of the database (writing or reading files, attaching one, installing or
  loading an extension, setting the guards back) is refused with a message and exit 2, creates no
  file and leaves the store byte for byte as it was; a query that does not parse is exit 2 too.
- Reconciliation (acme rate card, API calls at 1250 cents): con_acme_2024 June 10 calls = 12,500,
  July 20 = 25,000; a second contract of acme, con_acme_b, June 4 calls = 5,000. A legacy export
  without contract_id: a July billed July 2 - August 1 is a PERIOD_MISMATCH on both sides, as with
  a contract id; a June that both contracts have is AMBIGUOUS (paired with neither, listed once).
- nightly: three runs on one day leave three reports (`nightly.json`, `nightly-2.json`, ...), and
  a report that cannot be written whole leaves the earlier file as it was.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.adversarial.conftest import ACME_AS_OF, SAMPLES, Snapshot, assert_clean
from tests.conftest import acme, invoice, line, query, run_cli, run_process, write_dataset

from bulk_rating import output
from bulk_rating.errors import UsageError


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DuckDB's home (where extensions and persistent secrets go) inside the test's folder."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


# Each statement tries to leave the database; {tmp} is the test's folder.
ESCAPES = {
    "copy to a file": "COPY (SELECT 1 AS a) TO '{tmp}/x.csv'",
    "copy a table to parquet": "COPY invoices TO '{tmp}/invoices.parquet' (FORMAT parquet)",
    "export the database": "EXPORT DATABASE '{tmp}/dump'",
    "install a community extension": "INSTALL shellfs FROM community",
    "install from a file": "INSTALL '{tmp}/planted.duckdb_extension'",
    "load an extension": "LOAD httpfs",
    "load a file": "LOAD '{tmp}/planted.duckdb_extension'",
    "turn external access back on": "SET enable_external_access = true",
    "allow community extensions": "SET allow_community_extensions = true",
    "unlock the configuration": "SET lock_configuration = false",
    "reset the lock": "RESET lock_configuration",
    "attach another file": "ATTACH '{tmp}/other.duckdb' AS other",
    "attach in memory": "ATTACH ':memory:' AS scratch",
    "create a table": "CREATE TABLE t AS SELECT 1 AS a",
    "delete rows": "DELETE FROM invoices",
    "read another file": "SELECT * FROM read_csv('{tmp}/planted.duckdb_extension')",
    "a write after a read": "SELECT 1; COPY (SELECT 1 AS a) TO '{tmp}/y.csv'",
    "a persistent secret": "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
}


@pytest.mark.parametrize("statement", ESCAPES.values(), ids=ESCAPES.keys())
def test_sql_refuses_every_way_out_of_the_database(
    statement: str, stored: Path, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "planted.duckdb_extension").write_bytes(b"not an extension")
    before, files = Snapshot.of(stored), _files(tmp_path)

    result = run_cli("sql", statement.format(tmp=tmp_path), "--db", stored)

    assert_clean(result, 2)
    said = " ".join(result.stderr.split())
    assert "refused" in said or "read-only" in said, said
    assert _files(tmp_path) == files, "no file may be created"
    assert before.unchanged()
    assert query(stored, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'") == [
        (2,)
    ]


def test_sql_refuses_a_copy_as_a_process_too(stored: Path, home: Path, tmp_path: Path) -> None:
    before, files = Snapshot.of(stored), _files(tmp_path)

    result = run_process("sql", f"COPY invoices TO '{tmp_path}/out.csv'", "--db", stored)

    assert_clean(result, 2, "refused")
    assert _files(tmp_path) == files
    assert before.unchanged()


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("SELECT 1 FROM", "the query failed"),
        ("SELECT * FROM no_such_table", "the query failed"),
        ("SELECT INTERVAL 1 DAY AS gap", "cast it"),  # a type the result frame cannot hold
    ],
)
def test_a_query_that_fails_is_a_usage_error(stored: Path, statement: str, said: str) -> None:
    before = Snapshot.of(stored)

    result = run_cli("sql", statement, "--db", stored)

    assert_clean(result, 2)
    assert said in " ".join(result.stderr.split())
    assert before.unchanged()


def test_reading_the_store_and_writing_rows_with_out_still_work(
    stored: Path, tmp_path: Path
) -> None:
    target = tmp_path / "rows.csv"

    result = run_cli(
        "sql",
        "SELECT contract_id, total FROM invoices WHERE origin = 'HISTORICAL_IMPORT' ORDER BY total",
        "--db",
        stored,
        "--format",
        "csv",
        "--out",
        target,
    )

    assert_clean(result, 0)
    assert target.read_text().splitlines() == [
        "contract_id,total",
        "con_acme_2024,12500.00000000000000000000000",
        "con_acme_2024,25000.00000000000000000000000",
    ]


# --- reconciliation without contract ids ------------------------------------------------------

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")
LATE_JULY = ("2024-07-02T00:00:00Z", "2024-08-01T00:00:00Z")


@pytest.fixture
def two_contracts(tmp_path: Path) -> Path:
    """acme with a second contract, con_acme_b, that also has a June invoice (4 calls: 5,000)."""
    files = acme()
    second = copy.deepcopy(files["contracts"][0])
    second.update(id="con_acme_b", name="Acme second contract")
    files["contracts"].append(second)
    files["invoices"]["invoices"].append(
        invoice(*JUNE, [line("prod_api_calls", *JUNE, quantity=4)], contract="con_acme_b")
    )
    return write_dataset(tmp_path / "two-contracts", files)


def _legacy(path: Path, rows: list[tuple[str, ...]], *, with_contract: bool) -> Path:
    """A legacy CSV; rows are (id, contract, start, end, total), the contract dropped when not
    `with_contract` (the column is then absent, as in an old export)."""
    contract = ["contract_id"] if with_contract else []
    header = ["legacy_invoice_id", "customer_id", *contract, "inclusive_start_date"]
    lines = [",".join([*header, "exclusive_end_date", "total"])]
    for legacy_id, contract, start, end, total in rows:
        cells = (
            [legacy_id, "cus_acme"] + ([contract] if with_contract else []) + [start, end, total]
        )
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _reconcile(data: Path, legacy: Path, tmp_path: Path) -> dict[str, Any]:
    result = run_cli(
        "reconcile",
        data,
        "--legacy",
        legacy,
        "--db",
        tmp_path / "unused.duckdb",
        "--as-of",
        ACME_AS_OF,
        "--json",
    )
    assert_clean(result, 1)  # something differs in every case here
    document: dict[str, Any] = result.json()
    return document


def _each_legacy_invoice_once(document: dict[str, Any], *legacy_ids: str) -> None:
    listed = [r["legacy_invoice_id"] for r in document["invoices"] if r["legacy_invoice_id"]]
    assert sorted(listed) == sorted(legacy_ids)


@pytest.mark.parametrize("with_contract", [True, False], ids=["with", "without"])
def test_a_period_mismatch_is_found_without_a_contract_id(
    tmp_path: Path, with_contract: bool
) -> None:
    legacy = _legacy(
        tmp_path / "legacy.csv",
        [("L1", "con_acme_2024", *JUNE, "12500"), ("L2", "con_acme_2024", *LATE_JULY, "25000")],
        with_contract=with_contract,
    )

    document = _reconcile(SAMPLES / "acme", legacy, tmp_path)

    rows = {(r["legacy_invoice_id"], r["inclusive_start"][:10]): r for r in document["invoices"]}
    assert {key: row["status"] for key, row in rows.items()} == {
        ("L1", "2024-06-01"): "MATCH",
        ("L2", "2024-07-02"): "PERIOD_MISMATCH",
        (None, "2024-07-01"): "PERIOD_MISMATCH",
    }
    july = rows[(None, "2024-07-01")]
    assert rows[("L2", "2024-07-02")]["candidates"] == july["invoice_id"]
    assert july["candidates"] == "L2"
    _each_legacy_invoice_once(document, "L1", "L2")
    assert document["summary"]["differences"] == 2


def test_a_legacy_invoice_two_contracts_could_be_is_ambiguous_and_listed_once(
    two_contracts: Path, tmp_path: Path
) -> None:
    # L1: acme's June, no contract; both contracts billed that June. L2: July, only one did.
    legacy = _legacy(
        tmp_path / "legacy.csv",
        [("L1", "", *JUNE, "17500"), ("L2", "", *JULY, "25000")],
        with_contract=False,
    )

    document = _reconcile(two_contracts, legacy, tmp_path)

    invoices = document["invoices"]
    june = {r["contract_id"]: r["invoice_id"] for r in invoices if r["legacy_invoice_id"] is None}
    assert set(june) == {"con_acme_2024", "con_acme_b"}
    both = ",".join(sorted(june.values()))
    assert sorted(
        (r["legacy_invoice_id"] or "", r["contract_id"] or "", r["status"], r["candidates"])
        for r in invoices
    ) == [
        ("", "con_acme_2024", "AMBIGUOUS", "L1"),
        ("", "con_acme_b", "AMBIGUOUS", "L1"),
        ("L1", "", "AMBIGUOUS", both),  # paired with neither contract
        ("L2", "con_acme_2024", "MATCH", None),
    ]
    _each_legacy_invoice_once(document, "L1", "L2")
    summary = document["summary"]
    assert summary["counts"]["invoices"]["AMBIGUOUS"] == 3
    assert summary["differences"] == 3
    # Nothing counted twice: imported 12,500 + 5,000 + 25,000 against legacy 17,500 + 25,000.
    assert [d["difference"] for d in summary["difference"]] == [0]


def test_an_ambiguous_invoice_is_stored_once_against_the_store(
    two_contracts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.duckdb"
    assert run_cli("import", two_contracts, "--db", db, "--as-of", ACME_AS_OF).exit_code == 0
    legacy = _legacy(
        tmp_path / "legacy.csv",
        [("L1", "", "2024-06-01T00:00:00Z", "2024-06-20T00:00:00Z", "9000")],
        with_contract=False,
    )

    result = run_cli("reconcile", "--legacy", legacy, "--db", db)

    assert_clean(result, 1, "AMBIGUOUS")
    assert query(
        db,
        """SELECT legacy_invoice_id, contract_id, status FROM reconciliation_results
           WHERE level = 'invoice' ORDER BY ALL""",
    ) == [
        ("L1", None, "AMBIGUOUS"),
        (None, "con_acme_2024", "AMBIGUOUS"),
        (None, "con_acme_2024", "MISSING_IN_LEGACY"),
        (None, "con_acme_b", "AMBIGUOUS"),
    ]


# --- nightly reports -----------------------------------------------------------------------


def test_a_second_nightly_run_of_the_day_keeps_the_first_report(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copytree(SAMPLES / "acme", inbox / "2024-08-01-acme")
    (inbox / "2024-08-02-broken.json").write_text('{"invoices": [}')
    legacy = _legacy(
        tmp_path / "legacy.csv",
        [("L1", "con_acme_2024", *JUNE, "12500"), ("L2", "con_acme_2024", *JULY, "25000")],
        with_contract=True,
    )
    reports = tmp_path / "reports"
    args = ("nightly", "--inbox", inbox, "--db", tmp_path / "s.duckdb", "--as-of", ACME_AS_OF)
    args += ("--legacy", legacy, "--reports", reports)

    runs = [run_cli(*args) for _ in range(3)]

    for run in runs:
        assert_clean(run, 1)  # the broken file fails every night
    day = reports / ACME_AS_OF
    names = {p.relative_to(day).as_posix() for p in day.iterdir()}
    assert names == {
        "nightly.json",
        "nightly-2.json",
        "nightly-3.json",
        "reconciliation",
        "reconciliation-2",
        "reconciliation-3",
        "2024-08-02-broken.json.issues.csv",
        "2024-08-02-broken.json.issues-2.csv",
        "2024-08-02-broken.json.issues-3.csv",
    }, "one report per run, and no temporary file left"
    statuses = [
        json.loads((day / name).read_text())["imports"][0]["status"]
        for name in ("nightly.json", "nightly-2.json", "nightly-3.json")
    ]
    assert statuses == ["imported", "already_imported", "already_imported"]
    assert f"report: {day / 'nightly-2.json'}" in runs[1].stdout
    assert (day / "reconciliation-2" / "report.html").exists()


def test_the_nightly_report_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fails while the report is made durable leaves the earlier file as it was and
    no temporary file beside it (every file the tool writes goes through output.write_atomically)."""
    report = tmp_path / "nightly.json"
    report.write_text('{"earlier": true}\n')

    def fail(_: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.os, "fsync", fail)
    with pytest.raises(UsageError, match="No space left"):
        output.write_atomically(report, lambda path: path.write_text('{"later": true}\n'))

    assert report.read_text() == '{"earlier": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["nightly.json"]
