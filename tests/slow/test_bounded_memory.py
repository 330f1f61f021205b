"""A few million generated hourly rows import in bounded memory, and several million rows are
exported by `bulk-rating sql` in bounded memory (separate processes, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.conftest import query

from bulk_rating import import_history, samples

pytestmark = pytest.mark.slow

PEAK_RSS_LIMIT_MIB = 1024

# Runs one command and prints the peak RSS of that command alone, in KiB. It has to be a fresh,
# small process: Linux carries a process's peak RSS into a child started by vfork (as
# `subprocess` starts one) when the child calls exec, so this test's own peak (it generates the
# data) would otherwise be read as the import's.
PEAK_OF_CHILD = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
sys.stderr.write(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(code)
"""


def _peak_of(*command: str, env: dict[str, str] | None = None) -> tuple[Any, float]:
    """Run `bulk-rating *command` as a process; its result and its peak RSS in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "-m", "bulk_rating", *command],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return done, int(done.stderr.rsplit("peak_rss_kib=", 1)[1]) / 1024


@pytest.fixture(scope="module")
def two_million(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("two-million") / "set"
    return folder, samples.generate(folder, customers=100, products=8, months=6, seed=5)


def test_two_million_rows_import_under_a_gibibyte(
    two_million: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    data, written = two_million
    db = tmp_path / "store.duckdb"
    done, peak_mib = _peak_of(
        "import",
        str(data),
        "--db",
        str(db),
        "--as-of",
        "2025-01-01",
        "--json",
        env={"BULK_RATING_MEMORY_LIMIT": "512MB"},
    )
    assert done.returncode == 0, done.stderr
    assert written["rows"] > 2_000_000
    summary = json.loads(done.stdout)["summary"]
    assert summary["rows_read"] == written["rows"]
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB"
    (line_total, breakdown_total, invoice_total) = query(
        db,
        """
        SELECT (SELECT sum(total) FROM invoice_line_items), (SELECT sum(amount) FROM invoice_breakdowns),
               (SELECT sum(total) FROM invoices)""",
    )[0]
    assert line_total == breakdown_total == invoice_total


# The peak RSS an export of the rows below may reach: Python with DuckDB, Arrow and Polars loaded
# (about 200 MiB), DuckDB's memory limit for analysts' queries (512MB, mostly blocks of the store
# it keeps), a batch or two of rows. The rows themselves take about 2 GiB as CSV.
EXPORT_PEAK_RSS_LIMIT_MIB = 768
# Every breakdown row three times over: six million rows.
THRICE = "SELECT b.*, copy FROM invoice_breakdowns b, range(3) t(copy)"


@pytest.fixture(scope="module")
def imported(
    two_million: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    db = tmp_path_factory.mktemp("imported") / "store.duckdb"
    assert import_history(two_million[0], db=db, as_of="2025-01-01").status == "imported"
    return db


@pytest.mark.parametrize("output", ["csv", "parquet"])
def test_six_million_rows_export_in_bounded_memory(
    imported: Path, tmp_path: Path, output: str
) -> None:
    target = tmp_path / f"rows.{output}"

    done, peak_mib = _peak_of(
        "sql", THRICE, "--db", str(imported), "--format", output, "--out", str(target)
    )

    assert done.returncode == 0, done.stderr
    (rows, amounts) = query(
        imported, "SELECT count(*) * 3, sum(amount) * 3 FROM invoice_breakdowns"
    )[0]
    assert rows > 6_000_000
    reader = (
        f"read_csv('{target}', all_varchar = true)"
        if output == "csv"
        else f"read_parquet('{target}')"
    )
    written = duckdb.sql(f"SELECT count(*), sum(amount::DECIMAL(38, 23)) FROM {reader}").fetchall()
    assert written == [(rows, amounts)]  # every row, every amount exact
    assert peak_mib < EXPORT_PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB"
