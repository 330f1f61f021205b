"""Exact duplicate rows of a usage table are collapsed, counted and priced once; nothing is lost."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import SAMPLES, query, run_cli


def test_exact_duplicates_are_priced_once_and_counted(tmp_path: Path, db: Path) -> None:
    directory = tmp_path / "set"
    shutil.copytree(SAMPLES / "acme-daily-csv", directory)
    usage = directory / "usage.csv"
    lines = usage.read_text().splitlines()
    usage.write_text(
        "\n".join([*lines, lines[1], lines[2], lines[2]]) + "\n"
    )  # June 1 once, June 2 twice more

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert [i["total"] for i in document["data"]] == [12500, 25000]  # as without the copies
    summary = document["summary"]
    assert (
        summary["rows_read"],
        summary["rows_priced"],
        summary["duplicates_collapsed"],
        summary["rows_rejected"],
    ) == (14, 11, 3, 0)
    assert [(n["row"], n["code"]) for n in document["notices"]] == [
        (12, "DUPLICATE_ROW"),
        (13, "DUPLICATE_ROW"),
        (14, "DUPLICATE_ROW"),
    ]
    assert query(db, "SELECT rows_read, duplicates_collapsed FROM _runs") == [(14, 3)]
    assert query(db, "SELECT count(*) FROM invoice_breakdowns") == [(10,)]


def test_a_rejected_run_counts_every_row_as_rejected(tmp_path: Path, db: Path) -> None:
    directory = tmp_path / "set"
    shutil.copytree(SAMPLES / "acme-daily-csv", directory)
    usage = directory / "usage.csv"
    usage.write_text(
        usage.read_text().replace("2024-06-03T00:00:00.000Z,1,", "2024-06-03T00:00:00.000Z,-1,", 1)
    )

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    summary = result.json()["summary"]
    assert result.exit_code == 1
    assert (summary["rows_read"], summary["rows_priced"], summary["rows_rejected"]) == (11, 0, 11)


def test_the_same_rows_in_other_files_are_already_imported(tmp_path: Path, db: Path) -> None:
    first = tmp_path / "first"
    shutil.copytree(SAMPLES / "acme-daily-csv", first)
    assert run_cli("import", first, "--db", db, "--as-of", "2024-08-15").exit_code == 0
    second = tmp_path / "second"
    shutil.copytree(SAMPLES / "acme-daily-csv", second)
    header, *rows = (second / "usage.csv").read_text().splitlines()
    (second / "usage.csv").unlink()
    (second / "usage").mkdir()
    (second / "usage" / "b.csv").write_text("\n".join([header, *reversed(rows[:5])]) + "\n")
    (second / "usage" / "a.csv").write_text("\n".join([header, *rows[5:]]) + "\n")

    again = run_cli("import", second, "--db", db, "--as-of", "2024-08-15", "--json")

    assert again.exit_code == 0, again.stdout
    assert again.json()["summary"]["status"] == "already_imported"
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]
