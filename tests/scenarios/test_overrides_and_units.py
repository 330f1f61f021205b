"""Contract overrides and custom pricing units, end to end (amounts hand-checked, USD cents)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import (
    acme,
    add_product,
    add_rates,
    import_json,
    invoice,
    line,
    run_cli,
    write_usage_csv,
)

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")
CREDITS = "cpu-credits"


def test_a_multiplier_from_july_discounts_only_july(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # June: 10 x 1250 = 12,500. July at 0.9: 20 x 1125 = 22,500.
    files = acme()
    files["contracts"][0]["overrides"] = [
        {
            "type": "multiplier",
            "product_id": "prod_api_calls",
            "multiplier": 0.9,
            "starting_at": JULY[0],
        }
    ]
    june, july = import_json(db, dataset, files)["data"]

    assert (june["total"], july["total"]) == (12500, 22500)
    assert july["line_items"][0]["unit_price"] == 1125


def test_an_overwrite_by_tag_replaces_a_tiered_list_price(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # Storage is TIERED on the card (2.5 then 1.75); the contract overwrites products tagged
    # `storage` with FLAT 2: 1,200 GB-days x 2 = 2,400 (the card would give 2,850).
    files = acme()
    files["contracts"][0]["overrides"] = [
        {
            "type": "OVERWRITE",
            "applicable_product_tags": ["storage"],
            "starting_at": "2024-01-01T00:00:00Z",
            "overwrite_rate": {"rate_type": "FLAT", "price": 2},
        }
    ]
    files["invoices"]["invoices"] = [invoice(*JUNE, [line("prod_storage", *JUNE, quantity=1200)])]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["total"] == 2400
    assert june["line_items"][0]["tier"] is None


def test_a_tiered_override_discounts_the_first_units_of_the_period(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # API calls 1250 each; the first 5 of the period at x0.5 (625), the rest at x1:
    # June 10 = 5 x 625 + 5 x 1250 = 9,375.
    files = acme()
    files["contracts"][0]["multiplier_override_prioritization"] = "EXPLICIT"
    files["contracts"][0]["overrides"] = [
        {
            "type": "TIERED",
            "product_id": "prod_api_calls",
            "priority": 1,
            "starting_at": "2024-01-01T00:00:00Z",
            "tiers": [{"multiplier": 0.5, "size": 5}, {"multiplier": 1}],
        }
    ]
    files["invoices"]["invoices"] = files["invoices"]["invoices"][:1]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["total"] == 9375
    assert [(i["tier"]["level"], i["quantity"], i["unit_price"]) for i in june["line_items"]] == [
        (1, 5, Decimal("625.0")),
        (2, 5, 1250),
    ]


def test_an_invalid_override_is_rejected_with_its_code(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    files = acme()
    files["contracts"][0]["overrides"] = [
        {
            "type": "TIERED",
            "product_id": "prod_api_calls",
            "starting_at": "2024-01-01T00:00:00Z",
            "tiers": [{"multiplier": 0.5}],
        }
    ]
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 1
    assert ("INVALID_OVERRIDE", "type") in {
        (i["code"], i["field"]) for i in result.json()["issues"]
    }


def _with_credits(files: dict[str, Any]) -> None:
    files["catalog"]["credit_types"] = [{"id": CREDITS, "name": "CPU credits"}]
    add_product(files, "prod_gpu", "GPU hours")
    add_rates(
        files,
        {
            "product_id": "prod_gpu",
            "starting_at": "2024-01-01T00:00:00Z",
            "entitled": True,
            "rate_type": "FLAT",
            "price": 3,
            "credit_type_id": CREDITS,
        },
    )


def test_a_usage_table_gives_one_invoice_per_credit_type_of_a_period(
    db: Path, dataset, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # June: API calls 10 x 1250 = 12,500 USD cents; GPU 4 x 3 = 12 CPU credits: two invoices.
    files = acme()
    _with_credits(files)
    del files["invoices"]
    directory = dataset(files)
    write_usage_csv(
        directory / "usage.csv",
        [
            ["cus_acme", "con_acme_2024", "prod_api_calls", *JUNE, "10", "NONE"],
            [
                "cus_acme",
                "con_acme_2024",
                "prod_gpu",
                "2024-06-03T00:00:00Z",
                "2024-06-04T00:00:00Z",
                "4",
                "",
            ],
        ],
    )
    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 0, result.stdout
    totals = {
        (i["credit_type"]["name"], i["start_timestamp"], i["total"]) for i in result.json()["data"]
    }
    assert totals == {("USD (cents)", JUNE[0], 12500), ("CPU credits", JUNE[0], 12)}


def test_a_json_line_priced_in_another_credit_type_is_an_error(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    files = acme()
    _with_credits(files)
    files["invoices"]["invoices"] = [invoice(*JUNE, [line("prod_gpu", *JUNE, quantity=1)])]
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 1
    assert "CREDIT_TYPE_MISMATCH" in {i["code"] for i in result.json()["issues"]}
