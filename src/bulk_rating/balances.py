"""Commits and credits: their segments, and history drawing them down in Metronome's order.

Pure functions: contract models -> segment rows and their start entries; eligible amounts (which
usage of which line falls in which segment, computed in SQL by `store`) -> applications.

Order (METRONOME.md 5.2, rule 13): prepaid commits and credits before postpaid commits; then
priority ascending (none last); zero cost basis first (credits, and prepaid commits without an
invoice schedule); fewest applicable products; earliest ending_before; earliest starting_at;
then the id, so that equal keys still give one answer. Lines are covered in order: earlier
starting_at, higher unit price, name. A segment never goes below zero; what it cannot cover
stays billed. A prepaid or credit application lowers the invoice total; a postpaid one does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating.models import Commit, Contract, Credit, Product

NO_PRIORITY = Decimal("Infinity")
START_TYPES = {
    "PREPAID": "PREPAID_COMMIT_SEGMENT_START",
    "POSTPAID": "POSTPAID_COMMIT_INITIAL_BALANCE",
    "CREDIT": "CREDIT_SEGMENT_START",
}
DEDUCTION_TYPES = {
    "PREPAID": "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION",
    "POSTPAID": "POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION",
    "CREDIT": "CREDIT_AUTOMATED_INVOICE_DEDUCTION",
}


def stable_id(key: str) -> str:
    """The same UUID-shaped id the store's `stable_id` macro gives for `key`."""
    h = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _applicable_products(item: Commit | Credit, products: dict[str, Product]) -> int:
    """How many products it applies to (the 'fewest applicable products' key)."""
    if item.applicable_product_ids is None and item.applicable_product_tags is None:
        return len(products)
    ids = set(item.applicable_product_ids or [])
    tags = set(item.applicable_product_tags or [])
    return sum(1 for p in products.values() if p.id in ids or tags & set(p.tags))


def commits_and_credits(contract: Contract) -> list[tuple[str, str, Commit | Credit]]:
    """The contract's commits, then its credits: (kind, id, the item), each id as given or
    derived from the contract and the position (the ids `commit_segments` holds)."""
    items: list[tuple[str, int, Commit | Credit]] = [
        *(("commit", n, c) for n, c in enumerate(contract.commits)),
        *(("credit", n, c) for n, c in enumerate(contract.credits)),
    ]
    return [
        (
            item.type if isinstance(item, Commit) else "CREDIT",
            item.id or stable_id(f"{contract.id}|{what}|{n}"),
            item,
        )
        for what, n, item in items
    ]


def display_name(kind: str, item: Commit | Credit) -> str:
    """The name its applied lines show: as given, or its kind ("Prepaid commit", "Credit")."""
    return item.name or ("Credit" if kind == "CREDIT" else f"{kind.title()} commit")


def segment_id(item_id: str, position: int, given: str | None) -> str:
    """An access segment's id: as given, or derived from its commit or credit and position."""
    return given or stable_id(f"{item_id}|segment|{position}")


def segment_rows(contract: Contract, products: dict[str, Product]) -> list[dict[str, Any]]:
    """One row per access segment of the contract's commits and credits (`commit_segments`)."""
    rows = []
    for kind, item_id, item in commits_and_credits(contract):
        zero_cost = kind == "CREDIT" or (
            isinstance(item, Commit) and kind == "PREPAID" and item.invoice_schedule is None
        )
        for k, segment in enumerate(item.access_schedule.schedule_items):
            rows.append(
                {
                    "contract_id": contract.id,
                    "customer_id": contract.customer_id,
                    "commit_or_credit_id": item_id,
                    "kind": kind,
                    "name": display_name(kind, item),
                    "product_id": item.product_id,
                    "priority": item.priority,
                    "zero_cost_basis": zero_cost,
                    "applicable_products": _applicable_products(item, products),
                    "applicable_product_ids": item.applicable_product_ids,
                    "applicable_product_tags": item.applicable_product_tags,
                    "segment_id": segment_id(item_id, k, segment.id),
                    "credit_type_id": item.access_schedule.credit_type_id,
                    "amount": segment.amount,
                    "starting_at": segment.starting_at,
                    "ending_before": segment.ending_before,
                }
            )
    return rows


