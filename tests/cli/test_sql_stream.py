"""`bulk-rating sql` streams its result: CSV, JSON and Parquet written batch by batch give the
rows DuckDB reads from the store, exactly (decimals never through a float), in the same text as
when the result was read whole; the table shows the first rows and counts the rest; a query that
fails part way leaves no file behind."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.conftest import query, run_cli

import bulk_rating
from bulk_rating import cli, import_history, results, samples
from bulk_rating.money import dumps_exact

COLUMNS = [
    "customer_id",
    "contract_id",
    "invoice_id",
    "line_item_id",
    "product_id",
    "granularity",
    "window_start",
    "window_end",
    "quantity",
    "unit_price",
    "amount",
]
BREAKDOWNS = (
    f"SELECT {', '.join(COLUMNS)} FROM invoice_breakdowns ORDER BY line_item_id, window_start"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated realistic set (UUID ids, hourly rows), imported."""
    folder = tmp_path_factory.mktemp("generated")
    written = samples.generate(
        folder / "set", customers=4, products=4, months=2, ids="uuid", order="time"
    )
    db = folder / "store.duckdb"
    report = import_history(folder / "set", db=db, as_of=written["as_of"])
    assert report.status == "imported"
    return db


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of a thousand rows, so that a result of thousands crosses many batch (and row
    group) boundaries."""
    monkeypatch.setattr(results, "BATCH_ROWS", 1_000)
    monkeypatch.setattr(results, "PYTHON_ROWS", 300)
    monkeypatch.setattr(results, "ROW_GROUP_ROWS", 2_500)


@pytest.fixture(scope="module")
def stored_rows(store: Path) -> list[tuple[Any, ...]]:
    rows = query(store, BREAKDOWNS)
    assert len(rows) > 10_000
    return rows


def _exact(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their decimals as exact text (Decimal('1.50') and Decimal('1.5') alike)."""
    return [tuple(_text(v) for v in row) for row in rows]


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return value


def test_csv_gives_the_stored_rows_exactly(
    store: Path, stored_rows: list[tuple[Any, ...]], tmp_path: Path
) -> None:
    target = tmp_path / "rows.csv"

    result = run_cli("sql", BREAKDOWNS, "--db", store, "--format", "csv", "--out", target)

    assert result.exit_code == 0, result.stderr
    reader = csv.reader(io.StringIO(target.read_text()))
    assert next(reader) == COLUMNS
    written = [
        (
            *row[:6],
            datetime.strptime(row[6], "%Y-%m-%dT%H:%M:%S.%f%z"),
            datetime.strptime(row[7], "%Y-%m-%dT%H:%M:%S.%f%z"),
            *(Decimal(v) for v in row[8:]),
        )
        for row in reader
    ]
    assert _exact(written) == _exact(stored_rows)


