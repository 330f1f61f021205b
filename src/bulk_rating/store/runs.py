"""Runs: their ids, records and results, and the HTTP API's kept answers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from bulk_rating import __version__, lazy

if TYPE_CHECKING:
    import polars as pl
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")

from bulk_rating.store.base import StoreBase, _quote, runs_schema

# A run's invoices with their credit type's name, numbered (`n`) in input order within their
# origin (history, then drafts).
_RUN_INVOICES = """
SELECT i.*, c.name AS credit_type_name,
       row_number() OVER (PARTITION BY i.origin ORDER BY i.invoice_index, i.contract_id) AS n
FROM invoices i JOIN credit_types c USING (credit_type_id) WHERE i.run_id = $run"""


class RunQueries(StoreBase):
    def run_with_hash(self, input_hash: str) -> int | None:
        found = self.scalar(
            "SELECT min(run_id) FROM _runs WHERE input_hash = ? AND NOT preview AND status = 'imported'",
            [input_hash],
        )
        return None if found is None else int(found)

    def next_run_id(self) -> int:
        return int(self.scalar("SELECT coalesce(max(run_id), 0) + 1 FROM _runs"))

    def api_answer(self, key: str) -> tuple[str, int, str] | None:
        """The request hash, status and body first given for an Idempotency-Key, if any."""
        found = self.con.execute(
            "SELECT request_hash, status, body FROM _api_answers WHERE idempotency_key = ?", [key]
        ).fetchall()
        return (str(found[0][0]), int(found[0][1]), str(found[0][2])) if found else None

    def keep_api_answer(
        self, key: str, request_hash: str, method: str, path: str, status: int, body: str
    ) -> None:
        """Keep the first answer to an Idempotency-Key (a key already kept is left as it was)."""
        with self.transaction():
            self.con.execute(
                """INSERT INTO _api_answers
                   SELECT ?, ?, ?, ?, ?, ?, now()
                   WHERE NOT EXISTS (SELECT 1 FROM _api_answers WHERE idempotency_key = ?)""",
                [key, request_hash, method, path, status, body, key],
            )

    def record_run(self, row: dict[str, Any], contracts_created: int) -> None:
        """The run's row in `_runs`, its counts taken from what it stored, and what wrote it."""
        row = {**row, "duckdb_version": duckdb.__version__, "bulk_rating_version": __version__}
        self.insert("_runs", pl.DataFrame([row], schema_overrides=runs_schema()))
        self.con.execute(
            """UPDATE _runs SET
                   invoices = (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'HISTORICAL_IMPORT'),
                   drafts = (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'CONTRACT_SCHEDULE'),
                   line_items = (SELECT count(*) FROM invoice_line_items WHERE run_id = $run),
                   windows = (SELECT coalesce(sum(windows), 0) FROM invoice_line_items WHERE run_id = $run),
                   contracts = $contracts
               WHERE run_id = $run""",
            {"run": row["run_id"], "contracts": contracts_created},
        )

    def run_invoices(self, run_id: int, limit: int | None) -> pl.DataFrame:
        """A run's invoices in input order (then its drafts), at most `limit` of each origin."""
        return self.frame(
            f"""SELECT * FROM ({_RUN_INVOICES})
                {"" if limit is None else f"WHERE n <= {int(limit)}"}
                ORDER BY origin DESC, n""",
            {"run": run_id},
        )

    def run_line_items(self, run_id: int, invoices: pl.DataFrame) -> pl.DataFrame:
        self.temp_table("_shown", invoices.select("invoice_id"))
        return self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l
               JOIN credit_types c USING (credit_type_id) SEMI JOIN _shown USING (invoice_id)
               WHERE l.run_id = $run ORDER BY l.invoice_index, l.position""",
            {"run": run_id},
        )

    def export_run_rows(self, run_id: int, folder: Path) -> tuple[Path, Path]:
        """Every invoice of a run and every line item of them, as run_invoices and
        run_line_items give them, written to two Parquet files in `folder`: the invoices in
        their order, the line items in their invoice's order (its `origin` and `n`) then their
        position. A report reads them a page at a time: at 1B usage rows, 4.2M line items held
        in Python took 3 GB. A full disk or the memory limit is a ResourceError."""
        invoices, lines = folder / "invoices.parquet", folder / "line_items.parquet"
        # the files go to the staging folder (under TMPDIR), not next to the database
        where = f"its invoices could not be listed in {folder.parent} (TMPDIR)"
        with self.short_of_room(
            f"the preview saved nothing and {where}"
            if self.throwaway
            else f"the run is stored, but {where}: read them from the database",
            committed=not self.throwaway,
        ):
            self.con.execute(
                f"COPY (SELECT * FROM ({_RUN_INVOICES}) ORDER BY origin DESC, n)"
                f" TO '{_quote(str(invoices))}' (FORMAT parquet)",
                {"run": run_id},
            )
            self.con.execute(
                f"""COPY (
                    SELECT l.*, c.name AS credit_type_name, i.origin, i.n
                    FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
                    JOIN read_parquet('{_quote(str(invoices))}') i ON i.invoice_id = l.invoice_id
                    WHERE l.run_id = $run ORDER BY i.origin DESC, i.n, l.position
                ) TO '{_quote(str(lines))}' (FORMAT parquet)""",
                {"run": run_id},
            )
        return invoices, lines

    def run_summary(self, run_id: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """A run's counts and its imported totals per credit type."""
        counts = self.rows(
            """SELECT (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'HISTORICAL_IMPORT') AS invoices,
                      (SELECT count(*) FROM invoice_line_items WHERE run_id = $run) AS line_items,
                      (SELECT coalesce(sum(windows), 0) FROM invoice_line_items WHERE run_id = $run) AS windows,
                      (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'CONTRACT_SCHEDULE') AS drafts""",
            {"run": run_id},
        )[0]
        totals = self.rows(
            """SELECT i.credit_type_id, c.name AS credit_type_name, sum(i.total) AS total
               FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.run_id = $run AND i.origin = 'HISTORICAL_IMPORT' GROUP BY ALL ORDER BY 1""",
            {"run": run_id},
        )
        return counts, totals
