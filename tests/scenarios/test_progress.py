"""Progress that moves: an import reports each long stage by name, with the rows it reads, and
percentages that only rise, partition by partition of contracts, to 100; the percent inside a
statement is DuckDB's own (which it measures only when asked to)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from bulk_rating import cli, import_history, samples
from bulk_rating.progress import Progress
from bulk_rating.store import Store
from bulk_rating.store import base as store_base


@dataclass
class Stage:
    name: str
    rows: int | None
    updates: list[tuple[float, tuple[int, int]]] = field(default_factory=list)
    ended: bool = False


class RecordingProgress(Progress):
    """Every stage, update and end as the import reports them."""

    active = True

    def __init__(self) -> None:
        self.stages: list[Stage] = []

    def begin(self, stage: str, rows: int | None = None) -> None:
        self.stages.append(Stage(stage, rows))

    def update(self, percent: float, part: tuple[int, int] = (1, 1)) -> None:
        self.stages[-1].updates.append((percent, part))

    def end(self) -> None:
        self.stages[-1].ended = True


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, str]:
    written = samples.generate(
        tmp_path / "set", customers=6, products=4, months=2, ids="uuid", order="time"
    )
    return tmp_path / "set", written["as_of"]


def test_an_import_reports_each_stage_rising_to_100_partition_by_partition(
    generated: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_base, "PROGRESS_POLL_SECONDS", 0.005)
    recorded = RecordingProgress()

    report = import_history(
        generated[0],
        db=tmp_path / "store.duckdb",
        as_of=generated[1],
        partitions=3,
        progress=recorded,
    )

    assert report.status == "imported"
    assert [s.name for s in recorded.stages] == [
        "reading and checking rows",
        "pricing and storing rows",
        "rating invoices",
        "rolling windows up by day",
    ]
    for stage in recorded.stages:
        percents = [percent for percent, _ in stage.updates]
        assert stage.ended
        assert percents == sorted(percents), f"{stage.name} went back: {percents}"
        assert percents[0] >= 0
        assert percents[-1] == 100
    checking, pricing, rating, _rollups = recorded.stages
    assert checking.rows == pricing.rows == report.rows_read
    assert rating.rows  # the windows priced
    for partitioned in (checking, pricing):
        # each partition of three counts for a third, entered in turn
        assert [p for _, p in partitioned.updates][-1] == (3, 3)
        assert {p for _, p in partitioned.updates} == {(1, 3), (2, 3), (3, 3)}
        boundaries = {(percent, part) for percent, part in partitioned.updates}
        assert {(0.0, (1, 3)), (100 / 3, (2, 3)), (200 / 3, (3, 3))} <= boundaries
        for percent, (partition, _) in partitioned.updates:
            assert (partition - 1) * 100 / 3 <= percent <= partition * 100 / 3
    assert {p for _, p in rating.updates} == {(1, 1)}


def test_duckdb_reports_real_percentages_of_a_tracked_statement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_base, "PROGRESS_POLL_SECONDS", 0.005)
    recorded = RecordingProgress()
    counting = "SELECT count(*) FROM range(100000000) t(i) WHERE hash(i) % 7 = 0"

    with Store.scratch() as scratch:
        found = scratch.tracked(
            "counting", recorded, lambda: scratch.con.execute(counting).fetchall()
        )

    assert found[0][0] > 0
    (stage,) = recorded.stages
    percents = [percent for percent, _ in stage.updates]
    assert percents[-1] == 100
    assert [p for p in percents if 0 < p < 100], "DuckDB said nothing between 0 and 100"


def test_the_terminal_bars_show_percent_rows_per_second_and_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    monkeypatch.setattr(cli, "err", console)

    with cli.TerminalProgress(enabled=True) as bars:
        bars.begin("reading and checking rows", rows=4_000_000)
        for percent, part in ((0.0, (1, 2)), (37.5, (1, 2)), (50.0, (2, 2)), (100.0, (2, 2))):
            bars.update(percent, part)
        bars.end()
        bars.begin("rating invoices", rows=None)
        bars.update(100.0)
        bars.end()

    text = console.export_text()  # every frame drawn; the last one from the last stage's top
    checking, rating = text[text.rindex("reading and checking rows") :].splitlines()
    assert checking.startswith("reading and checking rows (in 2 partitions)")
    assert "100%" in checking
    assert "rows/s" in checking
    assert rating.startswith("rating invoices ")
    assert "partition" not in rating
    assert "rows/s" not in rating  # its rows were not given
