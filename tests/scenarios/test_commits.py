"""Commits and credits drawn down by imported history (USD cents; hand-checked).

The acme contract imports June (10 API calls = 12,500) and July (20 = 25,000).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from metronome.types.v1.customers.invoice import Invoice
from tests.conftest import acme, import_json, invoice, line, query, run_cli

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")
YEAR = {"starting_at": "2024-06-01T00:00:00Z", "ending_before": "2025-06-01T00:00:00Z"}
Make = Callable[[dict[str, Any]], Path]


def _commit(amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "PREPAID",
        "product_id": "prod_api_calls",
        "name": "Prepaid 2024",
        "access_schedule": {"schedule_items": [{"amount": amount, **YEAR}]},
        **extra,
    }


def _applied(document: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            i["start_timestamp"][:7],
            item["name"],
            item["total"],
            item["applied_commit_or_credit"]["type"],
        )
        for i in document["data"]
        for item in i["line_items"]
        if item["type"] == "applied_commit_or_credit"
    ]


def test_a_prepaid_commit_is_partly_consumed_in_june_and_exhausted_in_july(
    db: Path, dataset: Make
) -> None:
    # 20,000 prepaid: June takes 12,500 (7,500 left, June total 0); July takes 7,500 (total 17,500).
    files = acme()
    files["contracts"][0]["commits"] = [_commit(20000, id="commit_2024")]
    document = import_json(db, dataset, files)

    june, july = document["data"]
    assert (june["total"], june["subtotal"], july["total"], july["subtotal"]) == (
        0,
        12500,
        17500,
        25000,
    )
    assert _applied(document) == [
        ("2024-06", "Prepaid 2024", -12500, "PREPAID"),
        ("2024-07", "Prepaid 2024", -7500, "PREPAID"),
    ]
    assert query(db, "SELECT remaining FROM segment_balances") == [(Decimal(0),)]
    ledger = query(
        db, "SELECT type, amount FROM balance_ledger_entries ORDER BY timestamp, amount DESC"
    )
    assert ledger == [
        ("PREPAID_COMMIT_SEGMENT_START", 20000),
        ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -12500),
        ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -7500),
    ]
    for element in document["data"]:
        Invoice.model_validate(element)  # the SDK reads applied lines too


def test_a_product_credit_goes_first_beside_a_commit_for_all_products(
    db: Path, dataset: Make
) -> None:
    # June: 12,500 of API calls and 2 x 4.8 = 9.6 of compute (us-east-1). A credit of 5,000 for
    # API calls only (zero cost basis, one product) applies before the commit for all products
    # (priority equal): credit 5,000, then commit 7,500 + 9.6; June total 0.
    files = acme()
    files["contracts"][0]["credits"] = [
        {
            "product_id": "prod_api_calls",
            "name": "Launch credit",
            "applicable_product_ids": ["prod_api_calls"],
            "access_schedule": {"schedule_items": [{"amount": 5000, **YEAR}]},
        }
    ]
    files["contracts"][0]["commits"] = [
        _commit(
            100000,
            invoice_schedule={
                "schedule_items": [{"timestamp": "2024-06-01T00:00:00Z", "amount": 100000}]
            },
        )
    ]
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line("prod_api_calls", *JUNE, quantity=10),
                line(
                    "prod_compute", *JUNE, quantity=2, pricing_group_values={"region": "us-east-1"}
                ),
            ],
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]

    applied = [
        (item["name"], item["total"])
        for item in june["line_items"]
        if item["type"] == "applied_commit_or_credit"
    ]
    assert applied == [("Launch credit", -5000), ("Prepaid 2024", Decimal("-7509.6"))]
    assert june["total"] == 0


def test_priority_decides_between_two_commits(db: Path, dataset: Make) -> None:
    # Both cover everything; priority 1 goes first: 10,000 from "first", 2,500 from "second".
    files = acme()
    files["contracts"][0]["commits"] = [
        _commit(10000, name="second", priority=2),
        _commit(10000, name="first", priority=1),
    ]
    files["invoices"]["invoices"] = files["invoices"]["invoices"][:1]
    (june,) = import_json(db, dataset, files)["data"]

    assert [(item["name"], item["total"]) for item in june["line_items"][1:]] == [
        ("first", -10000),
        ("second", -2500),
    ]
    assert june["total"] == 0


def test_a_segment_that_expires_mid_history_covers_only_its_window(db: Path, dataset: Make) -> None:
    # A segment of 50,000 ending on June 16 covers only June 1-15's usage: daily 1 per day on
    # June 10-19 at 1,250 = 12,500, of which June 10-15 (6 days) = 7,500 inside the window.
    files = acme()
    files["contracts"][0]["commits"] = [
        {
            "type": "PREPAID",
            "product_id": "prod_api_calls",
            "name": "Trial",
            "access_schedule": {
                "schedule_items": [
                    {
                        "amount": 50000,
                        "starting_at": "2024-06-01T00:00:00Z",
                        "ending_before": "2024-06-16T00:00:00Z",
                    }
                ]
            },
        }
    ]
    days = [
        (f"2024-06-{d:02d}T00:00:00Z", f"2024-06-{d + 1:02d}T00:00:00Z", 1) for d in range(10, 20)
    ]
    files["invoices"]["invoices"] = [
        invoice(*JUNE, [line("prod_api_calls", *JUNE, windows=days)], granularity="DAY")
    ]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["line_items"][1]["total"] == -7500
    assert june["total"] == 5000
    assert query(db, "SELECT remaining FROM segment_balances") == [(Decimal(42500),)]


def test_a_postpaid_commit_is_shown_but_leaves_the_total(db: Path, dataset: Make) -> None:
    files = acme()
    files["contracts"][0]["commits"] = [
        _commit(
            100000,
            type="POSTPAID",
            name="Postpaid 2024",
            invoice_schedule={
                "schedule_items": [{"timestamp": "2025-06-01T00:00:00Z", "amount": 100000}]
            },
        )
    ]
    files["invoices"]["invoices"] = files["invoices"]["invoices"][:1]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["total"] == 12500
    assert [(item["total"], item["commit_type"]) for item in june["line_items"][1:]] == [
        (-12500, "PostpaidCommit")
    ]
    assert query(db, "SELECT type FROM balance_ledger_entries ORDER BY amount") == [
        ("POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION",),
        ("POSTPAID_COMMIT_INITIAL_BALANCE",),
    ]


def test_a_commit_in_another_credit_type_is_not_touched(db: Path, dataset: Make) -> None:
    files = acme()
    files["catalog"]["credit_types"] = [{"id": "cpu", "name": "CPU credits"}]
    commit = _commit(100000)
    commit["access_schedule"]["credit_type_id"] = "cpu"
    files["contracts"][0]["commits"] = [commit]
    document = import_json(db, dataset, files)

    assert [i["total"] for i in document["data"]] == [12500, 25000]
    assert _applied(document) == []


def test_preview_shows_the_effects_and_writes_none(db: Path, dataset: Make) -> None:
    files = acme()
    files["contracts"][0]["commits"] = [_commit(20000)]
    directory = dataset(files)
    preview = run_cli(
        "import", directory, "--db", db, "--as-of", "2024-08-15", "--preview", "--json"
    )

    assert _applied(preview.json()) == [
        ("2024-06", "Prepaid 2024", -12500, "PREPAID"),
        ("2024-07", "Prepaid 2024", -7500, "PREPAID"),
    ]
    assert not db.exists()


def test_a_postpaid_commit_without_invoice_schedule_is_rejected(db: Path, dataset: Make) -> None:
    files = acme()
    files["contracts"][0]["commits"] = [_commit(100, type="POSTPAID")]
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 1
    assert ("INVALID_COMMIT", "invoice_schedule") in {
        (i["code"], i["field"]) for i in result.json()["issues"]
    }
