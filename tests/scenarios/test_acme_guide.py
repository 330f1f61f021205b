"""The guide's scenario: contract from June 1, generation from August 1, today August 15.

Hand-checked: API calls are FLAT 1250 cents. June 10 x 1250 = 12,500 cents ($125.00), issued
2024-07-03; July 20 x 1250 = 25,000 cents ($250.00), issued 2024-08-03. The contract's own
schedule yields one DRAFT for August (2024-08-01 to 2024-09-01) and nothing for June or July.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.conftest import SAMPLES, USD, file_digest, query, run_cli, run_process


def test_guide_scenario_end_to_end_through_the_cli(db: Path) -> None:
    result = run_process("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stderr
    document = result.json()
    june, july = document["data"]
    assert (june["start_timestamp"], june["end_timestamp"], june["issued_at"]) == (
        "2024-06-01T00:00:00Z",
        "2024-07-01T00:00:00Z",
        "2024-07-03T00:00:00Z",
    )
    assert (june["total"], july["total"]) == (12500, 25000)
    assert [line["quantity"] for line in june["line_items"] + july["line_items"]] == [10, 20]
    assert {(i["status"], i["type"], i["origin"]) for i in document["data"]} == {
        ("FINALIZED", "USAGE", "HISTORICAL_IMPORT")
    }
    assert document["summary"]["totals"] == [
        {"credit_type_id": USD, "credit_type_name": "USD (cents)", "total": 37500}
    ]

    stored = query(
        db,
        """SELECT strftime(start_timestamp, '%Y-%m-%d'), strftime(end_timestamp, '%Y-%m-%d'),
                                 status, origin, total FROM invoices ORDER BY start_timestamp""",
    )
    assert stored == [
        ("2024-06-01", "2024-07-01", "FINALIZED", "HISTORICAL_IMPORT", Decimal(12500)),
        ("2024-07-01", "2024-08-01", "FINALIZED", "HISTORICAL_IMPORT", Decimal(25000)),
        ("2024-08-01", "2024-09-01", "DRAFT", "CONTRACT_SCHEDULE", Decimal(0)),
    ]
    ids = {
        row[0]
        for row in query(db, "SELECT invoice_id FROM invoices WHERE origin = 'HISTORICAL_IMPORT'")
    }
    assert ids == {june["id"], july["id"]}


def test_the_human_summary_names_totals_and_the_draft(db: Path) -> None:
    result = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15")

    assert result.exit_code == 0
    assert "total $375.00 (37500 USD (cents))" in result.stdout  # for people, then exact
    assert "$125.00" in result.stdout  # June's invoice in dollars and cents
    assert "DRAFT" in result.stdout
    assert "2 invoices, 2 lines, 2 windows; 1 contract created, 1 draft" in result.stdout


def test_preview_computes_the_same_invoices_and_writes_nothing(db: Path) -> None:
    preview = run_cli(
        "import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15", "--preview", "--json"
    )
    assert preview.exit_code == 0
    assert not db.exists(), "a preview must not create the database"

    imported = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15", "--json")
    before = file_digest(db)
    again = run_cli(
        "import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15", "--dry-run", "--json"
    )

    assert preview.json()["data"] == imported.json()["data"]
    assert preview.json()["summary"]["preview"] is True
    assert again.exit_code == 1  # overlaps the stored June and July
    assert file_digest(db) == before


def test_preview_flag_in_the_request_body_is_a_dry_run(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import acme

    files = acme()
    files["invoices"]["preview"] = True
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0
    assert result.json()["summary"]["status"] == "previewed"
    assert [i["total"] for i in result.json()["data"]] == [12500, 25000]
    assert not db.exists()


def test_daily_breakdown_gives_the_same_totals_and_stores_each_window(db: Path) -> None:
    result = run_cli(
        "import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15", "--json"
    )

    assert result.exit_code == 0
    assert [i["total"] for i in result.json()["data"]] == [12500, 25000]
    windows = query(
        db,
        """SELECT strftime(window_start, '%Y-%m-%d'), strftime(window_end, '%Y-%m-%d'),
                                  quantity, amount FROM breakdowns_daily ORDER BY window_start""",
    )
    assert len(windows) == 10
    assert windows[0] == ("2024-06-01", "2024-06-02", Decimal(1), Decimal(1250))
    assert sum(w[3] for w in windows) == Decimal(12500)
    assert query(db, "SELECT count(*) FROM invoice_breakdowns")[0][0] == 10


def test_reimporting_the_same_input_writes_nothing(db: Path) -> None:
    first = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15")
    digest = file_digest(db)
    second = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15", "--json")

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert second.json()["summary"]["status"] == "already_imported"
    assert second.json()["summary"]["previous_run_id"] == 1
    assert file_digest(db) == digest


def test_the_run_is_recorded_with_its_counts(db: Path) -> None:
    run_cli("import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15")

    runs = query(
        db,
        "SELECT run_id, status, preview, invoices, drafts, line_items, windows, contracts FROM _runs",
    )
    assert runs == [(1, "imported", False, 2, 1, 2, 11, 1)]  # 10 June days + the July quantity


def test_preview_of_a_json_file_alone_prices_with_the_stored_contract(
    db: Path, tmp_path: Path
) -> None:
    import json

    files = json.loads((SAMPLES / "acme" / "invoices.json").read_text())
    june = json.dumps({"invoices": files["invoices"][:1], "preview": False})
    later = tmp_path / "july.json"
    later.write_text(json.dumps({"invoices": files["invoices"][1:], "preview": False}))
    setup = tmp_path / "setup"
    setup.mkdir()
    for name in ("catalog.json", "contracts.json"):
        (setup / name).write_text((SAMPLES / "acme" / name).read_text())
    (setup / "invoices.json").write_text(june)
    assert run_cli("import", setup, "--db", db, "--as-of", "2024-08-15").exit_code == 0

    preview = run_cli("import", later, "--db", db, "--as-of", "2024-08-15", "--preview", "--json")

    assert preview.exit_code == 0, preview.stdout
    assert [i["total"] for i in preview.json()["data"]] == [25000]
