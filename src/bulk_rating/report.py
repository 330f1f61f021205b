"""The run report: what a run did, as a dict for `--json` and rows for the terminal.

Invoices are rendered in Metronome's `Invoice` shape. Numbers are Decimal throughout; the CLI
writes them as exact JSON number text (never through a float).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating import frames
from bulk_rating.errors import ISSUE_CODES, BulkRatingError, ExitCode
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


DOCUMENTS_PER_CHUNK = 500


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
    contracts_created: int = 0
    issues: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.ISSUES))
    stage_seconds: dict[str, float] = field(default_factory=dict)
    previous_run_id: int | None = None
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

    def documents(self, origin: str = "HISTORICAL_IMPORT") -> Iterator[dict[str, Any]]:
        """The run's invoices of one origin in Metronome's Invoice shape, in input order; built a
        few hundred at a time, so a large run's document never sits in memory as dicts."""
        if not self.invoice_rows.height:
            return
        invoices = self.invoice_rows.filter(pl.col("origin") == origin)
        for chunk in invoices.iter_slices(DOCUMENTS_PER_CHUNK):
            lines: dict[str, list[dict[str, Any]]] = {}
            shown = self.line_rows.filter(pl.col("invoice_id").is_in(chunk["invoice_id"].implode()))
            for line in shown.to_dicts():
                lines.setdefault(line["invoice_id"], []).append(line)
            for invoice in chunk.to_dicts():
                yield invoice_document(invoice, lines.get(invoice["invoice_id"], []))

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
