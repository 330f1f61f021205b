"""Configuration: command-line values win over `BULK_RATING_*` environment variables."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB = Path("data/bulk_rating.duckdb")


def parse_as_of(value: object) -> object:
    """`2024-08-15` means midnight UTC that day; a datetime needs an offset."""
    if isinstance(value, str) and len(value) == 10:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULK_RATING_", extra="forbid")

    db: Path = DEFAULT_DB
    as_of: Annotated[datetime, BeforeValidator(parse_as_of)] | None = None
    preview: bool = False
    # DuckDB's memory limit; past it, work spills to disk (<db>.tmp) instead of growing.
    memory_limit: str = "512MB"
    threads: int | None = None
    # seconds to wait for a database another process holds (a notebook, say); 0 refuses at once
    wait: float = 0.0

    def as_of_or_now(self) -> datetime:
        if self.as_of is None:
            return utc_now()
        if self.as_of.tzinfo is None:
            raise ValueError("as-of needs a UTC offset")
        return self.as_of.astimezone(UTC)
