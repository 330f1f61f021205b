"""The current period's DRAFT is rated from its usage, and again when more arrives (D8).

acme-commit: 50,000 prepaid from June 1. History: June 10 calls (12,500), July 20 (25,000), both
covered; 12,500 remain. As of August 15 the contract bills August itself: its DRAFT is rated from
the August rows. First 5 calls (6,250): covered, the draft totals 0, 6,250 remain. Then 10 more
(Aug 6-15): the draft's earlier rating is forgotten and it is rated again from all 15 calls
(18,750), drawing on what history left (12,500): the draft totals 6,250 and nothing remains.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

from tests.conftest import SAMPLES, CliResult, query, run_cli, write_usage_csv

ACME = ["cus_acme", "con_acme_2024", "prod_api_calls"]


def _set(directory: Path, rows: list[list[str]], *, catalog: bool = True) -> Path:
    directory.mkdir(parents=True)
    if catalog:
        for name in ("catalog.json", "contracts.json"):
            shutil.copy(SAMPLES / "acme-commit" / name, directory / name)
    write_usage_csv(directory / "usage.csv", ([*ACME, *row] for row in rows))
    return directory


def _import(directory: Path, db: Path) -> CliResult:
    return run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")


def _days(first: int, last: int) -> list[list[str]]:
    return [
        [f"2024-08-{d:02d}T00:00:00Z", f"2024-08-{d + 1:02d}T00:00:00Z", "1", "DAY"]
        for d in range(first, last + 1)
    ]


def test_the_august_draft_consumes_what_history_left_and_is_rated_again(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    history = [
        ["2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z", "10", "NONE"],
        ["2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z", "20", "NONE"],
    ]
    first = _import(_set(tmp_path / "first", history + _days(1, 5)), db)

    assert first.exit_code == 0, first.stdout
    assert [i["total"] for i in first.json()["data"]] == [0, 0]
    (draft,) = first.json()["drafts"]
    assert (draft["status"], draft["subtotal"], draft["total"]) == ("DRAFT", 6250, 0)
    assert query(db, "SELECT remaining FROM segment_balances") == [(Decimal(6250),)]

    more = _import(_set(tmp_path / "more", _days(6, 15), catalog=False), db)

    assert more.exit_code == 0, more.stdout
    (draft,) = more.json()["drafts"]
    assert (draft["subtotal"], draft["total"]) == (18750, 6250)
    assert [(item["type"], item["quantity"], item["total"]) for item in draft["line_items"]] == [
        ("usage", 15, 18750),
        ("applied_commit_or_credit", None, -12500),
    ]
    assert query(db, "SELECT remaining FROM segment_balances") == [(Decimal(0),)]
    assert query(
        db, "SELECT count(*) FROM invoice_breakdowns WHERE window_start >= '2024-08-01'"
    ) == [(15,)]

    closed = run_cli("close", "--db", db, "--as-of", "2024-09-02")
    assert closed.exit_code == 0
    assert query(db, "SELECT status, total FROM invoices WHERE start_timestamp = '2024-08-01'") == [
        ("FINALIZED", Decimal(6250))
    ]


def test_a_preview_of_more_usage_shows_the_rated_draft_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    history = [["2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z", "10", "NONE"]]
    assert (
        run_cli(
            "import",
            _set(tmp_path / "first", history + _days(1, 5)),
            "--db",
            db,
            "--as-of",
            "2024-08-15",
        ).exit_code
        == 0
    )
    before = db.read_bytes()

    preview = run_cli(
        "import",
        _set(tmp_path / "more", _days(6, 15), catalog=False),
        "--db",
        db,
        "--as-of",
        "2024-08-15",
        "--preview",
        "--json",
    )

    assert preview.exit_code == 0, preview.stdout
    assert preview.json()["drafts"][0]["subtotal"] == 18750
    assert db.read_bytes() == before


def test_exact_duplicate_rows_in_the_draft_period_are_priced_once(tmp_path: Path) -> None:
    # Five August days (1,250 cents a call), the first three sent twice: the copies are
    # collapsed and reported, and the draft is rated from 5 calls, not 8 (6,250 cents).
    db = tmp_path / "store.duckdb"
    result = _import(_set(tmp_path / "set", _days(1, 5) + _days(1, 3)), db)

    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert {n["code"] for n in document["notices"]} == {"DUPLICATE_ROW"}
    assert len(document["notices"]) == 3
    (draft,) = document["drafts"]
    assert draft["subtotal"] == 6250
    assert query(db, "SELECT count(*) FROM _draft_usage") == [(5,)]
    assert query(
        db, "SELECT count(*) FROM invoice_breakdowns WHERE window_start >= '2024-08-01'"
    ) == [(5,)]


def test_draft_rows_sent_again_are_priced_once_and_a_changed_one_is_refused(
    tmp_path: Path,
) -> None:
    # August 1-5 imported; then 3-7: days 3-5 again, unchanged (collapsed and reported, the
    # draft counts 7 calls, 8,750 cents); then day 6 again with another quantity: refused.
    db = tmp_path / "store.duckdb"
    first = _import(_set(tmp_path / "a", _days(1, 5)), db)
    assert first.exit_code == 0, first.stdout
    again = _import(_set(tmp_path / "b", _days(3, 7), catalog=False), db)

    assert again.exit_code == 0, again.stdout
    assert [n["code"] for n in again.json()["notices"]] == ["DUPLICATE_ROW"] * 3
    (draft,) = again.json()["drafts"]
    assert draft["subtotal"] == 8750
    assert query(db, "SELECT count(*) FROM _draft_usage") == [(7,)]

    changed = [["2024-08-06T00:00:00Z", "2024-08-07T00:00:00Z", "2", "DAY"]]
    before = query(db, "SELECT total, subtotal FROM invoices WHERE status = 'DRAFT'")
    refused = _import(_set(tmp_path / "c", changed, catalog=False), db)

    assert refused.exit_code == 1, refused.stdout
    assert [(i["code"], i["row"]) for i in refused.json()["issues"]] == [
        ("CONFLICTING_DUPLICATE", 1)
    ]
    assert query(db, "SELECT total, subtotal FROM invoices WHERE status = 'DRAFT'") == before
