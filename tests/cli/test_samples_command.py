"""`bulk-rating samples` writes a data set that `bulk-rating import` takes as it is."""

from __future__ import annotations

from pathlib import Path

import polars as pl
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


def test_samples_say_the_as_of_their_history_needs(tmp_path: Path) -> None:
    """Imported as of the day they name, the drafts are of the first generated periods, so a
    close on that day finalizes nothing (as of today, hundreds of empty drafts would be)."""
    written = run_cli(
        "samples", "--out", tmp_path / "set", "--customers", "2", "--months", "1", "--json"
    )
    as_of = written.json()["as_of"]
    said = run_cli("samples", "--out", tmp_path / "again", "--customers", "2", "--months", "1")
    db = tmp_path / "store.duckdb"

    imported = run_cli("import", tmp_path / "set", "--db", db, "--as-of", as_of, "--json")
    closed = run_cli("close", "--db", db, "--as-of", as_of)

    assert f"--as-of {as_of}" in " ".join(said.stdout.split())
    assert imported.exit_code == 0, imported.stdout
    assert imported.json()["summary"]["drafts"] == 2
    assert query(
        db,
        "SELECT count(*) FROM invoices WHERE status = 'DRAFT' AND start_timestamp > ?::TIMESTAMPTZ",
        [as_of],
    ) == [(0,)]
    assert "0 drafts finalized" in closed.stdout


def test_samples_of_the_export_shape_import_with_the_same_money(tmp_path: Path) -> None:
    """--ids uuid --order time --single-file: UUID ids, rows in time order, one file; the
    money is that of the short-id set of the same seed."""
    made = {}
    for shape, options in {
        "short": [],
        "export": ["--ids", "uuid", "--order", "time", "--single-file"],
    }.items():
        written = run_cli(
            "samples",
            "--out",
            tmp_path / shape,
            "--customers",
            "3",
            "--months",
            "1",
            "--json",
            *options,
        )
        assert written.exit_code == 0, written.stderr
        db = tmp_path / f"{shape}.duckdb"
        as_of = written.json()["as_of"]
        assert run_cli("import", tmp_path / shape, "--db", db, "--as-of", as_of).exit_code == 0
        made[shape] = db
    (contract_id,) = query(made["export"], "SELECT contract_id FROM contracts LIMIT 1")[0]
    starts = pl.read_parquet(tmp_path / "export" / "usage" / "part-0000.parquet")[
        "inclusive_start_date"
    ].to_list()

    assert len(contract_id) == 36
    assert starts == sorted(starts)
    assert [p.name for p in (tmp_path / "export" / "usage").iterdir()] == ["part-0000.parquet"]
    totals = "SELECT list(total ORDER BY total) FROM invoices"  # the same money, whatever the ids
    assert query(made["export"], totals) == query(made["short"], totals)


def test_samples_refuse_an_unknown_shape(tmp_path: Path) -> None:
    said = run_cli("samples", "--out", tmp_path / "set", "--ids", "guid")

    assert said.exit_code == 2
    assert "--ids is short or uuid" in said.stderr
