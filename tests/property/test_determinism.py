"""Same input, same output: row order, file split and thread count never change an invoice."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import run_cli

from bulk_rating import samples

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, str]:
    directory = tmp_path_factory.mktemp("determinism") / "set"
    written = samples.generate(directory, customers=4, products=4, months=2, seed=17)
    rows = pl.read_parquet(directory / "usage" / "*.parquet")
    as_of = written["history_end"][:10]
    return directory, rows, as_of


def _import(directory: Path, as_of: str, threads: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BULK_RATING_THREADS", str(threads))
    result = run_cli(
        "import", directory, "--db", directory / "store.duckdb", "--as-of", as_of, "--json"
    )
    assert result.exit_code == 0, result.stdout
    data = result.stdout.split('"drafts":')[0]  # the invoices, byte for byte
    return data


@SETTINGS
@given(seed=st.integers(0, 2**32), files=st.integers(1, 5), threads=st.sampled_from([1, 2]))
def test_invoices_are_byte_identical(
    generated: tuple[Path, pl.DataFrame, str],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    files: int,
    threads: int,
) -> None:
    original, rows, as_of = generated
    with tempfile.TemporaryDirectory() as scratch:
        reference = Path(scratch) / "reference"
        reshuffled = Path(scratch) / "reshuffled"
        for target in (reference, reshuffled):
            (target / "usage").mkdir(parents=True)
            for name in ("catalog.json", "contracts.json"):
                (target / name).write_bytes((original / name).read_bytes())
        rows.write_parquet(reference / "usage" / "all.parquet")
        order = list(range(rows.height))
        random.Random(seed).shuffle(order)
        shuffled = rows[order]
        parts = (
            shuffled.with_row_index("i").with_columns(part=pl.col("i") % files).partition_by("part")
        )
        for n, part in enumerate(parts):
            part.drop("i", "part").write_parquet(reshuffled / "usage" / f"part-{n}.parquet")

        assert _import(reshuffled, as_of, threads, monkeypatch) == _import(
            reference, as_of, 2, monkeypatch
        )
