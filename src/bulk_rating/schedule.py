"""A contract's usage statement schedule: its billing periods, half-open and in UTC.

Boundaries are `anchor + k x step` for whole k, counted from the anchor each time (never by
adding steps one after another), so an anchor on the 31st gives the last day of shorter months
and comes back to the 31st afterwards, as a calendar would. Periods are clipped to the contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from dateutil.relativedelta import relativedelta

from bulk_rating.models import Contract

MONTHS_PER_PERIOD = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}


@dataclass(frozen=True, order=True)
class Period:
    inclusive_start: datetime
    exclusive_end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.inclusive_start <= moment < self.exclusive_end


def _anchor(contract: Contract) -> datetime:
    schedule = contract.usage_statement_schedule
    if schedule.day == "CUSTOM_DATE" and schedule.billing_anchor_date is not None:
        return schedule.billing_anchor_date
    if schedule.day == "CONTRACT_START" or schedule.frequency == "WEEKLY":
        return contract.starting_at
    start = contract.starting_at
    return start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def billing_anchor(contract: Contract) -> datetime:
    """The moment the contract's periods are counted from (Metronome's `billing_anchor_date`)."""
    return _anchor(contract)


def _boundary(contract: Contract, k: int) -> datetime:
    anchor = _anchor(contract)
    frequency = contract.usage_statement_schedule.frequency
    if frequency == "WEEKLY":
        return anchor + timedelta(weeks=k)
    return _months_after(anchor, k * MONTHS_PER_PERIOD[frequency])


@lru_cache(maxsize=65536)
def _months_after(anchor: datetime, months: int) -> datetime:
    """Contracts share anchors (the 1st of a month, an anchor day): each boundary computed once."""
    return anchor + relativedelta(months=months)


def _index_at_or_before(contract: Contract, moment: datetime) -> int:
    """The largest k with boundary(k) <= moment."""
    anchor = _anchor(contract)
    frequency = contract.usage_statement_schedule.frequency
    if frequency == "WEEKLY":
        k = (moment - anchor) // timedelta(weeks=1)
    else:
        months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
        k = months // MONTHS_PER_PERIOD[frequency]
    while _boundary(contract, k) > moment:
        k -= 1
    while _boundary(contract, k + 1) <= moment:
        k += 1
    return k


def periods(contract: Contract, until: datetime | None = None) -> Iterator[Period]:
    """The contract's periods in order, clipped to the contract, up to `until` (exclusive)."""
    end = contract.ending_before
    stop = until if end is None else (end if until is None else min(end, until))
    k = _index_at_or_before(contract, contract.starting_at)
    boundary = _boundary(contract, k)
    while True:
        start = max(boundary, contract.starting_at)
        if stop is not None and start >= stop:
            return
        boundary = _boundary(contract, k + 1)  # this period's end, the next one's start
        yield Period(start, boundary if end is None else min(boundary, end))
        k += 1


def period_containing(contract: Contract, moment: datetime) -> Period | None:
    """The billing period that contains `moment`, or None outside the contract."""
    if moment < contract.starting_at or (
        contract.ending_before is not None and moment >= contract.ending_before
    ):
        return None
    k = _index_at_or_before(contract, moment)
    start = max(_boundary(contract, k), contract.starting_at)
    boundary = _boundary(contract, k + 1)
    end = boundary if contract.ending_before is None else min(boundary, contract.ending_before)
    return Period(start, end)


def draft_period(contract: Contract, as_of: datetime) -> Period | None:
    """D8: the period the engine generates a draft for, if any.

    The period containing the as-of date, when it starts on or after the contract's
    `invoice_generation_starting_at` (earlier periods are imported, never generated).
    """
    period = period_containing(contract, as_of)
    if period is None or period.inclusive_start < contract.generation_starts_at:
        return None
    return period
