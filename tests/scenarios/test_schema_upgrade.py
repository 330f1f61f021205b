"""A file written before breakdown rows were keyed by one item key (schema version 11: each row
carried its run, line key, rate piece and tier) and before runs recorded what wrote them is
upgraded when next opened for writing, with every breakdown row and total as it was; so is one
written before runs recorded their files' fingerprint (version 14)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from tests.conftest import SAMPLES, query, run_cli

from bulk_rating.store import SCHEMA_VERSION

BREAKDOWNS = """SELECT line_item_id, window_start, quantity, amount FROM invoice_breakdowns
                ORDER BY ALL"""
ITEMS = "SELECT line_item_id, windows FROM invoice_line_items WHERE type = 'usage' ORDER BY ALL"


def _as_version_11(db: Path) -> None:
    """Rewrite the file's breakdown rows and line items in the shape version 11 stored."""
    con = duckdb.connect(str(db))
    con.execute(
        """CREATE TABLE _old_windows AS
           SELECT l.run_id, l.line_key, l.rate_key, l.tier_key, w.window_start, w.quantity
           FROM _priced_windows w JOIN invoice_line_items l USING (item_key)"""
    )
    con.execute("DROP TABLE _priced_windows")
    con.execute("ALTER TABLE _old_windows RENAME TO _priced_windows")
    con.execute("ALTER TABLE invoice_line_items DROP COLUMN item_key")
    con.execute("ALTER TABLE invoice_line_items DROP COLUMN windows")
    con.execute("ALTER TABLE _runs DROP COLUMN duckdb_version")
    con.execute("ALTER TABLE _runs DROP COLUMN bulk_rating_version")
    con.execute("ALTER TABLE _runs DROP COLUMN files_fingerprint")
    con.execute("DROP TABLE _api_answers")
    con.execute("UPDATE _schema SET version = 11")
    con.close()


def test_an_older_file_is_upgraded_with_its_breakdowns_unchanged(db: Path) -> None:
    imported = run_cli(
        "import", SAMPLES / "acme-daily-parquet", "--db", db, "--as-of", "2024-08-15"
    )
    assert imported.exit_code == 0, imported.stderr
    breakdowns, items = query(db, BREAKDOWNS), query(db, ITEMS)
    totals = query(db, "SELECT invoice_id, total FROM invoices ORDER BY ALL")
    assert len(breakdowns) > 0
    assert all(windows > 0 for _, windows in items)
    _as_version_11(db)

    refused = run_cli("sql", "SELECT 1", "--db", db)  # read-only: names the version
    assert refused.exit_code == 2
    assert "another version" in refused.stderr
    closed = run_cli("close", "--db", db, "--as-of", "2024-08-15")  # opens it for writing
    assert closed.exit_code == 0, closed.stderr

    assert query(db, BREAKDOWNS) == breakdowns
    assert query(db, ITEMS) == items
    assert query(db, "SELECT invoice_id, total FROM invoices ORDER BY ALL") == totals
    assert query(db, "SELECT max(version) FROM _schema") == [(SCHEMA_VERSION,)]
    assert query(db, "SELECT count(*) FROM _api_answers") == [(0,)]  # version 14's table
    # what wrote the older run is not known, and is not made up
    assert query(db, "SELECT duckdb_version, bulk_rating_version FROM _runs") == [(None, None)]
    assert query(db, "SELECT files_fingerprint FROM _runs") == [(None,)]
    (columns,) = query(
        db,
        "SELECT list(column_name ORDER BY column_index) FROM duckdb_columns()"
        " WHERE table_name = '_priced_windows'",
    )
    assert columns == (["item_key", "window_start", "quantity"],)


def test_a_version_14_file_is_upgraded_and_its_runs_known_by_their_rows(db: Path) -> None:
    data = SAMPLES / "acme-daily-parquet"
    imported = run_cli("import", data, "--db", db, "--as-of", "2024-08-15")
    assert imported.exit_code == 0, imported.stderr
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE _runs DROP COLUMN files_fingerprint")
    con.execute("UPDATE _schema SET version = 14")
    con.close()

    again = run_cli("import", data, "--db", db, "--as-of", "2024-08-15", "--json")

    assert again.exit_code == 0, again.stderr
    summary = again.json()["summary"]
    # a run stored before fingerprints has none to match: its rows' hash still knows it
    assert (summary["status"], summary["previous_run_id"], summary["matched_by"]) == (
        "already_imported",
        1,
        "content",
    )
    assert query(db, "SELECT max(version) FROM _schema") == [(SCHEMA_VERSION,)]
    assert query(db, "SELECT run_id, files_fingerprint FROM _runs") == [(1, None)]
