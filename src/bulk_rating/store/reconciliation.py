"""Reconciliation of legacy invoices against the imported ones, and its kept runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bulk_rating import lazy

if TYPE_CHECKING:
    import polars as pl

    from bulk_rating import reconcile
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")
    reconcile = lazy.Module("bulk_rating.reconcile")

from bulk_rating.store.base import StoreBase


class ReconciliationQueries(StoreBase):
    def imported_invoices(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The stored historical invoices (not voided) and their usage lines, for reconciliation."""
        invoices = self.frame(
            """SELECT invoice_id, customer_id, contract_id, credit_type_id, start_timestamp, end_timestamp, total
               FROM invoices WHERE origin = 'HISTORICAL_IMPORT' AND status <> 'VOID'"""
        )
        lines = self.frame(
            """SELECT l.invoice_id, l.product_id, l.quantity, l.total FROM invoice_line_items l
               SEMI JOIN invoices i ON i.invoice_id = l.invoice_id AND i.origin = 'HISTORICAL_IMPORT'
               WHERE l.type = 'usage'"""
        )
        return invoices, lines

    def reconcile(
        self,
        legacy: tuple[pl.DataFrame, pl.DataFrame],
        imported: tuple[pl.DataFrame, pl.DataFrame],
        tolerance: int,
        legacy_unit: str = "minor",
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Run the reconciliation diffs; returns invoice diffs, line diffs and the totals per
        month and credit type. Legacy totals in `major` units are turned into minor ones first."""
        for name, frame in zip(
            ("legacy_invoices", "legacy_lines", "imported_invoices", "imported_lines"),
            (*legacy, *imported),
            strict=True,
        ):
            self.temp_table(name, frame)
        if legacy_unit == "major":
            for statement in reconcile.legacy_to_minor_sql():
                self.con.execute(statement)
        params = {"tolerance": tolerance}
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE invoice_diff AS " + reconcile.INVOICE_DIFF, params
        )
        invoices = self.frame("SELECT * FROM invoice_diff")
        lines = self.frame(reconcile.LINE_DIFF, params)
        periods = self.frame(reconcile.PERIOD_TOTALS)
        return invoices, lines, periods

    def record_reconciliation(self, run: dict[str, Any], results: pl.DataFrame) -> int:
        with self.transaction():
            reconciliation_id = int(
                self.scalar(
                    "SELECT coalesce(max(reconciliation_id), 0) + 1 FROM reconciliation_runs"
                )
            )
            self.insert(
                "reconciliation_runs",
                pl.DataFrame([{**run, "reconciliation_id": reconciliation_id}]),
            )
            self.insert(
                "reconciliation_results",
                results.with_columns(reconciliation_id=pl.lit(reconciliation_id)),
            )
        return reconciliation_id

    def reconciliation_runs(self) -> list[dict[str, Any]]:
        """The kept reconciliations, the latest first (what a list of them shows)."""
        return self.rows(
            """SELECT reconciliation_id, run_at, legacy_files, tolerance, invoices_compared,
                      differences, legacy_unit, compared_with
               FROM reconciliation_runs ORDER BY reconciliation_id DESC"""
        )

    def reconciliation(
        self, reconciliation_id: int
    ) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame] | None:
        """A kept reconciliation: its run, its invoice results and its line results."""
        runs = self.rows(
            "SELECT * FROM reconciliation_runs WHERE reconciliation_id = ?", [reconciliation_id]
        )
        if not runs:
            return None
        results = self.frame(
            """SELECT * EXCLUDE (reconciliation_id) FROM reconciliation_results
               WHERE reconciliation_id = ?
               ORDER BY level, inclusive_start, customer_id, contract_id, legacy_invoice_id,
                        invoice_id, product_id""",
            [reconciliation_id],
        )
        invoices = results.filter(pl.col("level") == "invoice").drop("level")
        lines = results.filter(pl.col("level") == "line").drop(
            "level", "candidates", "legacy_units", "imported_units"
        )
        return runs[0], invoices, lines
