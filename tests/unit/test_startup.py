"""`bulk-rating sql` starts without what only other commands need: Polars, the models, the
pipeline, the web framework, the settings model (a query reads only the store's path). Importing
them took most of a second; the command now imports them only when a use case reads them
(`bulk_rating.lazy`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

from bulk_rating.store import Store

# Runs the command as `bulk-rating` does, then names every module it imported on stderr.
RUN_AND_LIST_MODULES = """
import sys
from bulk_rating.__main__ import main

sys.argv = ["bulk-rating", "sql", "SELECT 42 AS answer", "--db", sys.argv[1]]
try:
    main()
finally:
    sys.stderr.write("\\nmodules: " + " ".join(sorted(sys.modules)) + "\\n")
"""

NOT_NEEDED = (
    "polars",
    "pandas",
    "numpy",
    "fastapi",
    "uvicorn",
    "pydantic_settings",
    "bulk_rating.settings",
    "bulk_rating.models",
    "bulk_rating.pipeline",
    "bulk_rating.load",
    "bulk_rating.report",
    "bulk_rating.reconcile",
    "bulk_rating.server",
)


def test_sql_imports_none_of_what_other_commands_need(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    Store.open(db).close()

    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(db)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )

    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout
    imported = set(done.stderr.rsplit("modules: ", 1)[1].split())
    assert {"duckdb", "bulk_rating.store", "bulk_rating.services"} <= imported
    assert sorted(imported & set(NOT_NEEDED)) == []
