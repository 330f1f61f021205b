"""What wrote a store, and what may read it: every run records the DuckDB library (and the
bulk-rating) that wrote it, the file is in the storage format DuckDB 1.4 and later read (not
DuckDB 2's own), and every installed package is pinned in constraints.txt (a dependency added
without a pin fails here)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import duckdb
from tests.conftest import ROOT, query

import bulk_rating
from bulk_rating.store import STORAGE_COMPATIBILITY

CONSTRAINTS = ROOT / "constraints.txt"
# Come with the virtualenv itself (`python -m venv`); pinned only if the file says so.
FROM_THE_VENV = {"pip", "setuptools", "wheel"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pinned = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        assert pinned, f"not an exact pin in constraints.txt: {line!r}"
        pins[_normalized(pinned[1])] = pinned[2]
    return pins


def _installed() -> dict[str, str]:
    return {
        _normalized(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if _normalized(dist.metadata["Name"]) != "bulk-rating"
    }


def test_each_run_records_the_duckdb_and_bulk_rating_that_wrote_it(stored: Path) -> None:
    assert query(stored, "SELECT duckdb_version, bulk_rating_version FROM _runs") == [
        (duckdb.__version__, bulk_rating.__version__)
    ]
    assert duckdb.__version__ == _pins()["duckdb"]  # the pinned library wrote it


def test_the_file_is_in_a_format_duckdb_1_4_clients_read(stored: Path) -> None:
    ((storage,),) = query(
        stored,
        "SELECT tags['storage_version'] FROM duckdb_databases()"
        " WHERE database_name = current_database()",
    )
    assert STORAGE_COMPATIBILITY == "v1.4.0"  # the README names the clients this format allows
    assert storage == f"{STORAGE_COMPATIBILITY}+"


def test_every_installed_package_is_pinned_at_its_installed_version() -> None:
    pins, installed = _pins(), _installed()
    unpinned = sorted(set(installed) - set(pins) - FROM_THE_VENV)
    assert not unpinned, (
        f"installed but not pinned in constraints.txt: {unpinned} (pin it with make lock; a"
        " package left over from an older install goes with make clean)"
    )
    differing = {
        name: (installed[name], pins[name])
        for name in set(installed) & set(pins)
        if installed[name] != pins[name]
    }
    assert not differing, f"installed (left) differs from constraints.txt (right): {differing}"
    assert not set(pins) - set(installed), "pinned but not installed: run make lock"
