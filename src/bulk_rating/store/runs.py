"""Runs: their ids, records and results, and the HTTP API's kept answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from bulk_rating import __version__, lazy

if TYPE_CHECKING:
    import polars as pl
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")

from bulk_rating.store.base import StoreBase, runs_schema


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
            f"""SELECT * FROM (
                    SELECT i.*, c.name AS credit_type_name,
                           row_number() OVER (PARTITION BY i.origin ORDER BY i.invoice_index, i.contract_id) AS n
                    FROM invoices i JOIN credit_types c USING (credit_type_id) WHERE i.run_id = $run)
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
