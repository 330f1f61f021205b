"""A contract's effective rates: list prices with overrides (METRONOME.md 2.3 and rule 8)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bulk_rating.models import Contract, Product, RateCard
from bulk_rating.rate import contract_rate_rows

PRODUCTS = {
    "cpu": Product(id="cpu", name="CPU", tags=["compute"]),
    "gpu": Product(id="gpu", name="GPU", tags=["compute", "accelerated"]),
    "disk": Product(id="disk", name="Disk", tags=["storage"]),
}
CARD = RateCard.model_validate(
    {
        "id": "rc",
        "name": "List",
        "rates": [
            {
                "product_id": "cpu",
                "starting_at": "2024-01-01T00:00:00Z",
                "entitled": True,
                "rate_type": "FLAT",
                "price": 10,
            },
            {
                "product_id": "gpu",
                "starting_at": "2024-01-01T00:00:00Z",
                "entitled": True,
                "rate_type": "FLAT",
                "price": 100,
            },
            {
                "product_id": "disk",
                "starting_at": "2024-01-01T00:00:00Z",
                "entitled": True,
                "rate_type": "TIERED",
                "tiers": [{"size": 100, "price": 2}, {"price": 1}],
            },
        ],
    }
)


def _schedule(
    overrides: list[dict[str, Any]], prioritization: str = "LOWEST_MULTIPLIER"
) -> dict[str, list[tuple[Any, ...]]]:
    contract = Contract.model_validate(
        {
            "id": "c",
            "customer_id": "cus",
            "rate_card_id": "rc",
            "starting_at": "2024-01-01T00:00:00Z",
            "usage_statement_schedule": {"frequency": "MONTHLY"},
            "overrides": overrides,
            "multiplier_override_prioritization": prioritization,
        }
    )
    rates, tiers = contract_rate_rows(contract, CARD, PRODUCTS)
    result: dict[str, list[tuple[Any, ...]]] = {}
    for r in rates:
        prices = tuple(t["price"] for t in tiers if t["rate_key"] == r["rate_key"])
        start = r["starting_at"].date().isoformat()
        end = r["ending_before"].date().isoformat() if r["ending_before"] else None
        result.setdefault(r["product_id"], []).append((start, end, r["entitled"], prices))
    return result


def test_without_overrides_the_list_prices_apply() -> None:
    assert _schedule([])["cpu"] == [("2024-01-01", None, True, (10,))]


def test_a_multiplier_cuts_the_rate_where_it_starts_and_ends() -> None:
    schedule = _schedule(
        [
            {
                "type": "MULTIPLIER",
                "product_id": "cpu",
                "multiplier": "0.9",
                "starting_at": "2024-03-01T00:00:00Z",
                "ending_before": "2024-05-01T00:00:00Z",
            }
        ]
    )
    assert schedule["cpu"] == [
        ("2024-01-01", "2024-03-01", True, (10,)),
        ("2024-03-01", "2024-05-01", True, (Decimal("9.0"),)),
        ("2024-05-01", None, True, (10,)),
    ]
    assert schedule["gpu"] == [("2024-01-01", None, True, (100,))]


def test_lowest_multiplier_applies_alone_and_tags_match_any_tag() -> None:
    schedule = _schedule(
        [
            {
                "type": "MULTIPLIER",
                "applicable_product_tags": ["compute"],
                "multiplier": "0.8",
                "starting_at": "2024-01-01T00:00:00Z",
            },
            {
                "type": "MULTIPLIER",
                "applicable_product_tags": ["accelerated", "nothing"],
                "multiplier": "0.5",
                "starting_at": "2024-01-01T00:00:00Z",
            },
        ]
    )
    assert schedule["cpu"][0][3] == (Decimal("8.0"),)
    assert schedule["gpu"][0][3] == (Decimal("50.0"),)  # 0.5 alone, not 0.5 x 0.8
    assert schedule["disk"][0][3] == (2, 1)


def test_explicit_prioritization_takes_the_lowest_priority_value() -> None:
    overrides = [
        {
            "type": "MULTIPLIER",
            "product_id": "gpu",
            "multiplier": "0.5",
            "priority": 2,
            "starting_at": "2024-01-01T00:00:00Z",
        },
        {
            "type": "MULTIPLIER",
            "product_id": "gpu",
            "multiplier": "0.9",
            "priority": 1,
            "starting_at": "2024-01-01T00:00:00Z",
        },
    ]
    assert _schedule(overrides, "EXPLICIT")["gpu"][0][3] == (Decimal("90.0"),)
    assert _schedule(overrides, "LOWEST_MULTIPLIER")["gpu"][0][3] == (Decimal("50.0"),)


def test_an_overwrite_wins_over_any_multiplier() -> None:
    schedule = _schedule(
        [
            {
                "type": "MULTIPLIER",
                "product_id": "cpu",
                "multiplier": "0.1",
                "starting_at": "2024-01-01T00:00:00Z",
            },
            {
                "type": "OVERWRITE",
                "product_id": "cpu",
                "overwrite_rate": {"rate_type": "FLAT", "price": "7.25"},
                "starting_at": "2024-02-01T00:00:00Z",
            },
        ]
    )
    assert schedule["cpu"] == [
        ("2024-01-01", "2024-02-01", True, (Decimal("1.0"),)),
        ("2024-02-01", None, True, (Decimal("7.25"),)),
    ]


def test_a_tiered_override_multiplies_each_range_of_the_list_tiers() -> None:
    # List: first 100 at 2, then 1. Override: first 50 at x0.5, then x1. Ranges: 0-50 at 1,
    # 50-100 at 2, 100+ at 1.
    schedule = _schedule(
        [
            {
                "type": "TIERED",
                "product_id": "disk",
                "priority": 1,
                "starting_at": "2024-01-01T00:00:00Z",
                "tiers": [{"multiplier": "0.5", "size": 50}, {"multiplier": 1}],
            }
        ],
        "EXPLICIT",
    )
    assert schedule["disk"][0][3] == (Decimal("1.0"), 2, 1)


def test_multipliers_keep_every_digit() -> None:
    schedule = _schedule(
        [
            {
                "type": "MULTIPLIER",
                "product_id": "cpu",
                "multiplier": "0.3333",
                "starting_at": "2024-01-01T00:00:00Z",
            }
        ]
    )
    assert schedule["cpu"][0][3] == (Decimal("3.3330"),)


def test_an_override_can_switch_a_product_off() -> None:
    schedule = _schedule(
        [{"product_id": "gpu", "entitled": False, "starting_at": "2024-06-01T00:00:00Z"}]
    )
    assert [(s, e, entitled) for s, e, entitled, _ in schedule["gpu"]] == [
        ("2024-01-01", "2024-06-01", True),
        ("2024-06-01", None, False),
    ]