def test_json_gives_the_stored_rows_exactly_as_one_array(
    store: Path, stored_rows: list[tuple[Any, ...]]
) -> None:
    result = run_cli("sql", BREAKDOWNS, "--db", store, "--format", "json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout, parse_float=Decimal, parse_int=Decimal)
    assert [list(row) for row in document[:1]] == [COLUMNS]
    written = [
        (
            *(row[c] for c in COLUMNS[:6]),
            datetime.fromisoformat(row["window_start"]),
            datetime.fromisoformat(row["window_end"]),
            *(row[c] for c in COLUMNS[8:]),
        )
        for row in document
    ]
    assert _exact(written) == _exact(stored_rows)
    # the same text as the whole array written at once
    assert result.stdout == dumps_exact(document) + "\n"


def test_parquet_gives_the_stored_rows_in_row_groups(
    store: Path, stored_rows: list[tuple[Any, ...]], tmp_path: Path
) -> None:
    target = tmp_path / "rows.parquet"

    result = run_cli("sql", BREAKDOWNS, "--db", store, "--format", "parquet", "--out", target)

    assert result.exit_code == 0, result.stderr
    table = pq.read_table(target)
    assert table.column_names == COLUMNS
    assert str(table.schema.field("amount").type) == "decimal128(38, 23)"
    assert [tuple(row.values()) for row in table.to_pylist()] == stored_rows
    groups = pq.ParquetFile(target).metadata
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    assert len(sizes) > 1
    assert min(sizes[:-1]) >= 2_500  # batches gathered up to ROW_GROUP_ROWS


def test_the_table_shows_the_first_rows_and_counts_them_all(
    store: Path, stored_rows: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "TABLE_ROWS_SHOWN", 4)

    result = run_cli(
        "sql", "SELECT line_item_id, amount FROM invoice_breakdowns ORDER BY ALL", "--db", store
    )

    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert f"{len(stored_rows):,} rows, the first 4 shown (--format csv, json or parquet" in said
    first = sorted((row[3], row[10]) for row in stored_rows)[:4]
    for line_item, amount in first:
        assert f"{line_item} {_text(amount)}" in said


def test_a_query_failing_part_way_writes_no_file(store: Path, tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    failing = (
        "SELECT i, CASE WHEN i < 500000 THEN i ELSE error('no more rows') END AS n"
        " FROM range(1000000) t(i)"
    )

    result = run_cli("sql", failing, "--db", store, "--format", "csv", "--out", target)

    assert result.exit_code == 2
    assert "the query failed" in result.stderr
    assert "no more rows" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("format", ["csv", "json", "table"])
def test_a_query_failing_part_way_on_stdout_is_a_usage_error(store: Path, format: str) -> None:
    failing = (
        "SELECT (CASE WHEN i < 500000 THEN i::VARCHAR ELSE 'x' || i END)::INT AS n"
        " FROM range(1000000) t(i)"
    )

    result = run_cli("sql", failing, "--db", store, "--format", format)

    assert result.exit_code == 2
    assert "[USAGE_ERROR] the query failed: Conversion Error" in " ".join(result.stderr.split())


def test_the_rows_are_never_written_over_the_store(store: Path) -> None:
    result = run_cli("sql", "SELECT 1", "--db", store, "--format", "csv", "--out", store)

    assert result.exit_code == 2
    assert "--out" in result.stderr
    assert query(store, "SELECT count(*) FROM invoices")[0][0] > 0


def test_csv_refuses_nested_values_and_json_writes_them(store: Path) -> None:
    nested = "SELECT [1, 2] AS list, {'a': 1.50} AS struct, 3 AS n"

    refused = run_cli("sql", nested, "--db", store, "--format", "csv")
    written = run_cli("sql", nested, "--db", store, "--format", "json")

    assert refused.exit_code == 2
    assert "CSV holds no lists, structs or maps (`list`, `struct`)" in " ".join(
        refused.stderr.split()
    )
    assert written.exit_code == 0
    assert json.loads(written.stdout, parse_float=Decimal) == [
        {"list": [1, 2], "struct": {"a": Decimal("1.5")}, "n": 3}
    ]


def test_repeated_column_names_are_made_unique_as_duckdb_makes_them(store: Path) -> None:
    result = run_cli("sql", "SELECT 1 AS a, 2 AS a, 3 AS A", "--db", store, "--format", "csv")

    assert result.stdout.splitlines() == ["a,a_1,A_2", "1,2,3"]


def test_an_empty_result_is_a_header_or_an_empty_array(store: Path) -> None:
    empty = "SELECT invoice_id, total FROM invoices WHERE false"

    as_csv = run_cli("sql", empty, "--db", store, "--format", "csv")
    as_json = run_cli("sql", empty, "--db", store, "--format", "json")

    assert as_csv.stdout == "invoice_id,total\n"
    assert as_json.stdout == "[]\n"


def test_a_query_without_a_statement_is_a_usage_error(store: Path) -> None:
    result = run_cli("sql", "/* nothing */", "--db", store)

    assert result.exit_code == 2
    assert "holds no SQL statement" in result.stderr


def test_the_python_api_gives_the_result_whole_as_a_frame(
    store: Path, stored_rows: list[tuple[Any, ...]]
) -> None:
    frame = bulk_rating.query(BREAKDOWNS, db=store)

    assert frame.columns == COLUMNS
    assert frame.rows() == stored_rows


def test_the_store_can_be_named_by_the_environment(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("bulk_rating_db", str(store))  # the name in any case, as for every setting

    result = run_cli("sql", "SELECT count(*) AS invoices FROM invoices", "--format", "csv")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "invoices"
