"""Grouping a usage table's rows by part of a UTC day before resolving them never changes a
result: the check groups a day's rows of one contract, product and pricing group values first
when every period and rate piece begins and ends at one of a few times of day
(kernel.MAX_DAY_SPLITS) and a day holds rows enough of each (kernel.MIN_ROWS_PER_DAY_GROUP), and
resolves each row otherwise. Both give the same `--json` document
and the same stored rows, for runs that import (a price change at 13:00, tiers, duplicates, a
commit and a draft) and for runs that are rejected (problems of rows, windows that repeat and
disagree)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from tests.conftest import document_without_timings, run_cli, stored_tables
from tests.property.test_partitions import _commit_with_draft, _generated

from bulk_rating import kernel, validate

DAY_US = 86_400_000_000


def _import(data: Path, as_of: str, db: Path) -> tuple[int, dict[str, Any], Any]:
    done = run_cli("import", data, "--db", db, "--as-of", as_of, "--json")
    stored = stored_tables(db) if db.exists() else None
    return done.exit_code, document_without_timings(done.stdout), stored


def _times_of_day(data: Path, as_of: str, folder: Path) -> set[int]:
    """The times of day (microseconds past midnight) the data set's rate pieces and contracts
    begin or end at, read from a store given its catalog and contracts alone."""
    folder.mkdir()
    for name in ("catalog.json", "contracts.json"):
        shutil.copy(data / name, folder / name)
    done = run_cli("import", folder, "--db", folder / "store.duckdb", "--as-of", as_of)
    assert done.exit_code == 0, done.stderr
    with duckdb.connect(str(folder / "store.duckdb"), read_only=True) as con:
        found = con.execute(
            f"""SELECT DISTINCT (epoch_us(moment) % {DAY_US} + {DAY_US}) % {DAY_US} FROM (
                    SELECT starting_at AS moment FROM contract_rates
                    UNION ALL SELECT ending_before FROM contract_rates
                    UNION ALL SELECT starting_at FROM contracts
                ) WHERE moment IS NOT NULL"""
        ).fetchall()
    return {int(offset) for (offset,) in found}


def _conflicting_copies(directory: Path) -> tuple[Path, str]:
    """The generated set with some rows given again with another quantity: windows that repeat
    and disagree (CONFLICTING_DUPLICATE), counted in the check from each group's hours."""
    data, as_of = _generated(directory, bad=False)
    usage = pl.read_parquet(data / "usage" / "usage.parquet")
    copies = usage.gather(range(11, usage.height, 2003)).with_columns(
        quantity=pl.col("quantity") + 1
    )
    pl.concat([usage, copies]).write_parquet(data / "usage" / "usage.parquet")
    return data, as_of


SHAPES = {
    "generated": lambda d: _generated(d, bad=False),
    "rejected": lambda d: _generated(d, bad=True),
    "conflicting copies": _conflicting_copies,
    "commit with draft": _commit_with_draft,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_rows_grouped_by_part_of_day_give_what_rows_resolved_one_by_one(
    shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, as_of = SHAPES[shape](tmp_path / "set")
    offsets = _times_of_day(data, as_of, tmp_path / "catalog")
    assert len(offsets - {0}) <= kernel.MAX_DAY_SPLITS
    if shape == "generated":
        assert offsets - {0}, "a price change inside a day: days are cut in parts"
    # which way the check went: the splits each usage table's statement was made with (the
    # real statement is run)
    given: list[object] = []
    check = validate.line_weeks_sql

    def observed(*args: Any, **kwargs: Any) -> str:
        if kwargs.get("table"):
            given.append(kwargs.get("day_splits"))
        return check(*args, **kwargs)

    monkeypatch.setattr(validate, "line_weeks_sql", observed)

    grouped = _import(data, as_of, tmp_path / "grouped.duckdb")
    hourly = shape != "commit with draft"  # whole months and days: a row a day, not grouped
    assert any(splits is not None for splits in given) == hourly
    given.clear()
    monkeypatch.setattr(kernel, "MAX_DAY_SPLITS", -1)  # no cut is few enough: row by row
    one_by_one = _import(data, as_of, tmp_path / "one-by-one.duckdb")
    assert given
    assert all(splits is None for splits in given)

    code, document, stored = grouped
    if shape == "rejected":
        assert code == 1
        assert {i["code"] for i in document["issues"]} >= {"UNKNOWN_CONTRACT", "NEGATIVE_QUANTITY"}
    elif shape == "conflicting copies":
        assert code == 1
        assert {i["code"] for i in document["issues"]} == {"CONFLICTING_DUPLICATE"}
    else:
        assert code == 0, document
        assert stored is not None
        assert stored["invoices"]
    if shape == "generated":
        assert document["summary"]["duplicates_collapsed"] >= 1
    assert grouped == one_by_one
