"""A re-run of the same input is "already imported": the same usage files are known by their
bytes before any row is read (`matched_by: files`); the same rows in other files by the hash of
their rows, after the checking scan (`matched_by: content`), as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tests.conftest import SAMPLES, file_digest, query, run_cli

from bulk_rating import load

PARQUET_SET = SAMPLES / "acme-daily-parquet"


def _import(path: Path, db: Path, *options: str) -> dict[str, Any]:
    result = run_cli("import", path, "--db", db, "--json", *options)
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    summary: dict[str, Any] = result.json()["summary"]
    return summary


def _already(summary: dict[str, Any]) -> tuple[Any, ...]:
    return (
        summary["status"],
        summary["previous_run_id"],
        summary["matched_by"],
        summary["rows_read"],
    )


def _data_set(target: Path, usage: dict[str, Path] | None = None) -> Path:
    """The parquet sample's catalog and contracts in `target`, with `usage` (name -> file)."""
    target.mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(PARQUET_SET / name, target / name)
    given = {"usage.parquet": PARQUET_SET / "usage.parquet"} if usage is None else usage
    for name, source in given.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / name)
    return target


def test_the_same_files_again_are_known_without_reading_a_row(tmp_path: Path, db: Path) -> None:
    first = _import(PARQUET_SET, db, "--as-of", "2024-08-15")
    assert (first["status"], first["matched_by"]) == ("imported", None)
    # the same bytes under another name and folder, as of another day, in other partitions
    renamed = _data_set(
        tmp_path / "inbox" / "2024-09-30",
        {"usage/export-0001.parquet": PARQUET_SET / "usage.parquet"},
    )

    again = _import(renamed, db, "--as-of", "2024-09-30", "--partitions", "3")

    assert _already(again) == ("already_imported", 1, "files", 0)
    assert "validate" not in again["stage_seconds"]  # no row was checked
    assert again["input_hash"] == first["input_hash"]  # the stored run's, as the rows give it
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]
    said = run_cli("import", PARQUET_SET, "--db", db, "--as-of", "2024-08-15")
    assert said.exit_code == 0
    assert "already imported (run 1, the same files): nothing written" in said.stdout


def test_catalog_and_contracts_count_by_their_content_not_their_bytes(
    tmp_path: Path, db: Path
) -> None:
    _import(PARQUET_SET, db, "--as-of", "2024-08-15")
    reformatted = _data_set(tmp_path / "reformatted")
    for name in ("catalog.json", "contracts.json"):
        document = json.loads((reformatted / name).read_text())
        (reformatted / name).write_text(json.dumps(document, indent=8, sort_keys=True))
    changed = _data_set(tmp_path / "changed")
    contracts = json.loads((changed / "contracts.json").read_text())
    contracts[0]["name"] = "Acme, renamed"
    (changed / "contracts.json").write_text(json.dumps(contracts))

    same = _import(reformatted, db, "--as-of", "2024-08-15")
    other = _import(changed, db, "--as-of", "2024-08-15")

    assert _already(same) == ("already_imported", 1, "files", 0)
    # other contracts with the same usage file: new input, checked as such (a stored contract
    # given with other content is a conflict)
    assert other["status"] == "rejected"
    assert other["matched_by"] is None
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]


def test_the_same_rows_in_other_files_are_known_by_their_rows(tmp_path: Path, db: Path) -> None:
    _import(PARQUET_SET, db, "--as-of", "2024-08-15")
    rows = pq.read_table(PARQUET_SET / "usage.parquet")
    rewritten = _data_set(tmp_path / "rewritten", {})
    pq.write_table(rows, rewritten / "usage.parquet", compression="zstd", row_group_size=4)
    split = _data_set(tmp_path / "split", {})
    (split / "usage").mkdir()
    pq.write_table(rows.slice(0, 5), split / "usage" / "b.parquet")
    pq.write_table(rows.slice(5), split / "usage" / "a.parquet")
    assert file_digest(rewritten / "usage.parquet") != file_digest(PARQUET_SET / "usage.parquet")

    for other in (rewritten, split):
        again = _import(other, db, "--as-of", "2024-08-15")
        assert _already(again) == ("already_imported", 1, "content", rows.num_rows)
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]


def test_a_changed_byte_is_checked_as_new_data(tmp_path: Path, db: Path) -> None:
    original = tmp_path / "original"
    shutil.copytree(SAMPLES / "acme-daily-csv", original)
    _import(original, db, "--as-of", "2024-08-15")
    changed = tmp_path / "changed"
    shutil.copytree(original, changed)
    usage = changed / "usage.csv"
    text = usage.read_text()
    usage.write_text(text.replace("00.000Z,1,DAY", "00.000Z,3,DAY", 1))  # one digit

    again = _import(changed, db, "--as-of", "2024-08-15")

    # every row read and checked: other rows for the same invoices as the stored run's
    assert (again["status"], again["matched_by"], again["rows_read"]) == ("rejected", None, 11)
    assert query(db, "SELECT count(*) FROM _runs") == [(1,)]


def test_a_preview_records_nothing(tmp_path: Path, db: Path) -> None:
    assert run_cli("close", "--db", db, "--as-of", "2024-08-15").exit_code == 0  # an empty store
    before = file_digest(db)

    previewed = _import(PARQUET_SET, db, "--as-of", "2024-08-15", "--preview")
    assert (previewed["status"], previewed["matched_by"]) == ("previewed", None)
    assert file_digest(db) == before
    imported = _import(PARQUET_SET, db, "--as-of", "2024-08-15")
    previewed_again = _import(PARQUET_SET, db, "--as-of", "2024-08-15", "--preview")

    assert imported["status"] == "imported"  # the preview left no fingerprint to match
    assert _already(previewed_again) == ("already_imported", imported["run_id"], "files", 0)
    assert query(db, "SELECT count(files_fingerprint) FROM _runs WHERE NOT preview") == [(1,)]


def test_nightly_knows_an_entry_it_imported_by_its_files(tmp_path: Path) -> None:
    inbox, db = tmp_path / "inbox", tmp_path / "store.duckdb"
    _data_set(inbox / "2024-08-01-acme")
    args = ("nightly", "--inbox", inbox, "--db", db, "--reports", tmp_path / "reports")

    first = run_cli(*args, "--as-of", "2024-08-15")
    second = run_cli(*args, "--as-of", "2024-08-16")  # each night is another as-of date

    assert first.exit_code == 0, first.stdout + first.stderr
    assert "2024-08-01-acme: imported" in first.stdout
    assert "2024-08-01-acme: already_imported" in second.stdout
    assert query(db, "SELECT count(*) FROM _runs WHERE files_fingerprint IS NOT NULL") == [(1,)]


def test_a_file_changed_after_it_was_first_read_is_not_fingerprinted(tmp_path: Path) -> None:
    folder = _data_set(tmp_path / "set")
    usage = folder / "usage.parquet"

    read = load.load_dataset([folder])
    fingerprint = read.files_fingerprint(read.content_hash())
    assert fingerprint is not None
    assert fingerprint.unchanged()
    replaced = tmp_path / "replacement.parquet"
    shutil.copyfile(usage, replaced)
    replaced.replace(usage)  # the same bytes, another file: not the one that was read
    assert not fingerprint.unchanged()

    read_again = load.load_dataset([folder])
    usage.write_bytes(usage.read_bytes())  # written to after the schema was read
    assert read_again.files_fingerprint(read_again.content_hash()) is None
    read.close()
    read_again.close()