def start_entries(segments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's first entry of each segment: its amount, at its start."""
    return [
        {
            "entry_id": stable_id(f"{s['segment_id']}|start"),
            "customer_id": s["customer_id"],
            "contract_id": s["contract_id"],
            "commit_or_credit_id": s["commit_or_credit_id"],
            "kind": s["kind"],
            "segment_id": s["segment_id"],
            "type": START_TYPES[s["kind"]],
            "amount": s["amount"],
            "invoice_id": None,
            "timestamp": s["starting_at"],
        }
        for s in segments
    ]


def _segment_order(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["kind"] == "POSTPAID",
        row["priority"] if row["priority"] is not None else NO_PRIORITY,
        not row["zero_cost_basis"],
        row["applicable_products"],
        row["ending_before"],
        row["starting_at"],
        row["segment_id"],
    )


def _line_order(line: dict[str, Any]) -> tuple[Any, ...]:
    return (line["starting_at"], -(line["unit_price"] or 0), line["name"], line["line_item_id"])


def _applies(segment: dict[str, Any], line: dict[str, Any]) -> bool:
    if (
        segment["contract_id"] != line["contract_id"]
        or segment["credit_type_id"] != line["credit_type_id"]
    ):
        return False
    ids, tags = segment["applicable_product_ids"], segment["applicable_product_tags"]
    if ids is None and tags is None:
        return True
    return line["product_id"] in (ids or []) or bool(
        set(tags or []) & set(line["product_tags"] or [])
    )


def allocate(
    lines: pl.DataFrame, pieces: pl.DataFrame, segments: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Draw the segments down, invoice by invoice in period order per contract.

    `lines`: the run's usage lines (line_item_id, invoice_index, invoice_id, contract_id,
    invoice_start, credit_type_id, product_id, product_tags, starting_at, unit_price, name).
    `pieces`: each line's amount per piece of time between segment boundaries (piece_start is
    the boundary it starts at), so a segment takes only usage inside its window.
    `segments`: commit_segments rows with `remaining`, their balance before this run.
    Returns one application per invoice and segment: {invoice_index, invoice_id, segment..., applied}.
    """
    left = {s["segment_id"]: s["remaining"] for s in segments}
    ordered_segments = sorted(segments, key=_segment_order)
    uncovered: dict[tuple[str, Any], Decimal] = {
        (line_id, start): amount
        for line_id, start, amount in pieces.select(
            "line_item_id", "piece_start", "amount"
        ).iter_rows()
    }
    pieces_of: dict[str, list[Any]] = {}
    for line_id, start in uncovered:
        pieces_of.setdefault(line_id, []).append(start)
    applied: dict[tuple[int, str], Decimal] = {}
    all_lines = sorted(
        lines.to_dicts(),
        key=lambda ln: (ln["contract_id"], ln["invoice_start"], ln["invoice_index"]),
    )
    invoices: dict[int, list[dict[str, Any]]] = {}
    for line in all_lines:
        invoices.setdefault(line["invoice_index"], []).append(line)
    for invoice_index, invoice_lines in invoices.items():
        for line in sorted(invoice_lines, key=_line_order):
            starts = sorted(p for p in pieces_of.get(line["line_item_id"], []) if p is not None)
            for segment in ordered_segments:
                if not _applies(segment, line):
                    continue
                for start in starts:
                    if not segment["starting_at"] <= start < segment["ending_before"]:
                        continue
                    key = (line["line_item_id"], start)
                    take = min(uncovered[key], left[segment["segment_id"]])
                    if take <= 0:
                        continue
                    uncovered[key] -= take
                    left[segment["segment_id"]] -= take
                    total_key = (invoice_index, segment["segment_id"])
                    applied[total_key] = applied.get(total_key, Decimal(0)) + take
    by_id = {s["segment_id"]: s for s in segments}
    invoice_ids = {ln["invoice_index"]: ln["invoice_id"] for ln in all_lines}
    return [
        {
            **by_id[segment_id],
            "invoice_index": index,
            "invoice_id": invoice_ids[index],
            "applied": amount,
        }
        for (index, segment_id), amount in applied.items()
    ]


# --- the SQL `store` runs for drawdown (relations: the run's tables, usage_invoices) ---------

RUN_LINES = """
SELECT l.line_item_id, l.invoice_index, l.invoice_id, ui.contract_id, ui.customer_id,
       ui.inclusive_start AS invoice_start, l.credit_type_id, l.product_id, p.tags AS product_tags,
       l.starting_at, l.unit_price, l.name
