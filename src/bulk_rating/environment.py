"""The `BULK_RATING_*` environment variables, read without the settings model: a command that
needs nothing of them but the store's path (`sql`) starts without building that model (about
30 ms of its start)."""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "BULK_RATING_"
DEFAULT_DB = Path("data/bulk_rating.duckdb")


def variables() -> dict[str, str]:
    """Every `BULK_RATING_<NAME>` variable by its NAME in lower case (names are read in any
    case)."""
    prefix = PREFIX.lower()
    return {
        name.lower().removeprefix(prefix): value
        for name, value in os.environ.items()
        if name.lower().startswith(prefix)
    }


def database(given: str | Path | None = None) -> Path:
    """The store's path as Settings.db resolves it: `given`, else BULK_RATING_DB, else the
    default."""
    if given is not None:
        return Path(given)
    found = variables().get("db")
    return DEFAULT_DB if found is None else Path(found)
