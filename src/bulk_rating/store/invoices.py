"""Invoices as the API and the page read them: a customer's, by id, and their breakdowns."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bulk_rating import lazy

if TYPE_CHECKING:
    import polars as pl
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")

from bulk_rating.store.base import _WINDOW_SIZES, StoreBase


class InvoiceQueries(StoreBase):
    def generated_invoices(self) -> pl.DataFrame:
        """The invoices the contracts' schedules made (drafts and finalized)."""
        return self.frame(
            """SELECT invoice_id, contract_id, customer_id, credit_type_id, start_timestamp, end_timestamp, status
               FROM invoices WHERE origin = 'CONTRACT_SCHEDULE'"""
        )

    def invoices_by_id(self, invoice_ids: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        self.temp_table(
            "_shown", pl.DataFrame({"invoice_id": invoice_ids}, schema={"invoice_id": pl.String()})
        )
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               SEMI JOIN _shown USING (invoice_id)"""
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               SEMI JOIN _shown USING (invoice_id) ORDER BY l.invoice_index, l.position"""
        )
        return invoices, lines

    def customer_invoices(
        self,
        customer_id: str,
        *,
        invoice_id: str | None = None,
        status: str | None = None,
        starting_on: datetime | None = None,
        ending_before: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """A customer's invoices (one page, by start and id) and their line items; a read with
        no temporary table, so it runs on a read-only connection."""
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.customer_id = $customer
                 AND ($invoice IS NULL OR i.invoice_id = $invoice)
                 AND ($status IS NULL OR i.status = upper($status))
                 AND ($starting_on IS NULL OR i.start_timestamp >= $starting_on)
                 AND ($ending_before IS NULL OR i.end_timestamp <= $ending_before)
               ORDER BY i.start_timestamp, i.invoice_id LIMIT $limit OFFSET $offset""",
            {
                "customer": customer_id,
                "invoice": invoice_id,
                "status": status,
                "starting_on": starting_on,
                "ending_before": ending_before,
                "limit": limit,
                "offset": offset,
            },
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               WHERE list_contains($ids, l.invoice_id) ORDER BY l.invoice_index, l.position""",
            {"ids": invoices["invoice_id"].to_list()},
        )
        return invoices, lines

    def breakdown_windows(
        self,
        customer_id: str,
        *,
        starting_on: datetime,
        ending_before: datetime,
        window_size: str,
        status: str | None = None,
        credit_type_id: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> pl.DataFrame:
        """One page of a customer's invoice windows: every UTC hour or day (`window_size`) of each
        invoice's period, clipped to the period, wholly inside [starting_on, ending_before); by
        issue date, invoice and window."""
        unit, step = _WINDOW_SIZES[window_size]
        order = " DESC" if descending else ""
        return self.frame(
            f"""WITH shown AS (
                    SELECT invoice_id, issued_at, start_timestamp, end_timestamp FROM invoices
                    WHERE customer_id = $customer
                      AND ($status IS NULL OR status = upper($status))
                      AND ($credit_type IS NULL OR credit_type_id = $credit_type)
                      AND start_timestamp < $ending_before AND $starting_on < end_timestamp
                ),
                windows AS (
                    SELECT *, unnest(generate_series(
                        date_trunc('{unit}', greatest(start_timestamp, $starting_on)),
                        least(end_timestamp, $ending_before) - INTERVAL 1 MICROSECOND, {step}
                    )) AS window_start
                    FROM shown
                )
                SELECT invoice_id, window_start,
                       greatest(window_start, start_timestamp) AS breakdown_start,
                       least(window_start + {step}, end_timestamp) AS breakdown_end
                FROM windows
                WHERE greatest(window_start, start_timestamp) >= $starting_on
                  AND least(window_start + {step}, end_timestamp) <= $ending_before
                ORDER BY issued_at{order}, start_timestamp{order}, invoice_id{order}, window_start{order}
                LIMIT $limit OFFSET $offset""",
            {
                "customer": customer_id,
                "status": status,
                "credit_type": credit_type_id,
                "starting_on": starting_on,
                "ending_before": ending_before,
                "limit": limit,
                "offset": offset,
            },
        )

    def breakdown_amounts(
        self, invoice_ids: list[str], window_size: str, first: datetime, last: datetime
    ) -> pl.DataFrame:
        """Each line's quantity and exact total per UTC hour or day window from `first` to `last`
        (window starts). A breakdown row counts in the window holding its last instant: hours
        roll up into their day, a day's usage falls in its last hour; a line without breakdown
        rows (a plain quantity, an applied commit or credit) falls whole in the window holding
        its end, where the ledger dates a deduction."""
        unit, step = _WINDOW_SIZES[window_size]
        # by the day, the daily rollups: a window (aligned, never wider than a day) lies in the
        # UTC day it starts in, which holds its last instant too
        windows = "breakdowns_daily" if window_size == "DAY" else "invoice_breakdowns"
        return self.frame(
            f"""WITH pieces AS (
                    SELECT invoice_id, line_item_id,
                           date_trunc('{unit}', window_end - INTERVAL 1 MICROSECOND) AS window_start,
                           quantity, amount AS total
                    FROM {windows}
                    WHERE list_contains($ids, invoice_id)
                      -- no breakdown row is wider than a day: rows far from the page are skipped
                      AND window_start > $first - INTERVAL 1 DAY AND window_start < $last + {step}
                    UNION ALL
                    SELECT invoice_id, line_item_id,
                           date_trunc('{unit}', ending_before - INTERVAL 1 MICROSECOND) AS window_start,
                           quantity, total
                    FROM invoice_line_items
                    WHERE list_contains($ids, invoice_id) AND coalesce(granularity, 'NONE') NOT IN ('HOUR', 'DAY')
                )
                SELECT invoice_id, line_item_id, window_start, sum(quantity) AS quantity, sum(total) AS total
                FROM pieces WHERE window_start BETWEEN $first AND $last
                GROUP BY ALL""",
            {"ids": invoice_ids, "first": first, "last": last},
        )

    def customer_invoices_by_id(
        self, customer_id: str, invoice_ids: list[str]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Some invoices of a customer and their line items (no temporary table: read-only)."""
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.customer_id = $customer AND list_contains($ids, i.invoice_id)""",
            {"customer": customer_id, "ids": invoice_ids},
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               WHERE list_contains($ids, l.invoice_id) ORDER BY l.invoice_index, l.position""",
            {"ids": invoices["invoice_id"].to_list()},
        )
        return invoices, lines
