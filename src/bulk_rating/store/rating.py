"""The rating kernel's statements (kernel.py calls them inside a run's transaction): the check's scan, pricing, drafts, totals."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING

import duckdb

from bulk_rating import lazy, resolve
from bulk_rating.errors import (
    AmountOverflowError,
    BulkRatingError,
    ScanError,
)
from bulk_rating.money import MAX_NUMBER, format_decimal
from bulk_rating.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    import polars as pl

    from bulk_rating import rate, validate
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")
    rate = lazy.Module("bulk_rating.rate")
    validate = lazy.Module("bulk_rating.validate")

from bulk_rating.store.base import StoreBase


class RatingStatements(StoreBase):
    def invoice_periods(self) -> pl.DataFrame:
        """Stored invoices that new ones must not overlap (voided ones excepted)."""
        return self.frame(
            """SELECT invoice_id, contract_id, credit_type_id, start_timestamp AS inclusive_start,
                      end_timestamp AS exclusive_end
               FROM invoices WHERE status <> 'VOID'"""
        )

    def insert_drafts(self, drafts: pl.DataFrame, run_id: int) -> None:
        """D8: the contract's own draft invoice of the period containing the as-of date."""
        self.replace("_drafts", drafts)
        self.con.execute(
            """INSERT INTO invoices BY NAME
               SELECT invoice_id(contract_id, credit_type_id, inclusive_start, exclusive_end) AS invoice_id,
                      customer_id, contract_id, credit_type_id, inclusive_start AS start_timestamp,
                      exclusive_end AS end_timestamp, exclusive_end AS issued_at, 'DRAFT' AS status,
                      'USAGE' AS type, 'CONTRACT_SCHEDULE' AS origin, 0 AS total, 0 AS subtotal,
                      'billable' AS billable_status, '{}'::JSON AS custom_fields, $run_id AS run_id
               FROM _drafts""",
            {"run_id": run_id},
        )

    def check_rows(self, sql: str, partitions: int = 1) -> None:
        """Fill `_line_weeks` (validate.line_weeks_sql): the one scan that checks rows, once per
        partition. A failure to read the files is a ScanError (the pipeline then looks for a
        corrupt file)."""
        try:
            self.replace_with("_line_weeks", sql, partitions=partitions)
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error as exc:
            raise ScanError(f"reading the usage rows failed: {exc}") from exc

    def spans_and_rows(self) -> tuple[int, int]:
        """How many spans the checked lines make (rate.LINE_SPANS, all partitions) and how many
        rows outside a DRAFT they price."""
        spans, rows = self.con.execute(rate.SPANS_AND_ROWS).fetchall()[0]
        return int(spans), int(rows)

    def rows_per_day_group(self) -> float | None:
        """How many rows a day holds of each group the check would group by day, on the usage
        table's first day (resolve.FIRST_DAY_ROWS_PER_GROUP); None when they cannot be read (the
        check's scan then says why, naming the file)."""
        try:
            found = self.scalar(resolve.FIRST_DAY_ROWS_PER_GROUP)
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error:
            return None
        return None if found is None else float(found)

    @staticmethod
    def unreadable_parquet(files: Sequence[str]) -> dict[str, str]:
        """The Parquet files DuckDB cannot read whole on their own, with the reason (every
        column of every row is read: a corrupt page anywhere shows)."""
        found = {}
        with StoreBase.scratch() as scratch:
            for file in files:
                try:
                    scratch.con.execute(
                        "SELECT bit_xor(hash(COLUMNS(*))) FROM read_parquet(?)", [file]
                    ).fetchall()
                except duckdb.Error as exc:
                    found[file] = str(exc).splitlines()[0]
        return found

    def price(
        self,
        run_id: int,
        *,
        table: bool,
        rows: str = "usage_rows",
        drafts: bool = False,
        progress: Progress = NULL_PROGRESS,
        partitions: int = 1,
        spans: bool = False,
    ) -> None:
        """Run the pricing kernel over `rows` (the rows `_line_weeks` counted), `_line_weeks`,
        `usage_lines` and `usage_invoices`. A usage table's windows in weeks with a tier edge are
        stored once without a tier and placed from there (reading the table once). With `spans`
        (a usage table whose rows name no invoice periods, not drafts), each partition's rows
        find their items by its lines' spans (rate.LINE_SPANS)."""
        params = {"run_id": run_id}
        keep_edges = table and not drafts  # a batch's ties follow its line order, not stored
        windows = "INSERT INTO _priced_windows " + (
            rate.spanned_windows_sql(rows)
            if spans
            else rate.priced_windows_sql(
                table=table, rows=rows, drafts=drafts, keep_edges=keep_edges
            )
        )
        try:
            self.replace_with("_week_tiers", rate.WEEK_TIERS, {"drafts": drafts})

            def store_windows() -> int:
                stored = 0
                for _ in self.each_partition(partitions):
                    if spans:  # the partition's own: they are held one partition at a time
                        self.con.execute("DELETE FROM _line_spans")
                        self.con.execute("INSERT INTO _line_spans " + rate.LINE_SPANS, params)
                    # spans carry the item keys: only resolving each row reads the run's id
                    found = self.con.execute(windows, None if spans else params).fetchall()
                    stored += found[0][0]
                return stored

            stored = self.tracked(
                "pricing and storing rows",
                progress,
                store_windows,
                rows=self._rows_checked() if progress.active else None,
                partitions=partitions,
            )
            if keep_edges:
                expected = self.scalar(
                    "SELECT coalesce(sum(rows), 0) FROM _line_weeks WHERE NOT draft"
                )
                if stored != expected:  # every row checked is stored once, none twice
                    raise BulkRatingError(
                        f"internal error: {stored} windows priced for {expected} rows checked"
                    )
            self.replace_with(
                "_edge_parts",
                rate.edge_windows_sql(table=table, rows=rows, drafts=drafts, kept=keep_edges),
                params if keep_edges else None,  # kept windows are found by the run's keys
            )
            self.con.execute("INSERT INTO _priced_windows " + rate.EDGE_PARTS_STORED, params)
            self._refuse_large_amounts(drafts)
            items = rate.line_items_sql(drafts=drafts)
            self.tracked(
                "rating invoices",
                progress,
                lambda: self.con.execute(
                    f"INSERT INTO invoice_line_items ({rate.LINE_ITEM_COLUMNS}) " + items, params
                ),
                rows=stored,  # the windows just priced
            )
            if self.scalar(rate.SHARED_ITEM_KEYS, params):
                raise BulkRatingError("internal error: two line items share a breakdown key")
            self.tracked("rolling windows up by day", progress, lambda: self._roll_up_days(run_id))
        except duckdb.OutOfRangeException as exc:
            # Quantities and prices are bounded; only an amount of 10^15 units or more gets here
            # (one the check above, in doubles, missed by a rounding).
            raise AmountOverflowError(
                f"an amount or total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc

    def _roll_up_days(self, run_id: int) -> None:
        """The daily rollups of the line items just priced, from their windows (read within the
        items' periods only: on a store of other periods, most of its windows are skipped)."""
        first, last = self.con.execute(
            f"SELECT min(starting_at), max(ending_before) FROM ({rate.PRICED_ITEMS})",
            {"run_id": run_id},
        ).fetchall()[0]
        if first is None:  # no line by the hour or day
            return
        self.con.execute(
            "INSERT INTO _priced_days " + rate.priced_days_sql(rate.PRICED_ITEMS, bounded=True),
            {"run_id": run_id, "from": first, "until": last},
        )

    def _refuse_large_amounts(self, drafts: bool) -> None:
        """An AmountOverflowError naming the line items whose amount would be 10^15 units or
        more: found in doubles (with a margin), then checked exactly."""
        candidates = self.con.execute(
            rate.large_amounts_sql(drafts=drafts, at_least=float(MAX_NUMBER) * 0.999)
        ).fetchall()
        rows = []
        with localcontext() as exact:
            exact.prec = 100  # quantity x price, every digit
            for source, invoice_index, line_index, quantity, price in candidates:
                amount = Decimal(quantity) * Decimal(price)
                if abs(amount) >= MAX_NUMBER:
                    rows.append(
                        {
                            "source": source,
                            "invoice_index": invoice_index,
                            "line_index": line_index,
                            "message": f"invoice {invoice_index}, line {line_index}: the amount"
                            f" {format_decimal(quantity)} x {format_decimal(price)} ="
                            f" {format_decimal(amount)} units is 10^15 or more, more than an"
                            " invoice can hold",
                        }
                    )
        if rows:
            raise AmountOverflowError(f"{len(rows)} amounts reach 10^15 units", rows=rows)

    def keep_draft_usage(self, run_id: int, rows: str = "usage_rows", partitions: int = 1) -> None:
        """The run's rows that fall in a DRAFT period join those kept before (validated already;
        `rows`: with exact duplicates collapsed when there were some; a row kept before is not
        kept again)."""
        for _ in self.each_partition(partitions):
            self._keep_draft_usage(run_id, rows)

    def _keep_draft_usage(self, run_id: int, rows: str) -> None:
        self.con.execute(
            f"""INSERT INTO _draft_usage BY NAME
                SELECT * EXCLUDE (quantity_raw, file_index, pricing_key, presentation_key), quantity_raw::VARCHAR AS quantity_raw,
                       $run AS run_id
                FROM {rows} u
                SEMI JOIN _draft_periods dp
                  ON dp.contract_id = u.contract_id AND dp.inclusive_start <= u.inclusive_start
                 AND u.inclusive_start < dp.exclusive_end
                ANTI JOIN _draft_usage k ON {validate.same_row("u", "k")}""",
            {"run": run_id},
        )

    def clear_drafts(self, run_id: int) -> list[str]:
        """Forget what the drafts this run kept new usage of were rated at: they are rated again,
        whole (a draft given nothing new is left as it was)."""
        ids = [
            i
            for (i,) in self.con.execute(
                """SELECT DISTINCT invoice_id(u.contract_id, i.credit_type_id, dp.inclusive_start, dp.exclusive_end)
                   FROM _draft_usage u
                   JOIN _draft_periods dp ON dp.contract_id = u.contract_id
                    AND dp.inclusive_start <= u.inclusive_start AND u.inclusive_start < dp.exclusive_end
                   JOIN invoices i ON i.contract_id = u.contract_id AND i.status = 'DRAFT'
                    AND i.start_timestamp = dp.inclusive_start
                   WHERE u.run_id = $run""",
                {"run": run_id},
            ).fetchall()
        ]
        self.replace(
            "_shown", pl.DataFrame({"invoice_id": ids}, schema={"invoice_id": pl.String()})
        )
        self.drop_draft_facts()
        return ids

    def drop_draft_facts(self) -> None:
        """The windows, rollups, line items and deductions of the drafts in `_shown`."""
        for facts in ("_priced_windows", "_priced_days"):
            self.con.execute(
                f"""DELETE FROM {facts} WHERE item_key IN (
                       SELECT item_key FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown))"""
            )
        self.con.execute(
            "DELETE FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown)"
        )
        self.con.execute(
            """DELETE FROM balance_ledger_entries
               WHERE invoice_id IN (SELECT invoice_id FROM _shown) AND type LIKE '%DEDUCTION'"""
        )

    def total_drafts(self, run_id: int) -> None:
        """A rated draft's totals from its lines; it now belongs to this run."""
        try:
            self.con.execute(
                """UPDATE invoices SET run_id = $run_id, total = t.total, subtotal = t.subtotal
                   FROM (
                       SELECT invoice_id,
                              coalesce(sum(total) FILTER (WHERE commit_kind IS DISTINCT FROM 'POSTPAID'), 0) AS total,
                              coalesce(sum(total) FILTER (WHERE type = 'usage'), 0) AS subtotal
                       FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown) GROUP BY ALL
                   ) t
                   WHERE invoices.invoice_id = t.invoice_id""",
                {"run_id": run_id},
            )
        except duckdb.OutOfRangeException as exc:
            raise AmountOverflowError(
                f"a draft's total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc

    def total_invoices(self, run_id: int) -> None:
        """The run's invoices, their totals from their lines (postpaid applications aside). An
        invoice whose lines sum to 10^15 units or more is an AmountOverflowError naming it."""
        large = self.con.execute(
            rate.LARGE_SUBTOTALS, {"run_id": run_id, "limit": int(MAX_NUMBER)}
        ).fetchall()
        if large:
            raise AmountOverflowError(
                f"{len(large)} invoice totals reach 10^15 units",
                rows=[
                    {
                        "source": source,
                        "invoice_index": index,
                        "message": f"invoice {index}: its lines add up to at least {units:,} units;"
                        " an invoice total must stay below 10^15",
                    }
                    for source, index, units in large
                ],
            )
        try:
            self.con.execute("INSERT INTO invoices " + rate.INVOICES, {"run_id": run_id})
        except duckdb.OutOfRangeException as exc:
            raise AmountOverflowError(
                f"an invoice total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc
