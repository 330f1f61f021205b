"""Partitioning never changes a result: a usage table checked and priced as one partition of
contracts or as many gives the same `--json` document (its timings aside) and the same stored
rows, for a run that imports (tiers, a price change, duplicates, commits, a draft) and for one
that is rejected (the same problems, listed and counted alike)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.conftest import (
    SAMPLES,
    document_without_timings,
    run_cli,
    stored_tables,
    write_usage_csv,
)

from bulk_rating import samples

PARTITIONS = (1, 3, 7)  # 7: the table is first split by partition (kernel.SPLIT_FROM)


def _generated(directory: Path, *, bad: bool) -> tuple[Path, str]:
    written = samples.generate(directory, customers=20, products=4, months=2, seed=31)
    usage = pl.read_parquet(directory / "usage" / "*.parquet")
    extra = [usage.gather(range(0, usage.height, 997))]  # exact duplicates: collapsed, noticed
    if bad:
        broken = usage.gather(range(5, usage.height, 1999))
        extra.append(broken.with_columns(contract_id=pl.lit("con_unknown")))
        extra.append(
            usage.gather(range(7, usage.height, 1499)).with_columns(quantity=-pl.col("quantity"))
        )
    for stale in (directory / "usage").glob("*.parquet"):
        stale.unlink()
    pl.concat([usage, *extra]).write_parquet(directory / "usage" / "usage.parquet")
    return directory, written["as_of"]


def _commit_with_draft(directory: Path) -> tuple[Path, str]:
    """acme-commit: history drawn from a prepaid commit, then August's rows rated as its DRAFT."""
    directory.mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copy(SAMPLES / "acme-commit" / name, directory / name)
    acme = ["cus_acme", "con_acme_2024", "prod_api_calls"]
    rows = [
        ["2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z", "10", "NONE"],
        ["2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z", "20", "NONE"],
        *(
            [f"2024-08-{d:02d}T00:00:00Z", f"2024-08-{d + 1:02d}T00:00:00Z", "1", "DAY"]
            for d in (1, 2, 3, 3, 4)  # the 3rd twice: an exact duplicate
        ),
    ]
    write_usage_csv(directory / "usage.csv", ([*acme, *row] for row in rows))
    return directory, "2024-08-15"


def _runs(data: Path, as_of: str, tmp_path: Path) -> list[tuple[int, dict[str, Any], Any]]:
    results = []
    for partitions in PARTITIONS:
        db = tmp_path / f"store-{partitions}.duckdb"
        done = run_cli(
            "import", data, "--db", db, "--as-of", as_of, "--json", "--partitions", str(partitions)
        )
        stored = stored_tables(db) if db.exists() else None
        results.append((done.exit_code, document_without_timings(done.stdout), stored))
    return results


@pytest.mark.parametrize("shape", ["generated", "commit_with_draft"])
def test_an_import_is_the_same_in_any_number_of_partitions(shape: str, tmp_path: Path) -> None:
    data, as_of = (
        _generated(tmp_path / "set", bad=False)
        if shape == "generated"
        else _commit_with_draft(tmp_path / "set")
    )
    (code, document, stored), *others = _runs(data, as_of, tmp_path)

    assert code == 0, document
    assert document["summary"]["duplicates_collapsed"] >= 1
    assert stored is not None
    assert stored["invoices"]
    if shape == "commit_with_draft":
        assert [d["status"] for d in document["drafts"]] == ["DRAFT"]
        assert stored["_draft_usage"]
        assert stored["balance_ledger_entries"]
    for other in others:
        assert other == (code, document, stored)


def test_a_rejection_is_the_same_in_any_number_of_partitions(tmp_path: Path) -> None:
    data, as_of = _generated(tmp_path / "set", bad=True)
    (code, document, stored), *others = _runs(data, as_of, tmp_path)

    assert code == 1
    assert {i["code"] for i in document["issues"]} >= {"UNKNOWN_CONTRACT", "NEGATIVE_QUANTITY"}
    assert stored is None  # a rejected run on a new path leaves no file
    for other in others:
        assert other == (code, document, stored)


def test_an_empty_table_is_the_same_in_any_number_of_partitions(tmp_path: Path) -> None:
    # a table of no rows splits into no file: the split partitions read it as it is
    data, as_of = _generated(tmp_path / "set", bad=False)
    usage = data / "usage" / "usage.parquet"
    pl.read_parquet(usage).head(0).write_parquet(usage)
    (code, document, stored), *others = _runs(data, as_of, tmp_path)

    assert code == 0, document
    assert document["summary"]["rows_read"] == 0
    assert stored is not None
    assert not stored["_priced_windows"]
    for other in others:
        assert other == (code, document, stored)
