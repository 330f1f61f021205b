"""The nightly batch: new entries imported once, a failed one reported without stopping the rest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import SAMPLES, query, run_cli


def _inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copytree(SAMPLES / "acme", inbox / "2024-08-01-acme")
    (inbox / "2024-08-02-broken.json").write_text('{"invoices": [}')
    return inbox


def test_the_nightly_batch_imports_once_and_reports_failures(tmp_path: Path) -> None:
    inbox, db, reports = _inbox(tmp_path), tmp_path / "store.duckdb", tmp_path / "reports"
    args = ("nightly", "--inbox", inbox, "--db", db, "--as-of", "2024-08-15", "--reports", reports)

    first = run_cli(*args)
    second = run_cli(*args)

    assert first.exit_code == 1, first.stdout + first.stderr  # the broken file failed
    assert "2024-08-01-acme: imported" in first.stdout
    assert "2024-08-02-broken.json: rejected" in first.stdout
    assert "2024-08-01-acme: already_imported" in second.stdout
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]
    day = reports / "2024-08-15"
    for name, acme_status in (("nightly.json", "imported"), ("nightly-2.json", "already_imported")):
        document = json.loads((day / name).read_text())
        assert [(e["entry"], e["status"]) for e in document["imports"]] == [
            ("2024-08-01-acme", acme_status),
            ("2024-08-02-broken.json", "rejected"),
        ]
    assert (day / "2024-08-02-broken.json.issues.csv").exists()
    assert (day / "2024-08-02-broken.json.issues-2.csv").exists()


def test_the_nightly_batch_reconciles_and_passes_when_all_is_well(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copytree(SAMPLES / "acme", inbox / "acme")
    legacy = tmp_path / "legacy.csv"
    legacy.write_text(
        "legacy_invoice_id,customer_id,contract_id,inclusive_start_date,exclusive_end_date,total\n"
        "L1,cus_acme,con_acme_2024,2024-06-01T00:00:00Z,2024-07-01T00:00:00Z,12500\n"
        "L2,cus_acme,con_acme_2024,2024-07-01T00:00:00Z,2024-08-01T00:00:00Z,25000\n"
    )
    reports = tmp_path / "reports"

    result = run_cli(
        "nightly",
        "--inbox",
        inbox,
        "--db",
        tmp_path / "s.duckdb",
        "--as-of",
        "2024-08-15",
        "--legacy",
        legacy,
        "--reports",
        reports,
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "0 differences" in result.stdout
    assert (reports / "2024-08-15" / "reconciliation" / "report.html").exists()
