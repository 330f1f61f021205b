"""The --json document: Metronome's Invoice shape, exact numbers, nothing else on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from metronome.types.v1.customers.invoice import Invoice
from tests.conftest import SAMPLES, run_cli

from bulk_rating import samples, services
from bulk_rating.money import dumps_exact
from bulk_rating.report import DOCUMENTS_PER_CHUNK


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


def test_a_whole_run_is_listed_page_by_page_from_files_as_from_memory(tmp_path: Path) -> None:
    # 300 contracts over two months: 600 invoices, more than one page of DOCUMENTS_PER_CHUNK
    data = tmp_path / "data"
    samples.generate(data, customers=300, products=3, months=2, ids="uuid", order="time")

    printed = run_cli(
        "import", data, "--db", tmp_path / "printed.duckdb", "--as-of", "2024-02-15", "--json"
    )
    whole = services.import_history(
        data, db=tmp_path / "whole.duckdb", as_of="2024-02-15", preview=True
    )
    held = services.import_history(
        data,
        db=tmp_path / "held.duckdb",
        as_of="2024-02-15",
        preview=True,
        invoice_limit=10**6,  # a limit: the rows are held in memory, not in files
    )

    assert whole.row_files is not None
    assert held.row_files is None
    in_memory = json.loads(dumps_exact(held.invoices)), json.loads(dumps_exact(held.drafts))
    assert len(in_memory[0]) == 600 > DOCUMENTS_PER_CHUNK
    assert sum(len(i["line_items"]) for i in in_memory[0]) > 600
    document = json.loads(printed.stdout)
    assert (document["data"], document["drafts"]) == in_memory
    # whole (a reconciliation's preview), the same rows and columns as held in memory
    invoices, lines = whole.all_rows()
    assert invoices.equals(held.invoice_rows)
    by_place = ["invoice_id", "position"]
    assert lines.sort(by_place).equals(held.line_rows.sort(by_place))
    # pages of any size, their edges falling anywhere in the files' batches
    for page in (1, 7, 599):
        paged = [*whole.documents(page=page)], [*whole.documents("CONTRACT_SCHEDULE", page=page)]
        assert json.loads(dumps_exact(paged)) == list(in_memory)
