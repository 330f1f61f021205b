"""The contract's own schedule after the import: closing periods, and what a billing provider sees.

acme has a Stripe configuration. History (June, July) is imported; as of 2024-08-15 the contract
has an August draft. Closing on 2024-09-02 finalizes August, creates the September draft, and
queues August (only August: imported invoices never go to a provider, D1).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import SAMPLES, query, run_cli


def test_only_the_generated_invoice_is_exported(db: Path, tmp_path: Path) -> None:
    assert run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15").exit_code == 0

    closed = run_cli("close", "--db", db, "--as-of", "2024-09-02")
    exported = tmp_path / "stripe.jsonl"
    export = run_cli("export-provider", "--provider", "stripe", "--out", exported, "--db", db)

    assert closed.exit_code == 0, closed.stderr
    assert "1 draft finalized, 1 invoice created" in closed.stdout
    invoices = query(
        db,
        """SELECT strftime(start_timestamp, '%Y-%m'), origin, status FROM invoices
                            ORDER BY start_timestamp""",
    )
    assert invoices == [
        ("2024-06", "HISTORICAL_IMPORT", "FINALIZED"),
        ("2024-07", "HISTORICAL_IMPORT", "FINALIZED"),
        ("2024-08", "CONTRACT_SCHEDULE", "FINALIZED"),
        ("2024-09", "CONTRACT_SCHEDULE", "DRAFT"),
    ]
    assert export.exit_code == 0, export.stderr
    lines = [json.loads(text) for text in exported.read_text().splitlines()]
    assert [(item["invoice"]["start_timestamp"], item["invoice"]["origin"]) for item in lines] == [
        ("2024-08-01T00:00:00Z", "CONTRACT_SCHEDULE")
    ]
    assert lines[0]["idempotency_key"]
    assert query(
        db,
        "SELECT count(*) FROM provider_outbox o JOIN invoices i USING (invoice_id) "
        "WHERE i.origin = 'HISTORICAL_IMPORT'",
    ) == [(0,)]

    again = tmp_path / "again.jsonl"
    nothing = run_cli("export-provider", "--provider", "stripe", "--out", again, "--db", db)
    assert nothing.exit_code == 0, nothing.stderr
    assert "no invoice is queued for stripe" in nothing.stdout
    assert not again.exists()  # exported once; no empty file made
    assert (
        "0 drafts finalized, 0 invoices created"
        in run_cli("close", "--db", db, "--as-of", "2024-09-02").stdout
    )
