"""Configuration: command-line values win over `BULK_RATING_*` environment variables."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bulk_rating.environment import DEFAULT_DB, variables

# The memory budget when none is set: an eighth of the machine's memory (or of its container's
# limit), at least 512MB and at most 2GiB (a run then stays under about 3 GiB of RSS, Python
# included, whatever its size: larger inputs take more partitions, not more memory).
MIN_MEMORY_BYTES = 512 * 1000**2
MAX_MEMORY_BYTES = 2 * 1024**3
# Parsed JSON takes about ten times its size in memory (models, then frames): the JSON files of
# one run may hold at most this fraction of the memory budget (32 MiB at 512MB, 128 MiB at 2GiB).
JSON_SHARE_OF_MEMORY = 16
# What checking and pricing a partition of a usage table take, measured on hourly histories with
# UUID ids: about 100 MB a thread whatever its size (reading row groups of a million rows, the
# hash table's own partitions), then about 14 bytes a row (a group per line and week of about 100
# hourly rows, its 36-character ids and states). A partition is sized at 20 bytes a row after a
# fixed 128 MB a thread; a misjudged one reaches the limit and the run is redone in more.
BUDGET_BYTES_PER_ROW = 20
# ... and at this many when the table is split by partition first (kernel.SPLIT_FROM): a partition
# then reads only its own rows, so one more costs little beside spilling. The check's groups by
# part of day (about ten hourly rows each) hold about 40 bytes a row. A billion rows, one run each
# the same day: at 20, 12 partitions, 1,141 s and 133 GB written to disk (more spilled);
# at 40, 23 partitions, 1,029 s and 104 GB, at the same peak (2.7 GiB); 35 were no faster.
SPLIT_BUDGET_BYTES_PER_ROW = 40
BUDGET_FIXED_BYTES_PER_THREAD = 128 * 1024**2
# What the rows of a partition meet, its contracts' rate pieces and period weeks (the hash tables
# of the check's and pricing's joins, keyed by 36-character ids): about 400 bytes each, measured
# at 192,998 contracts (5.6 million such rows: 20M rows of usage ran out of 2 GiB in one
# partition, and finished in two).
BUDGET_BYTES_PER_CONTRACT_ROW = 400
MAX_PARTITIONS = 4096
# A bucket of a Spark run is one Arrow table in a worker, then one partition of the kernel: about
# 400 bytes a row of memory in all with 36-character ids (its Arrow columns, the file written from
# them, DuckDB's check and pricing of it), at least MIN_BUCKETS of them.
BUCKET_BYTES_PER_ROW = 400
MIN_BUCKETS = 8
MAX_BUCKETS = 100_000
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


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its cgroup's limit when lower."""
    try:
        found: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        found = None
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        text = "max"
    if text.isdigit():
        found = min(int(text), found or int(text))
    return found


def default_memory_limit() -> str:
    machine = machine_memory_bytes()
    budget = MIN_MEMORY_BYTES if machine is None else machine // 8
    return f"{min(max(budget, MIN_MEMORY_BYTES), MAX_MEMORY_BYTES) // 1024**2}MiB"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Settings(BaseModel):
    """Every option a use case takes: the values given, else `BULK_RATING_<NAME>` from the
    environment (the name in any case), else the defaults. (Read by `environment` rather than
    pydantic-settings, whose import added about 50 ms to the start of every command.)"""

    model_config = ConfigDict(extra="forbid")

    db: Path = DEFAULT_DB
    as_of: Annotated[datetime, BeforeValidator(parse_as_of), AfterValidator(_utc)] | None = None
    preview: bool = False
    # DuckDB's memory limit; past it, work spills to disk (<db>.tmp) instead of growing.
    memory_limit: str = Field(default_factory=default_memory_limit)
    threads: int | None = None
    # partitions of contracts a usage table's rows are checked and priced in, one after another;
    # None: as many as the memory budget needs for the table's rows and contracts
    # (partitions_for)
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] | None = None
    # `local` (DuckDB in this process) or `spark` (buckets of contracts rated on a Spark
    # cluster, then stored here: buckets.py); a JSON batch is always rated locally
    engine: Literal["local", "spark"] = "local"
    # buckets of contracts a Spark run rates (None: as many as the rows need, at least 8)
    buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] | None = None
    spark_master: str | None = None  # local[2], spark://host:7077, yarn; None: local[*]
    spark_remote: str | None = None  # Spark Connect (sc://host:15002; Databricks serverless)
    # a folder the driver and every worker reach (a run's snapshot and each bucket's results)
    stage: Path | None = None
    # a Spark run's history breakdowns (windows, daily rollups) kept here as Parquet files by UTC
    # month, named in the store and read through its views, instead of in the store
    breakdowns: Path | None = None
    # seconds to wait for a database another process holds (a notebook, say); 0 refuses at once
    wait: float = 0.0
    # the bearer tokens `bulk-rating serve` accepts, separated by commas (none: it will not start)
    api_tokens: str = ""

    @model_validator(mode="before")
    @classmethod
    def _over_environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        found = {name: value for name, value in variables().items() if name in cls.model_fields}
        return {**found, **given}

    def as_of_or_now(self) -> datetime:
        return utc_now() if self.as_of is None else self.as_of

    def budget_bytes(self) -> int:
        return memory_bytes(self.memory_limit) or MIN_MEMORY_BYTES

    def partitions_for(
        self, rows: int, contract_rows: int = 0, bytes_per_row: int = BUDGET_BYTES_PER_ROW
    ) -> int:
        """How many partitions of contracts a run of `rows` usage rows needs at this memory
        budget, its contracts having `contract_rows` rate pieces and period weeks (a partition
        holds its share of both), a row counted at `bytes_per_row`."""
        threads = self.threads or os.cpu_count() or 1
        budget = self.budget_bytes()
        for_rows = max(budget - threads * BUDGET_FIXED_BYTES_PER_THREAD, budget // 4)
        need = rows * bytes_per_row + contract_rows * BUDGET_BYTES_PER_CONTRACT_ROW
        return max(1, -(-need // for_rows))

    def rows_per_bucket(self) -> int:
        """The most usage rows one bucket of a Spark run holds at this memory budget."""
        return max(self.budget_bytes() // BUCKET_BYTES_PER_ROW, 1)

    def json_limit(self) -> int:
        """The most bytes of JSON one run reads: a share of the memory budget."""
        return self.budget_bytes() // JSON_SHARE_OF_MEMORY
