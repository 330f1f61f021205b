"""The run report: what a run did, as a dict for `--json` and rows for the terminal.

Invoices are rendered in Metronome's `Invoice` shape (and their hourly or daily breakdowns),
contracts in its v1 `Contract` shape, commits and credits in its `Commit` and `Credit` shapes.
Numbers are Decimal throughout; the CLI and the API write them as exact JSON number text (never
through a float).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from bulk_rating import balances, frames, schedule
from bulk_rating.errors import ISSUE_CODES, BulkRatingError, ExitCode
from bulk_rating.models import Commit, Contract, Credit, InvoiceScheduleItem, Override
from bulk_rating.money import format_decimal


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def number(value: Decimal | None) -> Decimal | None:
    """Exact, without trailing zeros or exponent: 1500.00 -> 1500, 0.5000 -> 0.5."""
    return None if value is None else Decimal(format_decimal(value))


def _json_object(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def _application(line: dict[str, Any]) -> dict[str, Any]:
    """The commit or credit fields of an applied line (METRONOME.md rule 15)."""
    kind = line["commit_kind"]
    return {
        "applied_commit_or_credit": {"id": line["commit_or_credit_id"], "type": kind},
        "commit_id": line["commit_or_credit_id"],
        "commit_segment_id": line["commit_segment_id"],
        "commit_type": "PostpaidCommit" if kind == "POSTPAID" else "PrepaidCommit",
    }


def line_document(line: dict[str, Any]) -> dict[str, Any]:
    tier = None
    if line["tier_level"] is not None:
        size = line["tier_size"]
        tier = {
            "level": line["tier_level"],
            "starting_at": format_decimal(line["tier_starting_at"]),
            "size": None if size is None else format_decimal(size),
        }
    return {
        "type": line["type"],
        "name": line["name"],
        "product_id": line["product_id"],
        "credit_type": {"id": line["credit_type_id"], "name": line["credit_type_name"]},
        "quantity": number(line["quantity"]),
        "unit_price": number(line["unit_price"]),
        "total": number(line["total"]),
        "starting_at": timestamp(line["starting_at"]),
        "ending_before": timestamp(line["ending_before"]),
        "tier": tier,
        "pricing_group_values": _json_object(line["pricing_group_values"]),
        "presentation_group_values": _json_object(line["presentation_group_values"]),
        **(_application(line) if line.get("commit_kind") else {}),
    }


def invoice_document(invoice: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": invoice["invoice_id"],
        "customer_id": invoice["customer_id"],
        "contract_id": invoice["contract_id"],
        "credit_type": {"id": invoice["credit_type_id"], "name": invoice["credit_type_name"]},
        "start_timestamp": timestamp(invoice["start_timestamp"]),
        "end_timestamp": timestamp(invoice["end_timestamp"]),
        "issued_at": timestamp(invoice["issued_at"]),
        "status": invoice["status"],
        "type": invoice["type"],
        "origin": invoice["origin"],
        "total": number(invoice["total"]),
        "subtotal": number(invoice["subtotal"]),
        "billable_status": invoice["billable_status"],
        "custom_fields": _json_object(invoice["custom_fields"]) or {},
        "external_invoice": None,
        "line_items": [line_document(line) for line in lines],
    }


def breakdown_document(
    invoice: dict[str, Any],
    lines: list[dict[str, Any]],
    amounts: dict[str, tuple[Decimal | None, Decimal]],
    start: datetime,
    end: datetime,
    *,
    skip_zero_quantity: bool = False,
) -> dict[str, Any]:
    """An Invoice restricted to the window [start, end) (Metronome's list_breakdowns item):
    `amounts` holds each line's quantity and total in the window. A usage line whose period
    overlaps the window is shown (quantity 0 when none of its usage falls there, unless
    `skip_zero_quantity`); an applied commit or credit only in the window its amount falls in.
    Totals are the window's: usage and applications, postpaid ones aside (as on the invoice)."""
    shown = []
    for line in lines:
        quantity, total = amounts.get(line["line_item_id"], (None, None))
        if line["type"] == "usage":
            if not (line["starting_at"] < end and start < line["ending_before"]):
                continue
            quantity = Decimal(0) if quantity is None else quantity
            total = Decimal(0) if total is None else total
            if skip_zero_quantity and quantity == 0:
                continue
        elif total is None:
            continue
        shown.append(
            {
                **line,
                "quantity": quantity,
                "total": total,
                "starting_at": max(line["starting_at"], start),
                "ending_before": min(line["ending_before"], end),
            }
        )
    window = {
        **invoice,
        "total": sum(
            (ln["total"] for ln in shown if ln.get("commit_kind") != "POSTPAID"), Decimal(0)
        ),
        "subtotal": sum((ln["total"] for ln in shown if ln["type"] == "usage"), Decimal(0)),
    }
    return {
        **invoice_document(window, shown),
        "breakdown_start_timestamp": timestamp(start),
        "breakdown_end_timestamp": timestamp(end),
    }


# --- contracts, commits and credits (Metronome's v1 Contract, Commit and Credit) -------------

CREATED_BY = "bulk-rating"
LEDGER_FIELDS = {  # what each entry type carries beside type, amount and timestamp
    "START": ("segment_id",),
    "INITIAL_BALANCE": (),
    "DEDUCTION": ("invoice_id", "segment_id", "contract_id"),
}


def _ledger_entry(entry: dict[str, Any]) -> dict[str, Any]:
    kind = next(k for k in LEDGER_FIELDS if entry["type"].endswith(k))
    return {
        "type": entry["type"],
        "amount": number(entry["amount"]),
        "timestamp": timestamp(entry["timestamp"]),
        **{name: entry[name] for name in LEDGER_FIELDS[kind]},
    }


def _credit_type(credit_type_id: str, names: dict[str, str]) -> dict[str, str]:
    return {"id": credit_type_id, "name": names.get(credit_type_id, credit_type_id)}


def commit_document(
    contract: Contract,
    kind: str,
    item_id: str,
    item: Commit | Credit,
    *,
    created_at: datetime,
    products: dict[str, str],
    credit_types: dict[str, str],
    balance: Decimal | None = None,
    ledger: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A commit or credit as Metronome's Commit or Credit: its access schedule (segment ids as
    stored), invoice schedule, and, when given, its balance and ledger."""
    access = item.access_schedule
    document: dict[str, Any] = {
        "id": item_id,
        "type": kind,
        "created_at": timestamp(created_at),
        "product": {"id": item.product_id, "name": products.get(item.product_id, item.product_id)},
        "contract": {"id": contract.id},
        "name": balances.display_name(kind, item),
        "description": item.description,
        "priority": number(item.priority),
        "applicable_product_ids": item.applicable_product_ids,
        "applicable_product_tags": item.applicable_product_tags,
        "custom_fields": item.custom_fields,
        "access_schedule": {
            "credit_type": _credit_type(access.credit_type_id, credit_types),
            "access_type": access.access_type,
            "schedule_items": [
                {
                    "id": balances.segment_id(item_id, k, segment.id),
                    "amount": number(segment.amount),
                    "starting_at": timestamp(segment.starting_at),
                    "ending_before": timestamp(segment.ending_before),
                }
                for k, segment in enumerate(access.schedule_items)
            ],
        },
    }
    if isinstance(item, Commit) and item.invoice_schedule is not None:
        schedule = item.invoice_schedule
        document["invoice_schedule"] = {
            "credit_type": _credit_type(schedule.credit_type_id, credit_types),
            "do_not_invoice": schedule.do_not_invoice,
            "schedule_items": [
                _charge(item_id, k, charge) for k, charge in enumerate(schedule.schedule_items)
            ],
        }
    if balance is not None:
        document["balance"] = number(balance)
    if ledger is not None:
        document["ledger"] = [_ledger_entry(entry) for entry in ledger]
    return document


def _charge(item_id: str, position: int, charge: InvoiceScheduleItem) -> dict[str, Any]:
    """An invoice schedule item: `amount` alone is a quantity of 1 at that price (Metronome)."""
    if charge.amount is not None:
        unit_price, quantity, amount = charge.amount, Decimal(1), charge.amount
    else:
        unit_price, quantity = charge.unit_price or Decimal(0), charge.quantity or Decimal(0)
        amount = unit_price * quantity
    return {
        "id": charge.id or balances.stable_id(f"{item_id}|invoice|{position}"),
        "amount": number(amount),
        "quantity": number(quantity),
        "unit_price": number(unit_price),
        "timestamp": timestamp(charge.timestamp),
    }


def _override_document(
    contract: Contract,
    position: int,
    override: Override,
    created_at: datetime,
    products: dict[str, str],
    credit_types: dict[str, str],
) -> dict[str, Any]:
    rate = override.overwrite_rate
    return {
        "id": balances.stable_id(f"{contract.id}|override|{position}"),
        "created_at": timestamp(created_at),
        "starting_at": timestamp(override.starting_at),
        "ending_before": timestamp(override.ending_before),
        "type": override.type,
        "product": None
        if override.product_id is None
        else {
            "id": override.product_id,
            "name": products.get(override.product_id, override.product_id),
        },
        "applicable_product_tags": override.applicable_product_tags,
        "entitled": override.entitled,
        "multiplier": number(override.multiplier),
        "priority": number(override.priority),
        "overwrite_rate": None
        if rate is None
        else {
            "rate_type": rate.rate_type,
            "price": number(rate.price),
            "tiers": None
            if rate.tiers is None
            else [{"price": number(t.price), "size": number(t.size)} for t in rate.tiers],
            "credit_type": None
            if rate.credit_type_id is None
            else _credit_type(rate.credit_type_id, credit_types),
        },
        "override_tiers": None
        if override.tiers is None
        else [{"multiplier": number(t.multiplier), "size": number(t.size)} for t in override.tiers],
    }


def contract_document(
    contract: Contract,
    *,
    created_at: datetime,
    commits: list[dict[str, Any]],
    products: dict[str, str],
    credit_types: dict[str, str],
) -> dict[str, Any]:
    """A contract as Metronome's v1 Contract: never amended, so `initial` and `current` are the
    same state and `amendments` is empty. `commits`: its commits and credits as documents."""
    state = {
        "starting_at": timestamp(contract.starting_at),
        "ending_before": timestamp(contract.ending_before),
        "name": contract.name,
        "rate_card_id": contract.rate_card_id,
        "net_payment_terms_days": number(contract.net_payment_terms_days),
        "usage_statement_schedule": {
            "frequency": contract.usage_statement_schedule.frequency,
            "billing_anchor_date": timestamp(schedule.billing_anchor(contract)),
        },
        "commits": [c for c in commits if c["type"] != "CREDIT"],
        "credits": [c for c in commits if c["type"] == "CREDIT"],
        "overrides": [
            _override_document(contract, n, o, created_at, products, credit_types)
            for n, o in enumerate(contract.overrides)
        ],
        "scheduled_charges": [],
        "transitions": [],
        "created_at": timestamp(created_at),
        "created_by": CREATED_BY,
    }
    return {
        "id": contract.id,
        "customer_id": contract.customer_id,
        "initial": state,
        "current": state,
        "amendments": [],
        "custom_fields": contract.custom_fields,
        "uniqueness_key": contract.uniqueness_key,
    }


DOCUMENTS_PER_CHUNK = 500


def _batches(path: Path, origin: str, size: int) -> Iterator[pl.DataFrame]:
    """The rows of one origin of a file Store.export_run_rows wrote, in order, `size` at a time.
    Read through pyarrow, as DuckDB hands frames over: a JSON column is text here as there
    (polars' own reader makes it binary)."""
    import pyarrow.parquet as pq  # numpy with it, when installed: only for a whole run's report

    for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
        rows = _frame(batch).filter(pl.col("origin") == origin)
        if rows.height:
            yield rows


def _whole(path: Path) -> pl.DataFrame:
    """A whole file Store.export_run_rows wrote (read as _batches reads it)."""
    import pyarrow.parquet as pq

    return _frame(pq.read_table(path))


def _frame(arrow: Any) -> pl.DataFrame:
    rows = pl.from_arrow(arrow)
    assert isinstance(rows, pl.DataFrame)
    return rows


def _file_pages(
    invoice_file: Path, line_file: Path, origin: str, page: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Pages of `page` invoices and their line items from the two files, read side by side once:
    both are in the invoices' order (`n` within an origin), so a page's lines are the next ones."""
    lines = _batches(line_file, origin, page * 16)
    held: pl.DataFrame | None = None
    for batch in _batches(invoice_file, origin, page * 16):
        for invoices in batch.iter_slices(page):
            last = invoices["n"].max()
            shown = []
            while True:
                held = held if held is not None else next(lines, None)
                if held is None:
                    break
                shown.append(held.filter(pl.col("n") <= last))
                if held["n"].max() > last:  # type: ignore[operator]
                    held = held.filter(pl.col("n") > last)
                    break
                held = None
            yield invoices, pl.concat(shown) if shown else pl.DataFrame()


@dataclass
class RunReport:
    status: str  # imported | previewed | already_imported | rejected
    preview: bool
    inputs: list[str]
    input_hash: str | None = None
    as_of: datetime | None = None
    run_id: int | None = None
    # The run's invoices and their lines as the store gave them (compact columns); documents are
    # built from them one at a time, so a large run's JSON never sits in memory as dicts.
    invoice_rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    line_rows: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Or, when every invoice was asked for, the same rows in two Parquet files (invoices, line
    # items: Store.export_run_rows), read a page at a time: neither is ever held whole.
    row_files: tuple[Path, Path] | None = None
    contracts_created: int = 0
    issues: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.ISSUES))
    stage_seconds: dict[str, float] = field(default_factory=dict)
    previous_run_id: int | None = None
    # How an already imported run was known: `files` (the same files, by their bytes: no row
    # read) or `content` (the same catalog, contracts and rows or invoices, however written).
    matched_by: str | None = None
    rows_read: int = 0
    # Exact duplicate rows collapsed (priced once), one row per dropped copy, like issues (past
    # validate.ROWS_LISTED_PER_RULE of them, one line counts the rest).
    notices: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.ISSUES))
    # From the store, whatever `invoices` holds: invoices, line_items, windows, drafts.
    counts: dict[str, int] = field(default_factory=dict)
    totals: list[dict[str, Any]] = field(default_factory=list)
    # what went wrong beside a run that stands (an errors file that could not be written)
    warnings: list[str] = field(default_factory=list)

    @property
    def duplicates_collapsed(self) -> int:
        """Every collapsed copy, listed or counted."""
        return frames.rows_counted(self.notices)

    def rows_rejected(self) -> int:
        """Rows with at least one problem: every row read, when the run was rejected as a whole."""
        return self.rows_read - self.duplicates_collapsed if self.status == "rejected" else 0

    def already_imported(self, run_id: int, matched_by: str) -> RunReport:
        self.status, self.previous_run_id, self.matched_by = "already_imported", run_id, matched_by
        return self

    def reject(self, issues: pl.DataFrame) -> RunReport:
        unknown = set(issues["code"]) - set(ISSUE_CODES)
        if unknown:  # a program bug: every code must be documented
            raise BulkRatingError(f"undocumented issue codes {sorted(unknown)}")
        self.status, self.issues = "rejected", issues
        return self

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "failed":  # an internal error, reported for one entry of a batch
            return ExitCode.INTERNAL
        return ExitCode.DATA_PROBLEMS if self.status == "rejected" else ExitCode.OK

    def summary(self) -> dict[str, Any]:
        seconds = {k: round(v, 6) for k, v in self.stage_seconds.items()}
        return {
            "status": self.status,
            "preview": self.preview,
            "run_id": self.run_id,
            "previous_run_id": self.previous_run_id,
            "matched_by": self.matched_by,
            "inputs": self.inputs,
            "input_hash": self.input_hash,
            "as_of": timestamp(self.as_of),
            # Nothing lost: rows read = rows priced + duplicates collapsed + rows rejected.
            "rows_read": self.rows_read,
            "rows_priced": self.rows_read - self.duplicates_collapsed
            if self.status in ("imported", "previewed")
            else 0,
            "duplicates_collapsed": self.duplicates_collapsed,
            "rows_rejected": self.rows_rejected(),
            **self.counts,
            "contracts_created": self.contracts_created,
            "totals": [{**t, "total": number(t["total"])} for t in self.totals],
            "issues": frames.rows_counted(self.issues),
            "stage_seconds": seconds,
            "rows_per_second": {
                stage: round(self.rows_read / s)
                for stage, s in self.stage_seconds.items()
                if stage in ("validate", "rate") and s > 0 and self.rows_read
            },
        }

    def documents(
        self, origin: str = "HISTORICAL_IMPORT", page: int = DOCUMENTS_PER_CHUNK
    ) -> Iterator[dict[str, Any]]:
        """The run's invoices of one origin in Metronome's Invoice shape, in input order; built
        `page` at a time, so a large run's document never sits in memory as dicts."""
        for chunk, shown in self._pages(origin, page):
            lines: dict[str, list[dict[str, Any]]] = {}
            for line in shown.to_dicts():
                lines.setdefault(line["invoice_id"], []).append(line)
            for invoice in chunk.to_dicts():
                yield invoice_document(invoice, lines.get(invoice["invoice_id"], []))

    def _pages(self, origin: str, page: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """The run's invoices of one origin, `page` at a time, each page with the line items of
        its invoices."""
        if self.row_files is not None:
            yield from _file_pages(*self.row_files, origin, page)
            return
        if not self.invoice_rows.height:
            return
        invoices = self.invoice_rows.filter(pl.col("origin") == origin)
        for chunk in invoices.iter_slices(page):
            yield (
                chunk,
                self.line_rows.filter(pl.col("invoice_id").is_in(chunk["invoice_id"].implode())),
            )

    def all_rows(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Every invoice row and line item row of the report, whole (read from its files when
        it has them)."""
        if self.row_files is None:
            return self.invoice_rows, self.line_rows
        invoices, lines = (_whole(path) for path in self.row_files)
        return invoices, lines.drop("origin", "n")  # the columns run_line_items gives

    @property
    def invoices(self) -> list[dict[str, Any]]:
        return list(self.documents())

    @property
    def drafts(self) -> list[dict[str, Any]]:
        return list(self.documents("CONTRACT_SCHEDULE"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.invoices,
            "drafts": self.drafts,
            "summary": self.summary(),
            "issues": self.issues.to_dicts(),
            "notices": self.notices.to_dicts(),
        }
