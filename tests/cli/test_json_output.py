"""The --json document: Metronome's Invoice shape, exact numbers, nothing else on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from metronome.types.v1.customers.invoice import Invoice
from tests.conftest import SAMPLES, run_cli


def test_every_invoice_parses_with_the_official_sdk_model(db: Path) -> None:
    result = run_cli(
        "import", SAMPLES / "acme-daily", "--db", db, "--as-of", "2024-08-15", "--json"
    )
    document = json.loads(result.stdout)  # as the SDK reads a response

    parsed = [Invoice.model_validate(element) for element in document["data"] + document["drafts"]]

    assert [p.total for p in parsed] == [12500.0, 25000.0, 0.0]
    assert parsed[0].credit_type.name == "USD (cents)"
    assert parsed[0].line_items[0].type == "usage"
    assert parsed[0].line_items[0].quantity == 10.0
    assert [p.status for p in parsed] == ["FINALIZED", "FINALIZED", "DRAFT"]


def test_json_is_one_document_with_summary_and_issues(db: Path) -> None:
    result = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "2024-08-15", "--json")

    document = json.loads(result.stdout)
    assert set(document) == {"data", "drafts", "summary", "issues", "notices"}
    assert document["issues"] == []
    summary = document["summary"]
    assert (summary["invoices"], summary["line_items"], summary["drafts"], summary["status"]) == (
        2,
        2,
        1,
        "imported",
    )
    assert set(summary["stage_seconds"]) >= {"load", "validate", "rate"}
    assert result.stderr == ""
