"""The contract's own schedule: closing periods and the billing providers' outbox."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bulk_rating import lazy

if TYPE_CHECKING:
    import polars as pl
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")

from bulk_rating.store.base import StoreBase


class OutboxQueries(StoreBase):
    def close_periods(self, as_of: datetime, new_invoices: pl.DataFrame, run_id: int) -> int:
        """Finalize every draft whose period has ended, add the given generated invoices, and
        queue every newly finalized one for its contract's billing provider (DML only)."""
        self.replace("_drafts", new_invoices)
        self.con.execute(
            """INSERT INTO invoices BY NAME
               SELECT invoice_id(d.contract_id, d.credit_type_id, d.inclusive_start, d.exclusive_end) AS invoice_id,
                      d.customer_id, d.contract_id, d.credit_type_id, d.inclusive_start AS start_timestamp,
                      d.exclusive_end AS end_timestamp, d.exclusive_end AS issued_at, 'DRAFT' AS status,
                      'USAGE' AS type, 'CONTRACT_SCHEDULE' AS origin, 0 AS total, 0 AS subtotal,
                      'billable' AS billable_status, '{}'::JSON AS custom_fields, $run AS run_id
               FROM _drafts d""",
            {"run": run_id},
        )
        closing = self.frame(
            """SELECT invoice_id FROM invoices
               WHERE origin = 'CONTRACT_SCHEDULE' AND status = 'DRAFT' AND end_timestamp <= $as_of""",
            {"as_of": as_of},
        )
        self.con.execute(
            """UPDATE invoices SET status = 'FINALIZED'
               WHERE origin = 'CONTRACT_SCHEDULE' AND status = 'DRAFT' AND end_timestamp <= $as_of""",
            {"as_of": as_of},
        )
        self.con.execute(
            """INSERT INTO provider_outbox
               SELECT i.invoice_id, i.contract_id, c.billing_provider, c.delivery_method,
                      stable_id('provider|' || i.invoice_id), 'QUEUED', $as_of, NULL
               FROM invoices i JOIN contracts c USING (contract_id)
               WHERE i.origin = 'CONTRACT_SCHEDULE' AND i.status = 'FINALIZED' AND c.billing_provider IS NOT NULL
                 AND i.invoice_id NOT IN (SELECT invoice_id FROM provider_outbox)""",
            {"as_of": as_of},
        )
        return closing.height

    def billing_providers(self) -> list[str]:
        """The billing providers the stored contracts name."""
        return [
            name
            for (name,) in self.con.execute(
                "SELECT DISTINCT billing_provider FROM contracts"
                " WHERE billing_provider IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]

    def queued_for(self, provider: str) -> pl.DataFrame:
        return self.frame(
            """SELECT o.invoice_id, o.idempotency_key FROM provider_outbox o
               JOIN invoices i USING (invoice_id)
               WHERE o.billing_provider = $provider AND o.status = 'QUEUED' AND i.origin = 'CONTRACT_SCHEDULE'
               ORDER BY i.start_timestamp, o.invoice_id""",
            {"provider": provider},
        )

    def mark_exported(self, invoice_ids: list[str], at: datetime) -> None:
        self.replace(
            "_shown", pl.DataFrame({"invoice_id": invoice_ids}, schema={"invoice_id": pl.String()})
        )
        self.con.execute(
            """UPDATE provider_outbox SET status = 'EXPORTED', exported_at = $at
               WHERE invoice_id IN (SELECT invoice_id FROM _shown)""",
            {"at": at},
        )
