"""Configuration: command-line values win over `BULK_RATING_*` environment variables."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB = Path("data/bulk_rating.duckdb")
DEFAULT_MEMORY_LIMIT = "512MB"
# Parsed JSON takes about ten times its size in memory (models, then frames): the JSON files of
# one run may hold at most this fraction of the memory budget (32 MiB at the default 512MB).
JSON_SHARE_OF_MEMORY = 16
# What checking and pricing a usage table take, per row of one partition, at most: the check's
# hash table holds a group per line and week (about 170 hourly rows each), 36-character ids
# included; a 10M-row hourly history with UUID ids needs about 200 MB on 2 threads, 20 bytes a
# row. Twice that leaves room for sparser rows (more groups per row) and more threads.
BUDGET_BYTES_PER_ROW = 40
MAX_PARTITIONS = 4096
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_as_of(value: object) -> object:
    """`2024-08-15` means midnight UTC that day; a datetime needs an offset."""
    if isinstance(value, str) and len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a timestamp needs a UTC offset (e.g. 2024-08-15T00:00:00Z) or a date")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the moment is outside the years 1 to 9999 in UTC") from None


def memory_bytes(limit: str) -> int | None:
    """DuckDB's memory limit text (`512MB`, `2GiB`) in bytes; None when it is not of that form."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", limit)
    if found is None or found.group(2).lower() not in _UNITS:
        return None
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


def utc_now() -> datetime:
    return datetime.now(UTC)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULK_RATING_", extra="forbid")

    db: Path = DEFAULT_DB
    as_of: Annotated[datetime, BeforeValidator(parse_as_of), AfterValidator(_utc)] | None = None
    preview: bool = False
    # DuckDB's memory limit; past it, work spills to disk (<db>.tmp) instead of growing.
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    threads: int | None = None
    # partitions of contracts a usage table's rows are checked and priced in, one after another;
    # None: as many as the memory budget needs for the table's rows (rows_per_partition)
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] | None = None
    # seconds to wait for a database another process holds (a notebook, say); 0 refuses at once
    wait: float = 0.0
    # the bearer tokens `bulk-rating serve` accepts, separated by commas (none: it will not start)
    api_tokens: str = ""

    def as_of_or_now(self) -> datetime:
        return utc_now() if self.as_of is None else self.as_of

    def rows_per_partition(self) -> int:
        """The most usage rows one partition of a run holds at this memory budget."""
        budget = memory_bytes(self.memory_limit) or memory_bytes(DEFAULT_MEMORY_LIMIT) or 0
        return max(budget // BUDGET_BYTES_PER_ROW, 1)

    def json_limit(self) -> int:
        """The most bytes of JSON one run reads: a share of the memory budget."""
        budget = memory_bytes(self.memory_limit) or memory_bytes(DEFAULT_MEMORY_LIMIT) or 0
        return budget // JSON_SHARE_OF_MEMORY
