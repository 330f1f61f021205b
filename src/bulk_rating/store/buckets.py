"""A run rated in buckets of contracts on other processes (buckets.py): the snapshot they start
from, what each one's rating changed (its effects, written as Parquet), and those effects applied
to the store in the run's transaction.

A bucket's rating changes the store in two ways only: it adds the run's facts (invoices, line
items, windows, rollups, ledger deductions, kept draft usage, all of the run) and it rates drafts
again (their facts dropped, their invoice rows updated). The snapshot holds the reference tables
(what a preview copies); line items, windows and rollups are not in it, so every one a bucket has
afterwards is its own. Of the other tables, the rows a bucket may change (the run's, and those of
DRAFT invoices) are compared before and after its rating: rows gone and rows new.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from bulk_rating.store.base import REFERENCE_TABLES, _quote
from bulk_rating.store.rating import RatingStatements

# Tables a bucket writes whole (absent from the snapshot: all their rows are the bucket's).
WRITTEN_WHOLE = ("invoice_line_items", "_priced_windows", "_priced_days")
# The breakdowns (windows, daily rollups) of history are written apart, one folder of Parquet
# files per UTC month (`history_<kind>/month=YYYY-MM/`): into the store, or kept outside it as
# they are. A draft's are always the store's (it is rated again when more usage comes).
BREAKDOWNS = {"windows": "_priced_windows", "days": "_priced_days"}
_DRAFT_ITEMS = """SELECT l.item_key FROM invoice_line_items l
    JOIN invoices i ON i.invoice_id = l.invoice_id
    WHERE i.status = 'DRAFT' AND l.item_key IS NOT NULL"""  # applied lines have none: NOT IN

# Tables of the snapshot a bucket changes: the rows it may change ($run: the run's id), and the
# key a changed row is replaced by.
_DRAFT_INVOICES = "SELECT invoice_id FROM invoices WHERE status = 'DRAFT'"
CHANGED: dict[str, tuple[str, str]] = {
    "invoices": ("run_id = $run OR status = 'DRAFT'", "invoice_id"),
    "balance_ledger_entries": (
        f"run_id = $run OR invoice_id IN ({_DRAFT_INVOICES})",
        "entry_id",
    ),
    "_draft_usage": ("run_id = $run", ""),  # only ever added to
}


class BucketStatements(RatingStatements):
    def write_snapshot(self, path: Path) -> None:
        """A new store file at `path` holding this store's reference tables: what a bucket's
        rating reads (the same tables a preview copies)."""
        type(self).open(path).close()  # the schema, views and macros, as any store has
        self.con.execute(f"ATTACH '{_quote(str(path))}' AS snapshot")
        try:
            for table in REFERENCE_TABLES:
                self.con.execute(f"DELETE FROM snapshot.{table}")
                self.con.execute(f"INSERT INTO snapshot.{table} BY NAME SELECT * FROM main.{table}")
        finally:
            self.con.execute("DETACH snapshot")

    def keep_before(self, run_id: int) -> None:
        """The rows a bucket's rating may change, as they are before it (temp tables)."""
        for table, (changing, _) in CHANGED.items():
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE _before_{table} AS"
                f" SELECT * FROM {table} WHERE {changing}",
                {"run": run_id},
            )

    def write_effects(self, run_id: int, folder: Path) -> dict[str, int]:
        """What the bucket's rating changed, as Parquet files in `folder`: `<table>.parquet`
        (rows new) for every table, `<table>.gone.parquet` (rows gone) for those compared.
        Returns the rows written per file."""
        written = {}

        def copy(name: str, sql: str, params: dict[str, int] | None = None) -> None:
            target = folder / f"{name}.parquet"
            found = self.con.execute(
                f"COPY ({sql}) TO '{_quote(str(target))}' (FORMAT parquet)", params
            ).fetchall()
            written[name] = int(found[0][0])

        copy("invoice_line_items", "SELECT * FROM invoice_line_items")
        for kind, table in BREAKDOWNS.items():
            copy(table, f"SELECT * FROM {table} WHERE item_key IN ({_DRAFT_ITEMS})")
            month = "strftime(make_timestamp(epoch_us(window_start)), '%Y-%m')"  # UTC
            found = self.con.execute(
                f"COPY (SELECT *, {month} AS month FROM {table} WHERE item_key NOT IN ({_DRAFT_ITEMS}))"
                f" TO '{_quote(str(folder / f'history_{kind}'))}' (FORMAT parquet, PARTITION_BY (month))"
            ).fetchall()
            written[f"history_{kind}"] = int(found[0][0])
        for table, (changing, _) in CHANGED.items():
            now = f"SELECT * FROM {table} WHERE {changing}"
            copy(table, f"{now} EXCEPT ALL SELECT * FROM _before_{table}", {"run": run_id})
            copy(
                f"{table}.gone", f"SELECT * FROM _before_{table} EXCEPT ALL {now}", {"run": run_id}
            )
        return written

    def apply_effects(self, folders: Sequence[str], history_in_store: bool = True) -> None:
        """The buckets' effects, in the run's transaction: the drafts they rated again lose what
        they were rated at (as clear_drafts does), rows gone are deleted by key, rows new are
        added (the history's breakdowns too, unless they are kept outside: add_breakdown_files)."""
        if not folders:
            return

        def files(name: str) -> str:
            return "[" + ", ".join(f"'{_quote(str(Path(f) / name))}'" for f in folders) + "]"

        self.con.execute("DELETE FROM _shown")
        self.con.execute(
            "INSERT INTO _shown SELECT DISTINCT invoice_id"
            f" FROM read_parquet({files('invoices.gone.parquet')})"
        )
        self.drop_draft_facts()
        for table, (_, key) in CHANGED.items():
            gone = f"read_parquet({files(f'{table}.gone.parquet')})"
            if key:
                self.con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {gone})")
            elif self.scalar(f"SELECT count(*) FROM {gone}"):
                raise duckdb.InternalException(f"a bucket removed rows of {table}")
        for table in (*WRITTEN_WHOLE, *CHANGED):
            self.con.execute(
                f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({files(f'{table}.parquet')})"
            )
        for kind, table in BREAKDOWNS.items():
            history = history_files(folders, kind)
            if history_in_store and history:
                listed = "[" + ", ".join(f"'{_quote(str(f))}'" for f in history) + "]"
                self.con.execute(
                    f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({listed},"
                    " hive_partitioning = false)"
                )

    def add_breakdown_files(self, run_id: int, placed: Sequence[tuple[str, str, str]]) -> None:
        """Breakdown files kept outside the store, (kind, month, path) each, named as the run's
        and read from now on through breakdown_windows and breakdown_days."""
        for kind, month, path in placed:
            self.con.execute(
                "INSERT INTO _breakdown_files SELECT ?, ?, ?, ?,"
                " (SELECT num_rows FROM parquet_file_metadata(?))",
                [run_id, kind, month, path, path],
            )
        self.define_breakdown_views()

    def renumber_invoices(self, run_id: int) -> None:
        """The run's invoices numbered as one local run numbers them (assemble: by contract,
        credit type and period, history and drafts each from 0), not bucket by bucket."""
        numbered = """
            SELECT invoice_id, status = 'DRAFT' AS draft,
                   dense_rank() OVER (PARTITION BY status = 'DRAFT'
                                      ORDER BY contract_id, credit_type_id, start_timestamp, end_timestamp) - 1 AS number
            FROM invoices
            WHERE invoice_id IN (SELECT invoice_id FROM invoice_line_items WHERE run_id = $run)"""
        self.con.execute(
            f"""UPDATE invoices SET invoice_index = n.number FROM ({numbered}) n
                WHERE invoices.invoice_id = n.invoice_id AND invoices.run_id = $run AND NOT n.draft""",
            {"run": run_id},
        )
        self.con.execute(
            f"""UPDATE invoice_line_items SET invoice_index = n.number FROM ({numbered}) n
                WHERE invoice_line_items.invoice_id = n.invoice_id AND invoice_line_items.run_id = $run""",
            {"run": run_id},
        )

    def keys_twice(self, run_id: int) -> list[str]:
        """The run's keys that are in the store more than once (none when every bucket was
        applied once and no two buckets shared a contract)."""
        checks = {
            "invoice_id": "SELECT invoice_id FROM invoices WHERE run_id = $run",
            "line_item_id": "SELECT line_item_id FROM invoice_line_items WHERE run_id = $run",
            "entry_id": "SELECT entry_id FROM balance_ledger_entries WHERE run_id = $run",
        }
        found = []
        for key, sql in checks.items():
            table = sql.split(" FROM ")[1].split(" ")[0]
            twice = self.scalar(
                f"SELECT count(*) FROM (SELECT {key} FROM {table} WHERE {key} IN ({sql})"
                f" GROUP BY {key} HAVING count(*) > 1)",
                {"run": run_id},
            )
            if twice:
                found.append(f"{twice} {key}s")
        return found


def history_files(folders: Sequence[str], kind: str) -> list[Path]:
    """The Parquet files of the history's breakdowns (BREAKDOWNS) the buckets wrote."""
    return sorted(
        f for folder in folders for f in (Path(folder) / f"history_{kind}").rglob("*.parquet")
    )
