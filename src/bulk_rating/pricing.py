"""Pricing models: how a rate of each `rate_type` prices quantity, chosen from one registry.

Every model prices as graduated tiers over the quantity an invoice, product and pricing group
reach, [start, end) with a price each: all the kernel's SQL ever prices. A model says how its
rate's fields make those tiers, what shape the fields must have, and whether a window's tier
depends on its position in the invoice's quantity (then the kernel places windows in tiers week
by week; else every window is in the one tier). FLAT is one open tier at its price; TIERED the
tiers given, the last one open.

Adding a model (Metronome's PERCENTAGE or SUBSCRIPTION, say) is a class here registered in
MODELS, its literal in models.RateType, and its tests; the catalog rules (validate/catalog.py),
effective rates (rate.py) and the kernel's SQL read it from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar, Protocol

# (start, end or None for open, price) of each tier, in order
Tiers = tuple[tuple[Decimal, Decimal | None, Decimal], ...]


class TierLike(Protocol):
    @property
    def size(self) -> Decimal | None: ...

    @property
    def price(self) -> Decimal: ...


def graduated(sizes_and_values: Sequence[tuple[Decimal | None, Decimal]]) -> Tiers:
    """Tiers as [start, end) ranges of quantity; the last tier is open whatever its size says,
    so usage is never left unpriced."""
    tiers, start = [], Decimal(0)
    for level, (size, value) in enumerate(sizes_and_values, start=1):
        end = None if level == len(sizes_and_values) or size is None else start + size
        tiers.append((start, end, value))
        if end is None:
            break
        start = end
    return tuple(tiers)


class PricingModel(ABC):
    rate_type: ClassVar[str]
    # whether a window's tier depends on the quantity before it (placed by position)
    positioned: ClassVar[bool]

    @abstractmethod
    def tiers(self, price: Decimal | None, tiers: Sequence[TierLike] | None) -> Tiers:
        """The graduated tiers a rate of this model prices with."""

    @abstractmethod
    def shape_problem(
        self, price: Decimal | None, tiers: Sequence[TierLike] | None
    ) -> tuple[str, str] | None:
        """(field, what it needs) when the rate's fields do not fit the model; else None."""


class Flat(PricingModel):
    rate_type = "FLAT"
    positioned = False

    def tiers(self, price: Decimal | None, tiers: Sequence[TierLike] | None) -> Tiers:
        return ((Decimal(0), None, price or Decimal(0)),)

    def shape_problem(
        self, price: Decimal | None, tiers: Sequence[TierLike] | None
    ) -> tuple[str, str] | None:
        return ("price", "FLAT needs price and no tiers") if price is None or tiers else None


class Tiered(PricingModel):
    rate_type = "TIERED"
    positioned = True

    def tiers(self, price: Decimal | None, tiers: Sequence[TierLike] | None) -> Tiers:
        return graduated([(t.size, t.price) for t in tiers or []])

    def shape_problem(
        self, price: Decimal | None, tiers: Sequence[TierLike] | None
    ) -> tuple[str, str] | None:
        return (
            ("tiers", "TIERED needs tiers and no price") if not tiers or price is not None else None
        )


MODELS: dict[str, PricingModel] = {m.rate_type: m for m in (Flat(), Tiered())}


def model(rate_type: str) -> PricingModel:
    return MODELS[rate_type]


def positioned_sql(column: str) -> str:
    """SQL true for a rate type whose windows are placed in tiers by position."""
    types = ", ".join(f"'{t}'" for t, m in sorted(MODELS.items()) if m.positioned)
    return f"{column} IN ({types})" if types else "false"
