"""A few million generated hourly rows import in bounded memory (a separate process, as a user runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import query

from bulk_rating import samples

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


def test_two_million_rows_import_under_a_gibibyte(tmp_path: Path) -> None:
    written = samples.generate(tmp_path / "set", customers=100, products=8, months=6, seed=5)
    db = tmp_path / "store.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_OF_CHILD,
            sys.executable,
            "-m",
            "bulk_rating",
            "import",
            str(tmp_path / "set"),
            "--db",
            str(db),
            "--as-of",
            "2025-01-01",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"BULK_RATING_MEMORY_LIMIT": "512MB", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    peak_mib = int(done.stderr.rsplit("peak_rss_kib=", 1)[1]) / 1024
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
