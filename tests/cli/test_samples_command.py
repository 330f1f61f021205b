"""`bulk-rating samples` writes a data set that `bulk-rating import` takes as it is."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import query, run_cli


def test_generated_samples_import_and_preview_agree(tmp_path: Path) -> None:
    written = run_cli(
        "samples",
        "--out",
        tmp_path / "set",
        "--customers",
        "3",
        "--products",
        "3",
        "--months",
        "1",
        "--json",
    )
    assert written.exit_code == 0, written.stderr
    rows = written.json()["rows"]
    db = tmp_path / "store.duckdb"

    preview = run_cli(
        "import", tmp_path / "set", "--db", db, "--as-of", "2025-01-01", "--preview", "--json"
    )
    imported = run_cli("import", tmp_path / "set", "--db", db, "--as-of", "2025-01-01", "--json")

    assert imported.exit_code == 0, imported.stdout
    assert preview.json()["data"] == imported.json()["data"]
    assert imported.json()["summary"]["rows_read"] == rows
    stored = query(db, "SELECT count(DISTINCT window_start), sum(amount) FROM invoice_breakdowns")[
        0
    ]
    assert stored[1] == sum(i["total"] for i in imported.json()["data"])
