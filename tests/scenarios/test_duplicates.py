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
    assert again.json()["summary"]["matched_by"] == "content"  # known by its rows
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]


def test_windows_a_whole_bitmap_apart_are_not_duplicates(tmp_path: Path, db: Path) -> None:
    # The check gives each window a slot, its hour modulo the longest period (744 hours here);
    # in one two-month invoice, June 1 and July 2 are 744 hours apart and share a slot: they
    # are still two windows.
    directory = tmp_path / "set"
    directory.mkdir()
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(SAMPLES / "acme-daily-csv" / name, directory / name)
    invoice = "2024-06-01T00:00:00Z,2024-08-01T00:00:00Z"
    days = [
        ("2024-06-01", "2024-06-02", 1),
        ("2024-07-02", "2024-07-03", 2),
        ("2024-06-03", "2024-06-04", 2),
    ]
    (directory / "usage.csv").write_text(
        "customer_id,contract_id,product_id,inclusive_start_date,exclusive_end_date,quantity,"
        "breakdown_granularity,invoice_inclusive_start_date,invoice_exclusive_end_date\n"
        + "".join(
            f"cus_acme,con_acme_2024,prod_api_calls,{a}T00:00:00Z,{b}T00:00:00Z,{q},DAY,{invoice}\n"
            for a, b, q in days
        )
    )

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert document["notices"] == []
    assert document["summary"]["duplicates_collapsed"] == 0
    assert [i["total"] for i in document["data"]] == [6250]  # 5 calls at 1,250 cents
    assert query(db, "SELECT count(*) FROM invoice_breakdowns") == [(3,)]


def test_many_copies_are_counted_and_the_first_thousand_listed(tmp_path: Path, db: Path) -> None:
    # June 2 sent 1,003 more times: every copy is collapsed and counted; the first 1,000 are
    # listed in order and one line counts the other 3.
    directory = tmp_path / "set"
    shutil.copytree(SAMPLES / "acme-daily-csv", directory)
    usage = directory / "usage.csv"
    lines = usage.read_text().splitlines()
    usage.write_text("\n".join([*lines, *[lines[2]] * 1003]) + "\n")

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert [i["total"] for i in document["data"]] == [12500, 25000]
    summary = document["summary"]
    assert (summary["rows_read"], summary["rows_priced"], summary["duplicates_collapsed"]) == (
        1014,
        11,
        1003,
    )
    notices = document["notices"]
    assert [n["row"] for n in notices] == [None, *range(12, 1012)]
    assert notices[0]["message"] == "3 more rows like these; the first 1,000 are listed"
    assert sum(n["count"] for n in notices) == 1003
    assert {n["code"] for n in notices} == {"DUPLICATE_ROW"}
    assert query(db, "SELECT rows_read, duplicates_collapsed FROM _runs") == [(1014, 1003)]


def test_copies_in_another_file_are_named_by_that_file(tmp_path: Path, db: Path) -> None:
    # June 4-6 in both files: b.csv's three rows are the copies (a.csv comes first), priced once.
    directory = tmp_path / "set"
    shutil.copytree(SAMPLES / "acme-daily-csv", directory)
    header, *rows = (directory / "usage.csv").read_text().splitlines()
    (directory / "usage.csv").unlink()
    (directory / "usage").mkdir()
    (directory / "usage" / "a.csv").write_text("\n".join([header, *rows[:6]]) + "\n")
    (directory / "usage" / "b.csv").write_text("\n".join([header, *rows[3:]]) + "\n")

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert [i["total"] for i in document["data"]] == [12500, 25000]  # as without the copies
    assert document["summary"]["duplicates_collapsed"] == 3
    assert [(n["source"], n["row"]) for n in document["notices"]] == [
        (str(directory / "usage" / "b.csv"), row) for row in (1, 2, 3)
    ]
    assert query(db, "SELECT count(*) FROM invoice_breakdowns") == [(10,)]
