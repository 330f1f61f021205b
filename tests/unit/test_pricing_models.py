"""The pricing models' registry: every rate type the models accept has a model, and each model
makes the tiers and refuses the shapes its documentation says."""

from __future__ import annotations

from decimal import Decimal
from typing import get_args

from bulk_rating import pricing
from bulk_rating.models import RateType, Tier


def test_every_accepted_rate_type_has_a_model_and_no_more() -> None:
    (accepted, *_) = get_args(RateType)
    assert set(get_args(accepted)) == set(pricing.MODELS)


def test_flat_is_one_open_tier_at_its_price() -> None:
    flat = pricing.model("FLAT")
    assert flat.tiers(Decimal("1.5"), None) == ((Decimal(0), None, Decimal("1.5")),)
    assert flat.shape_problem(Decimal(1), None) is None
    assert flat.shape_problem(None, None) == ("price", "FLAT needs price and no tiers")
    assert not flat.positioned


def test_tiered_is_graduated_with_the_last_tier_open() -> None:
    tiered = pricing.model("TIERED")
    tiers = [Tier(size=Decimal(100), price=Decimal(2)), Tier(size=Decimal(50), price=Decimal(1))]
    assert tiered.tiers(None, tiers) == (
        (Decimal(0), Decimal(100), Decimal(2)),
        (Decimal(100), None, Decimal(1)),  # its size given, the last tier is open all the same
    )
    assert tiered.shape_problem(None, tiers) is None
    assert tiered.shape_problem(Decimal(1), tiers) == ("tiers", "TIERED needs tiers and no price")
    assert tiered.positioned


def test_the_kernel_places_by_position_only_the_positioned_models() -> None:
    assert pricing.positioned_sql("rate_type") == "rate_type IN ('TIERED')"
