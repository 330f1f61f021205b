"""Commits and credits: drawdown inputs, applications, balances and the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from bulk_rating import lazy

if TYPE_CHECKING:
    import polars as pl

    from bulk_rating import balances
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")
    balances = lazy.Module("bulk_rating.balances")

from bulk_rating.store.base import StoreBase


class LedgerQueries(StoreBase):
    def commit_inputs(self, run_id: int) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, Any]]]:
        """What drawdown needs: the run's usage lines of contracts with segments, each line's
        amount per piece of time between segment boundaries, and the segments' balances."""
        lines = self.frame(balances.RUN_LINES, {"run_id": run_id})
        if not lines.height:
            return lines, pl.DataFrame(), []
        pieces = self.frame(balances.LINE_PIECES, {"run_id": run_id})
        segments = self.rows(balances.SEGMENTS)
        return lines, pieces, segments

    def customer_balances(
        self, customer_id: str, as_of: datetime, *, finalized_only: bool = False
    ) -> pl.DataFrame:
        """Each commit and credit segment of a customer, with what remained of it at `as_of`;
        `finalized_only`: deductions of DRAFT invoices left out."""
        return self.frame(
            """SELECT s.commit_or_credit_id AS id, s.kind AS type, s.segment_id, s.starting_at, s.ending_before,
                      s.credit_type_id, s.amount,
                      s.amount + coalesce(sum(e.amount) FILTER (WHERE e.type LIKE '%DEDUCTION'), 0) AS remaining,
                      s.starting_at <= $as_of AND $as_of < s.ending_before AS active
               FROM commit_segments s
               LEFT JOIN balance_ledger_entries e ON e.segment_id = s.segment_id AND e.timestamp <= $as_of
                 AND NOT ($finalized_only AND e.invoice_id IN (SELECT invoice_id FROM invoices WHERE status = 'DRAFT'))
               WHERE s.customer_id = $customer
               GROUP BY s.commit_or_credit_id, s.kind, s.segment_id, s.starting_at, s.ending_before,
                        s.credit_type_id, s.amount
               ORDER BY s.starting_at, s.segment_id""",
            {"customer": customer_id, "as_of": as_of, "finalized_only": finalized_only},
        )

    def customer_ledger(self, customer_id: str, as_of: datetime) -> pl.DataFrame:
        """A customer's ledger entries up to `as_of`, per segment in time order (a segment's
        start before what is deducted at the same moment)."""
        return self.frame(
            """SELECT commit_or_credit_id, kind, segment_id, type, amount, invoice_id, contract_id, timestamp
               FROM balance_ledger_entries
               WHERE customer_id = $customer AND timestamp <= $as_of
               ORDER BY commit_or_credit_id, timestamp, amount DESC, entry_id""",
            {"customer": customer_id, "as_of": as_of},
        )

    def apply_commits(self, run_id: int, applications: pl.DataFrame) -> None:
        """Applied lines on the invoices and deductions in the ledger, for each application."""
        if not applications.height:
            return
        self.replace("_applications", applications)
        self.con.execute(balances.APPLIED_LINES, {"run_id": run_id})
        self.con.execute(balances.DEDUCTIONS, {"run_id": run_id})
