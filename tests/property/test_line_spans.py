"""Pricing a usage table's rows by their lines' spans never changes a result: a table whose rows
name no invoice periods is priced by one join of each row to the spans of its partition's
checked lines (rate.LINE_SPANS), and gives the same `--json` document and the same stored rows
(every window under the same item key) as resolving each row again against its contract's
periods, rate pieces and week tiers, in one partition or several: with a price change at 13:00,
tiers and tier edges, exact duplicates, usage before 1970 (where SQL's and polars' integer
division differ), and a commit and a draft (whole-month rows: more spans than a quarter of the
rows, so each row is resolved again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import document_without_timings, run_cli, stored_tables
from tests.property.test_partitions import _commit_with_draft, _generated

from bulk_rating import kernel, rate, samples


def _before_1970(directory: Path) -> tuple[Path, str]:
    written = samples.generate(
        directory, customers=6, products=3, months=3, seed=5, start="1969-10-01"
    )
    return directory, written["as_of"]


SHAPES = {
    "generated": lambda d: _generated(d, bad=False),
    "before 1970": _before_1970,
    "commit with draft": _commit_with_draft,
}
# the shapes whose lines make few spans for their rows (kernel.MOST_SPANS_PER_ROW)
SPANNED = {"generated", "before 1970"}


def _import(data: Path, as_of: str, db: Path, partitions: int) -> tuple[int, dict[str, Any], Any]:
    done = run_cli(
        "import", data, "--db", db, "--as-of", as_of, "--json", "--partitions", str(partitions)
    )
    assert done.exit_code == 0, done.stderr
    return done.exit_code, document_without_timings(done.stdout), stored_tables(db)


@pytest.mark.parametrize("partitions", [1, 7])
@pytest.mark.parametrize("shape", SHAPES)
def test_rows_priced_by_their_lines_spans_give_what_rows_resolved_again_give(
    shape: str, partitions: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, as_of = SHAPES[shape](tmp_path / "set")
    # which way pricing went: the statements run (the real ones)
    used: list[str] = []
    spanned = rate.spanned_windows_sql

    def observed(*args: Any, **kwargs: Any) -> str:
        used.append("spans")
        return spanned(*args, **kwargs)

    monkeypatch.setattr(rate, "spanned_windows_sql", observed)
    by_spans = _import(data, as_of, tmp_path / "spans.duckdb", partitions)
    assert used == (["spans"] if shape in SPANNED else [])
    used.clear()
    monkeypatch.setattr(kernel, "PRICE_BY_SPANS", False)
    resolved_again = _import(data, as_of, tmp_path / "rows.duckdb", partitions)
    assert not used

    stored = by_spans[2]
    assert stored["invoices"]
    # every line item is of an invoice (before 1970 too: each row found its period)
    assert all(item[0] is not None for item in stored["invoice_line_items"])
    windows = stored["_priced_windows"]
    assert windows  # the breakdown rows themselves are compared, not only the totals
    if shape == "generated":
        # tiers placed week by week and across edges, and a duplicate collapsed, on both ways
        assert by_spans[1]["summary"]["duplicates_collapsed"] >= 1
        kept = [w for w in windows if w[0] >= 1 << 63]  # item_key first (rate.KEPT_FROM)
        assert kept, "a week with a tier edge: its windows kept as read, then placed"
    assert by_spans == resolved_again
