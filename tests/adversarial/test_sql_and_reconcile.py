"""`sql` reaches nothing but the database.

- `sql`: every way out of the database (writing or reading files, attaching one, installing or
  loading an extension, setting the guards back) is refused with a message and exit 2, creates no
  file and leaves the store byte for byte as it was; a query that does not parse is exit 2 too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.adversarial.conftest import Snapshot, assert_clean
from tests.conftest import query, run_cli, run_process


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DuckDB's home (where extensions and persistent secrets go) inside the test's folder."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


# Each statement tries to leave the database; {tmp} is the test's folder.
ESCAPES = {
    "copy to a file": "COPY (SELECT 1 AS a) TO '{tmp}/x.csv'",
    "copy a table to parquet": "COPY invoices TO '{tmp}/invoices.parquet' (FORMAT parquet)",
    "export the database": "EXPORT DATABASE '{tmp}/dump'",
    "install a community extension": "INSTALL shellfs FROM community",
    "install from a file": "INSTALL '{tmp}/planted.duckdb_extension'",
    "load an extension": "LOAD httpfs",
    "load a file": "LOAD '{tmp}/planted.duckdb_extension'",
    "turn external access back on": "SET enable_external_access = true",
    "allow community extensions": "SET allow_community_extensions = true",
    "unlock the configuration": "SET lock_configuration = false",
    "reset the lock": "RESET lock_configuration",
    "attach another file": "ATTACH '{tmp}/other.duckdb' AS other",
    "attach in memory": "ATTACH ':memory:' AS scratch",
    "create a table": "CREATE TABLE t AS SELECT 1 AS a",
    "delete rows": "DELETE FROM invoices",
    "read another file": "SELECT * FROM read_csv('{tmp}/planted.duckdb_extension')",
    "a write after a read": "SELECT 1; COPY (SELECT 1 AS a) TO '{tmp}/y.csv'",
    "a persistent secret": "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
}


@pytest.mark.parametrize("statement", ESCAPES.values(), ids=ESCAPES.keys())
def test_sql_refuses_every_way_out_of_the_database(
    statement: str, stored: Path, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "planted.duckdb_extension").write_bytes(b"not an extension")
    before, files = Snapshot.of(stored), _files(tmp_path)

    result = run_cli("sql", statement.format(tmp=tmp_path), "--db", stored)

    assert_clean(result, 2)
    said = " ".join(result.stderr.split())
    assert "refused" in said or "read-only" in said, said
    assert _files(tmp_path) == files, "no file may be created"
    assert before.unchanged()
    assert query(stored, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'") == [
        (2,)
    ]


def test_sql_refuses_a_copy_as_a_process_too(stored: Path, home: Path, tmp_path: Path) -> None:
    before, files = Snapshot.of(stored), _files(tmp_path)

    result = run_process("sql", f"COPY invoices TO '{tmp_path}/out.csv'", "--db", stored)

    assert_clean(result, 2, "refused")
    assert _files(tmp_path) == files
    assert before.unchanged()


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("SELECT 1 FROM", "the query failed"),
        ("SELECT * FROM no_such_table", "the query failed"),
        ("SELECT INTERVAL 1 DAY AS gap", "cast it"),  # a type the result frame cannot hold
    ],
)
def test_a_query_that_fails_is_a_usage_error(stored: Path, statement: str, said: str) -> None:
    before = Snapshot.of(stored)

    result = run_cli("sql", statement, "--db", stored)

    assert_clean(result, 2)
    assert said in " ".join(result.stderr.split())
    assert before.unchanged()


def test_reading_the_store_and_writing_rows_with_out_still_work(
    stored: Path, tmp_path: Path
) -> None:
    target = tmp_path / "rows.csv"

    result = run_cli(
        "sql",
        "SELECT contract_id, total FROM invoices WHERE origin = 'HISTORICAL_IMPORT' ORDER BY total",
        "--db",
        stored,
        "--format",
        "csv",
        "--out",
        target,
    )

    assert_clean(result, 0)
    assert target.read_text().splitlines() == [
        "contract_id,total",
        "con_acme_2024,12500.00000000000000000000000",
        "con_acme_2024,25000.00000000000000000000000",
    ]
