"""The daily rollups (`_priced_days`, read by breakdowns_daily) are the windows summed per line
item and UTC day, whatever wrote the windows: a usage table (hourly rows, tier edges, windows kept
without a tier), a JSON batch, a draft rated again by a later import, and an older store's windows
when it is upgraded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
from tests.conftest import SAMPLES, query, run_cli, write_usage_csv

from bulk_rating import samples
from bulk_rating.store import SCHEMA_VERSION

# The rollups as the windows give them, grouped when asked.
WINDOWS_BY_DAY = """
SELECT w.item_key, (w.window_start AT TIME ZONE 'UTC')::DATE AS day,
       date_trunc('day', w.window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS window_start,
       sum(w.quantity) AS quantity, count(*) AS windows
FROM _priced_windows w
JOIN invoice_line_items l USING (item_key)
WHERE l.granularity IN ('HOUR', 'DAY')
GROUP BY ALL ORDER BY ALL"""
ROLLUPS = "SELECT item_key, day, window_start, quantity, windows FROM _priced_days ORDER BY ALL"

# breakdowns_daily as schema version 14 made it: every window grouped by line item and UTC day.
DAILY_AS_GROUPED = """
SELECT customer_id, contract_id, invoice_id, line_item_id, product_id,
       (date_trunc('day', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS window_start,
       sum(quantity) AS quantity, any_value(unit_price) AS unit_price, sum(amount) AS amount,
       count(*) AS windows
FROM invoice_breakdowns
GROUP BY ALL ORDER BY ALL"""
DAILY = """
SELECT customer_id, contract_id, invoice_id, line_item_id, product_id, window_start, quantity,
       unit_price, amount, windows
FROM breakdowns_daily ORDER BY ALL"""


def _assert_rolled_up(db: Path) -> list[tuple[Any, ...]]:
    rollups = query(db, ROLLUPS)
    assert rollups
    assert rollups == query(db, WINDOWS_BY_DAY)
    daily = query(db, DAILY)
    assert daily == query(db, DAILY_AS_GROUPED)
    return daily


def test_a_usage_tables_rollups_are_its_windows_by_day(tmp_path: Path) -> None:
    written = samples.generate(tmp_path / "set", customers=20, products=4, months=2, seed=31)
    db = tmp_path / "store.duckdb"

    done = run_cli("import", tmp_path / "set", "--db", db, "--as-of", written["as_of"])

    assert done.exit_code == 0, done.stderr
    # windows of weeks with a tier edge are also kept without a tier: in no line item, no day
    assert query(
        db, "SELECT count(*) > 0 FROM _priced_windows WHERE item_key >= (1::UBIGINT << 63)"
    )
    _assert_rolled_up(db)


def _draft_set(directory: Path, days: range, *, catalog: bool) -> Path:
    """acme-commit's August (its DRAFT as of August 15): one call a day on `days`."""
    directory.mkdir(parents=True)
    if catalog:
        for name in ("catalog.json", "contracts.json"):
            shutil.copy(SAMPLES / "acme-commit" / name, directory / name)
    write_usage_csv(
        directory / "usage.csv",
        (
            ["cus_acme", "con_acme_2024", "prod_api_calls", start, end, "1", "DAY"]
            for d in days
            for start, end in [(f"2024-08-{d:02d}T00:00:00Z", f"2024-08-{d + 1:02d}T00:00:00Z")]
        ),
    )
    return directory


def test_a_draft_rated_again_has_the_rollups_of_its_new_windows_only(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    august = "SELECT sum(quantity), sum(windows) FROM _priced_days WHERE day >= '2024-08-01'"
    first = run_cli(
        "import", _draft_set(tmp_path / "first", range(1, 6), catalog=True),
        "--db", db, "--as-of", "2024-08-15",
    )  # fmt: skip
    assert first.exit_code == 0, first.stderr
    _assert_rolled_up(db)
    assert query(db, august) == [(5, 5)]

    more = run_cli(
        "import", _draft_set(tmp_path / "more", range(6, 16), catalog=False),
        "--db", db, "--as-of", "2024-08-15",
    )  # fmt: skip

    assert more.exit_code == 0, more.stderr
    _assert_rolled_up(db)  # the first rating's days are gone with its windows
    assert query(db, august) == [(15, 15)]


def test_a_json_batchs_rollups_are_its_windows_by_day(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    done = run_cli("import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15")
    assert done.exit_code == 0, done.stderr
    assert len(_assert_rolled_up(db)) == 10  # June 1-10, one call a day


def _as_version_14(db: Path) -> None:
    """The file as version 14 left it: no rollups, breakdowns_daily grouping every window."""
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE _priced_days")
    con.execute(
        """CREATE OR REPLACE VIEW breakdowns_daily AS
           SELECT customer_id, contract_id, invoice_id, line_item_id, product_id,
                  (date_trunc('day', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS window_start,
                  (date_trunc('day', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') + INTERVAL 1 DAY AS window_end,
                  sum(quantity) AS quantity, any_value(unit_price) AS unit_price, sum(amount) AS amount,
                  count(*) AS windows
           FROM invoice_breakdowns
           GROUP BY ALL"""
    )
    con.execute("UPDATE _schema SET version = 14")
    con.close()


def test_a_version_14_store_is_upgraded_with_its_rollups(tmp_path: Path) -> None:
    written = samples.generate(tmp_path / "set", customers=5, products=4, months=2, seed=7)
    db = tmp_path / "store.duckdb"
    assert (
        run_cli("import", tmp_path / "set", "--db", db, "--as-of", written["as_of"]).exit_code == 0
    )
    daily = query(db, DAILY)
    _as_version_14(db)
    assert query(db, DAILY) == daily  # as version 14 answered it

    closed = run_cli("close", "--db", db, "--as-of", written["as_of"])  # opens it for writing

    assert closed.exit_code == 0, closed.stderr
    assert query(db, "SELECT max(version) FROM _schema") == [(SCHEMA_VERSION,)]
    assert _assert_rolled_up(db) == daily
