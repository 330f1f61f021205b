from __future__ import annotations

from decimal import Decimal

from bulk_rating.models import Contract, RateCard
from bulk_rating.money import decimal_places, format_decimal, round_to_units
from bulk_rating.rate import contract_rate_rows


def test_format_decimal_is_exact_text_without_exponent() -> None:
    assert format_decimal(Decimal("1500.000")) == "1500"
    assert format_decimal(Decimal("0.0000000056")) == "0.0000000056"
    assert format_decimal(Decimal("1E+3")) == "1000"
    assert format_decimal(Decimal("-0.000")) == "0"


def test_decimal_places_ignores_trailing_zeros() -> None:
    assert decimal_places(Decimal("1.50")) == 1
    assert decimal_places(Decimal("100")) == 0
    assert decimal_places(Decimal("0.0000000001")) == 10


def test_comparisons_round_half_even() -> None:
    assert [round_to_units(Decimal(x)) for x in ("0.5", "1.5", "2.5", "2.51")] == [0, 2, 2, 3]


def test_tiers_are_graduated_ranges_and_the_last_is_open() -> None:
    card = RateCard.model_validate(
        {
            "id": "rc",
            "name": "n",
            "rates": [
                {
                    "product_id": "p",
                    "starting_at": "2024-01-01T00:00:00Z",
                    "entitled": True,
                    "rate_type": "TIERED",
                    "tiers": [
                        {"size": 10, "price": 3},
                        {"size": 5, "price": 2},
                        {"size": 100, "price": 1},
                    ],
                },
                {
                    "product_id": "q",
                    "starting_at": "2024-01-01T00:00:00Z",
                    "entitled": True,
                    "rate_type": "FLAT",
                    "price": "0.5",
                },
            ],
        }
    )
    contract = Contract.model_validate(
        {
            "id": "c",
            "customer_id": "cus",
            "rate_card_id": "rc",
            "starting_at": "2024-01-01T00:00:00Z",
            "usage_statement_schedule": {"frequency": "MONTHLY"},
        }
    )
    _, tiers = contract_rate_rows(contract, card, {})
    ranges = [
        (r["rate_key"], r["tier_key"], r["tier_start"], r["tier_end"], r["price"]) for r in tiers
    ]
    assert ranges == [
        (0, 1, 0, 10, 3),
        (0, 2, 10, 15, 2),
        (0, 3, 15, None, 1),
        (1, 0, 0, None, Decimal("0.5")),
    ]
