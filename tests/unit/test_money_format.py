"""Money for people (the Contracts page): one formatter, the exact value beside it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bulk_rating.models import USD_CENTS_ID, USD_CENTS_NAME
from bulk_rating.money import exact_money, format_money

CUSTOM = "5f0c3f0e-0000-4000-8000-00000000c0de"


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        ("37500", "$375.00"),
        ("0", "$0.00"),
        ("1250", "$12.50"),
        ("123456789", "$1,234,567.89"),
        ("-12500", "-$125.00"),
        ("0.5", "$0.005"),  # a fraction of a cent is shown, not rounded away
        ("0.0000001", "≈$0.00"),  # beyond the shown decimals: rounded, and said so
        ("1250.00000000000000000000000", "$12.50"),  # the store's scale is not shown
    ],
)
def test_usd_cents_are_dollars_and_cents(cents: str, shown: str) -> None:
    assert format_money(Decimal(cents), USD_CENTS_ID, USD_CENTS_NAME) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("1234.5", "1,234.5 Compute credits"),
        ("1000000", "1,000,000 Compute credits"),
        ("-3", "-3 Compute credits"),
        ("0.1234567", "≈0.123457 Compute credits"),
    ],
)
def test_custom_units_by_name(amount: str, shown: str) -> None:
    assert format_money(Decimal(amount), CUSTOM, "Compute credits") == shown


def test_the_exact_value_keeps_every_digit() -> None:
    assert exact_money(Decimal("37500.000"), USD_CENTS_NAME) == "37500 USD (cents)"
    assert exact_money(Decimal("0.0000001"), "Compute credits") == "0.0000001 Compute credits"
