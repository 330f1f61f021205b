"""Invariants of pricing, checked on generated usage against an independent Decimal oracle."""

from __future__ import annotations

import copy
import random
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import acme, invoice, line, query, run_cli, write_dataset

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
STORAGE_TIERS = [
    (Decimal(1000), Decimal("2.5")),
    (None, Decimal("1.75")),
]  # as in the acme rate card

quantities = st.lists(
    st.decimals(min_value=0, max_value=400, places=3, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=48,
)
SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def graduated(total: Decimal) -> Decimal:
    """The oracle: price a whole period's quantity over the tiers, in plain Decimal."""
    amount, start = Decimal(0), Decimal(0)
    for size, price in STORAGE_TIERS:
        end = None if size is None else start + size
        in_tier = max(Decimal(0), (total if end is None else min(total, end)) - start)
        amount += in_tier * price
        if end is None:
            break
        start = end
    return amount


def _hours(values: list[Decimal]) -> list[tuple[str, str, str]]:
    windows = []
    for n, q in enumerate(values):
        day, hour = divmod(n, 24)
        start = f"2024-06-{day + 1:02d}T{hour:02d}:00:00Z"
        end = (
            f"2024-06-{day + 1:02d}T{hour + 1:02d}:00:00Z"
            if hour < 23
            else f"2024-06-{day + 2:02d}T00:00:00Z"
        )
        windows.append((start, end, str(q)))
    return windows


def _files(windows: list[tuple[str, str, str]]) -> dict[str, Any]:
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(*JUNE, [line("prod_storage", *JUNE, windows=windows)], granularity="HOUR")
    ]
    return files


@SETTINGS
@given(values=quantities, seed=st.integers(0, 2**32))
def test_totals_match_the_oracle_whatever_the_window_order(
    values: list[Decimal], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        _check_oracle(Path(scratch), values, seed)


def _check_oracle(tmp_path: Path, values: list[Decimal], seed: int) -> None:
    windows = _hours(values)
    shuffled = copy.copy(windows)
    random.Random(seed).shuffle(shuffled)
    runs = []
    for name, order in (("ordered", windows), ("shuffled", shuffled)):
        db = tmp_path / f"{name}.duckdb"
        result = run_cli(
            "import",
            write_dataset(tmp_path / name, _files(order)),
            "--db",
            db,
            "--as-of",
            "2024-08-15",
            "--json",
        )
        assert result.exit_code == 0, result.stdout
        runs.append((result.json()["data"], db))

    (ordered, db), (shuffled_result, _) = runs
    assert ordered == shuffled_result
    assert ordered[0]["total"] == graduated(sum(values, Decimal(0)))
    line_totals = sum(item["total"] for item in ordered[0]["line_items"])
    assert line_totals == ordered[0]["total"]
    breakdown_sum = query(
        db, "SELECT coalesce(sum(amount), 0), count(DISTINCT window_start) FROM invoice_breakdowns"
    )
    assert breakdown_sum[0] == (ordered[0]["total"], len(values))


@SETTINGS
@given(values=quantities)
def test_preview_equals_import(values: list[Decimal]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = write_dataset(Path(scratch) / "set", _files(_hours(values)))
        db = Path(scratch) / "store.duckdb"
        _check_preview(directory, db)


def _check_preview(directory: Path, db: Path) -> None:
    preview = run_cli(
        "import", directory, "--db", db, "--as-of", "2024-08-15", "--preview", "--json"
    )
    imported = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert preview.json()["data"] == imported.json()["data"]
    assert preview.json()["drafts"] == imported.json()["drafts"]