FROM invoice_line_items l
JOIN usage_invoices ui
  ON invoice_id(ui.contract_id, ui.credit_type_id, ui.inclusive_start, ui.exclusive_end) = l.invoice_id
JOIN products p ON p.product_id = l.product_id
WHERE l.run_id = $run_id AND l.type = 'usage'
  AND ui.contract_id IN (SELECT contract_id FROM commit_segments)
"""

# Each line's amount per piece of time between its contract's segment boundaries: a piece lies
# wholly inside or wholly outside every segment, so a segment takes only the usage in its window.
LINE_PIECES = """
WITH bounds AS (
    SELECT DISTINCT contract_id, boundary FROM (
        SELECT contract_id, starting_at AS boundary FROM commit_segments
        UNION ALL SELECT contract_id, ending_before AS boundary FROM commit_segments)
),
windows AS (
    SELECT l.line_item_id, ui.contract_id, w.window_start, w.quantity * l.unit_price AS amount
    FROM _priced_windows w
    JOIN invoice_line_items l ON l.item_key = w.item_key
    JOIN usage_invoices ui
      ON invoice_id(ui.contract_id, ui.credit_type_id, ui.inclusive_start, ui.exclusive_end) = l.invoice_id
    WHERE l.run_id = $run_id AND ui.contract_id IN (SELECT contract_id FROM commit_segments)
)
SELECT w.line_item_id, b.boundary AS piece_start, sum(w.amount) AS amount
FROM windows w ASOF LEFT JOIN bounds b ON w.contract_id = b.contract_id AND w.window_start >= b.boundary
GROUP BY ALL
"""

SEGMENTS = """
SELECT s.*, b.remaining FROM commit_segments s JOIN segment_balances b USING (segment_id)
WHERE s.contract_id IN (SELECT contract_id FROM usage_invoices)
"""

APPLIED_LINES = """
INSERT INTO invoice_line_items BY NAME
SELECT a.invoice_id, stable_id(a.invoice_id || '|applied|' || a.segment_id) AS line_item_id,
       (SELECT count(*) FROM invoice_line_items u
        WHERE u.invoice_id = a.invoice_id AND u.type = 'usage')
         + row_number() OVER (PARTITION BY a.invoice_index ORDER BY a.kind = 'POSTPAID', a.segment_id) - 1 AS position,
       a.product_id, a.name, 'applied_commit_or_credit' AS type, a.credit_type_id, -a.applied AS total,
       ui.inclusive_start AS starting_at, ui.exclusive_end AS ending_before, 'NONE' AS granularity,
       $run_id AS run_id, a.invoice_index, a.commit_or_credit_id, a.segment_id AS commit_segment_id,
       a.kind AS commit_kind
FROM _applications a JOIN usage_invoices ui ON ui.invoice_index = a.invoice_index
"""

DEDUCTIONS = f"""
INSERT INTO balance_ledger_entries BY NAME
SELECT stable_id(a.invoice_id || '|deduction|' || a.segment_id) AS entry_id, s.customer_id, s.contract_id,
       s.commit_or_credit_id, s.kind, s.segment_id,
       CASE s.kind {" ".join(f"WHEN '{k}' THEN '{v}'" for k, v in DEDUCTION_TYPES.items())} END AS type,
       -a.applied AS amount, a.invoice_id, ui.exclusive_end AS timestamp, $run_id AS run_id
FROM _applications a
JOIN commit_segments s USING (segment_id)
JOIN usage_invoices ui ON ui.invoice_index = a.invoice_index
"""
