"""Line and tier-group keys are 64-bit hashes: a run stops rather than merge two of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from bulk_rating import validate
from bulk_rating.store import Store

JUNE = datetime(2024, 6, 1, tzinfo=UTC)


def _lines(*rows: tuple[int, int, str, str | None]) -> pl.DataFrame:
    """Lines as the check gives them: (line_key, tier_group, product_id, pricing_group_values)."""
    return pl.DataFrame(
        {
            "line_key": [r[0] for r in rows],
            "tier_group": [r[1] for r in rows],
            "product_id": [r[2] for r in rows],
            "pricing_group_values": [r[3] for r in rows],
            "contract_id": ["con_a"] * len(rows),
            "invoice_period_start": [JUNE] * len(rows),
            "invoice_credit_type_id": ["usd"] * len(rows),
            "key_collision": [False] * len(rows),
        },
        schema_overrides={"line_key": pl.UInt64, "tier_group": pl.UInt64},
    )


Ask = Callable[..., bool]


@pytest.fixture
def keys_are_unique(tmp_path: Path) -> Iterator[Ask]:
    """The check's question, asked of checked lines kept where the run keeps them (`_lines`)."""
    with Store.open(tmp_path / "store.duckdb") as store:

        def ask(lines: pl.DataFrame, *, table: bool) -> bool:
            store.temp_table("_lines", lines)
            return bool(store.scalar(validate.keys_unique_sql(table=table)))

        yield ask


def test_distinct_keys_for_distinct_lines_and_groups_pass(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None), (2, 10, "p1", None), (3, 11, "p2", '{"r":"eu"}'))
    assert keys_are_unique(lines, table=True)


def test_one_tier_group_key_for_two_groups_is_caught(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None), (2, 10, "p2", None))
    assert not keys_are_unique(lines, table=True)


def test_two_tier_group_keys_for_one_group_are_caught(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None), (2, 11, "p1", None))
    assert not keys_are_unique(lines, table=True)


def test_one_line_key_on_two_lines_is_caught(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None), (1, 11, "p2", None))
    assert not keys_are_unique(lines, table=True)


def test_a_line_whose_two_hashes_disagree_is_caught(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None)).with_columns(key_collision=pl.lit(True))
    assert not keys_are_unique(lines, table=True)


def test_groups_apart_only_by_pricing_group_values_are_two_groups(keys_are_unique: Ask) -> None:
    lines = _lines((1, 10, "p1", None), (2, 10, "p1", '{"r":"eu"}'))
    assert not keys_are_unique(lines, table=True)
