"""Tiers placed by week: a UTC week (Thursday to Wednesday) inside one tier takes it whole; in a
week with a tier edge inside, a UTC day inside one tier takes it whole, and a day with the edge
inside is placed window by window. Hand-checked on acme's storage product: the
first 1,000 units of a period at 2.5 cents, the rest at 1.75 (METRONOME.md rule 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import acme, invoice, line, query, run_cli, write_dataset

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
FIRST = datetime(2024, 6, 6, tzinfo=UTC)  # a Thursday: a week starts


def _hours(quantities: list[str]) -> list[tuple[datetime, datetime, str]]:
    return [
        (FIRST + timedelta(hours=n), FIRST + timedelta(hours=n + 1), q)
        for n, q in enumerate(quantities)
    ]


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _import(tmp_path: Path, windows: list[tuple[datetime, datetime, str]], form: str) -> Path:
    files = acme()
    if form == "json":
        hourly = [(_text(a), _text(b), q) for a, b, q in windows]
        files["invoices"]["invoices"] = [
            invoice(*JUNE, [line("prod_storage", *JUNE, windows=hourly)], granularity="HOUR")
        ]
    else:
        del files["invoices"]
        (tmp_path / "set" / "usage").mkdir(parents=True)
        pq.write_table(
            pa.table(
                {
                    "customer_id": ["cus_acme"] * len(windows),
                    "contract_id": ["con_acme_2024"] * len(windows),
                    "product_id": ["prod_storage"] * len(windows),
                    "inclusive_start_date": pa.array(
                        [a for a, _, _ in windows], pa.timestamp("us", "UTC")
                    ),
                    "exclusive_end_date": pa.array(
                        [b for _, b, _ in windows], pa.timestamp("us", "UTC")
                    ),
                    "quantity": pa.array([Decimal(q) for _, _, q in windows], pa.decimal128(38, 9)),
                }
            ),
            tmp_path / "set" / "usage" / "part-0.parquet",
        )
    db = tmp_path / "store.duckdb"
    result = run_cli(
        "import", write_dataset(tmp_path / "set", files), "--db", db, "--as-of", "2024-08-15"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    return db


def _items_add_up(db: Path) -> None:
    """Each line item's quantity and count of windows (both counted by week) are those of its
    stored windows; every stored window is in a line item but those kept as read (no tier yet)."""
    apart = query(
        db,
        """SELECT l.line_item_id, l.quantity, coalesce(sum(b.quantity), 0), l.windows, count(b.*)
           FROM invoice_line_items l LEFT JOIN invoice_breakdowns b USING (line_item_id)
           WHERE l.type = 'usage' GROUP BY ALL
           HAVING l.quantity <> coalesce(sum(b.quantity), 0) OR l.windows <> count(b.*)""",
    )
    assert apart == []
    ((placed, placed_in_items, kept_in_items),) = query(
        db,
        """SELECT count(*) FILTER (WHERE w.item_key < (1::UBIGINT << 63)),
                  count(l.item_key) FILTER (WHERE w.item_key < (1::UBIGINT << 63)),
                  count(l.item_key) FILTER (WHERE w.item_key >= (1::UBIGINT << 63))
           FROM _priced_windows w LEFT JOIN invoice_line_items l USING (item_key)""",
    )
    assert placed == placed_in_items > 0
    assert kept_in_items == 0


def _tiers(db: Path) -> list[tuple[Any, ...]]:
    """Each breakdown row: its window, tier level and quantity, in time order."""
    return query(
        db,
        """SELECT b.window_start, l.tier_level, b.quantity
           FROM invoice_breakdowns b JOIN invoice_line_items l USING (line_item_id)
           ORDER BY b.window_start, l.tier_level""",
    )


def _lower_tier_through_the_zero_window(db: Path, zero_hour: int, upper_units: int) -> None:
    """The first 1,000 units and the zero window at the edge (hour `zero_hour`) in the first
    tier, every window after it in the second; no window split (none crosses the edge)."""
    (total,) = query(db, "SELECT total FROM invoices WHERE origin = 'HISTORICAL_IMPORT'")
    assert total == (Decimal(1000) * Decimal("2.5") + Decimal(upper_units) * Decimal("1.75"),)
    _items_add_up(db)
    rows = _tiers(db)
    assert [r[0] for r in rows] == [FIRST + timedelta(hours=n) for n in range(len(rows))]
    assert rows[zero_hour][2] == 0
    assert {r[1] for r in rows[: zero_hour + 1]} == {1}
    assert {r[1] for r in rows[zero_hour + 1 :]} == {2}


@pytest.mark.parametrize("form", ["json", "parquet"])
def test_a_week_ending_exactly_at_the_edge_and_a_zero_window_after_it(
    tmp_path: Path, form: str
) -> None:
    # Week 1: 160 hours of 6 and 8 of 5 = exactly 1,000, the edge. Week 2 opens with a zero
    # window (its position is the edge: the lower tier), then 23 hours of 10 in the upper tier.
    quantities = ["6"] * 160 + ["5"] * 8 + ["0"] + ["10"] * 23
    _lower_tier_through_the_zero_window(_import(tmp_path, _hours(quantities), form), 168, 230)


@pytest.mark.parametrize("form", ["json", "parquet"])
def test_a_window_crossing_the_edge_mid_week_is_split(tmp_path: Path, form: str) -> None:
    # 30 hours of 35: the 29th window (hour 28) runs from 980 to 1,015.
    db = _import(tmp_path, _hours(["35"] * 30), form)

    (total,) = query(db, "SELECT total FROM invoices WHERE origin = 'HISTORICAL_IMPORT'")
    assert total == (Decimal(1000) * Decimal("2.5") + Decimal(50) * Decimal("1.75"),)  # 2,587.5
    _items_add_up(db)
    rows = _tiers(db)
    crossing = FIRST + timedelta(hours=28)
    split = [(tier, quantity) for start, tier, quantity in rows if start == crossing]
    assert split == [(1, Decimal(20)), (2, Decimal(15))]
    assert len(rows) == 31
    # a usage table's rows of the edge week were stored once as read, then placed from there
    kept = "SELECT count(*) FROM _priced_windows WHERE item_key >= (1::UBIGINT << 63)"
    assert query(db, kept) == [(30 if form == "parquet" else 0,)]
    assert all(tier == 1 for start, tier, _ in rows if start < crossing)
    assert all(tier == 2 for start, tier, _ in rows if start > crossing)


@pytest.mark.parametrize("form", ["json", "parquet"])
def test_in_a_week_with_an_edge_whole_days_take_their_tier(tmp_path: Path, form: str) -> None:
    # Week 1: 168 hours of 2 (336). Week 2, day 1: 24 hours of 14 (672); day 2: 16 hours of
    # 20.5 and 8 zero hours, ending exactly at the edge (1,000): both days lie in the first tier.
    # Day 3 opens with a zero window at the edge (the lower tier), then 23 hours of 10; days 4
    # to 7 (96 hours of 1) lie in the second tier.
    quantities = ["2"] * 168 + ["14"] * 24 + ["20.5"] * 16 + ["0"] * 9 + ["10"] * 23 + ["1"] * 96
    _lower_tier_through_the_zero_window(_import(tmp_path, _hours(quantities), form), 216, 326)


def test_exact_duplicate_rows_do_not_move_the_tier_edge(tmp_path: Path) -> None:
    # Week 1 holds 500 units (100 hours of 5), its first 20 rows sent twice: collapsed, they do
    # not count. Week 2 (168 hours of 3) then crosses 1,000 in its window 166 (998 to 1,001).
    windows = _hours(["5"] * 100 + ["0"] * 68 + ["3"] * 168)
    db = _import(tmp_path, windows + windows[:20], "parquet")

    (total,) = query(db, "SELECT total FROM invoices WHERE origin = 'HISTORICAL_IMPORT'")
    assert total == (Decimal(1000) * Decimal("2.5") + Decimal(4) * Decimal("1.75"),)  # 2,507
    _items_add_up(db)
    crossing = FIRST + timedelta(hours=168 + 166)
    split = [(tier, quantity) for start, tier, quantity in _tiers(db) if start == crossing]
    assert split == [(1, Decimal(2)), (2, Decimal(1))]
