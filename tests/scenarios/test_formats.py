"""One truth, every reader: the acme-daily history as JSON, NDJSON, CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import SAMPLES, query, run_cli

FORMATS = ["acme-daily", "acme-daily-ndjson", "acme-daily-csv", "acme-daily-parquet"]


@pytest.fixture(scope="module")
def json_result(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    db = tmp_path_factory.mktemp("json") / "store.duckdb"
    result = run_cli(
        "import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15", "--json"
    )
    assert result.exit_code == 0
    data: list[dict[str, object]] = result.json()["data"]
    return data


@pytest.mark.parametrize("sample", FORMATS[1:])
def test_every_format_gives_identical_invoices(
    sample: str, tmp_path: Path, json_result: list[dict[str, object]]
) -> None:
    db = tmp_path / "store.duckdb"
    result = run_cli("import", SAMPLES / sample, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    assert result.json()["data"] == json_result
    assert [i["total"] for i in json_result] == [12500, 25000]  # type: ignore[index]
    daily = query(db, "SELECT count(*), sum(amount) FROM breakdowns_daily")
    assert daily == [(10, 12500)]
