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
from typing import NamedTuple

from dateutil.relativedelta import relativedelta

from bulk_rating.models import Contract

MONTHS_PER_PERIOD = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}


@dataclass(frozen=True, order=True)
class Period:
    inclusive_start: datetime
    exclusive_end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.inclusive_start <= moment < self.exclusive_end


class Terms(NamedTuple):
    """What a contract's periods depend on: contracts with the same terms (many start on the
    same day, on the same schedule) share their periods, computed once (at 192,998 contracts
    computing them contract by contract took seconds a run)."""

    starting_at: datetime
    ending_before: datetime | None
    frequency: str
    day: str
    billing_anchor_date: datetime | None
    generation_starts_at: datetime


def terms(contract: Contract) -> Terms:
    schedule = contract.usage_statement_schedule
    return Terms(
        contract.starting_at,
        contract.ending_before,
        schedule.frequency,
        schedule.day,
        schedule.billing_anchor_date,
        contract.generation_starts_at,
    )


def _anchor(terms: Terms) -> datetime:
    if terms.day == "CUSTOM_DATE" and terms.billing_anchor_date is not None:
        return terms.billing_anchor_date
    if terms.day == "CONTRACT_START" or terms.frequency == "WEEKLY":
        return terms.starting_at
    return terms.starting_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def billing_anchor(contract: Contract) -> datetime:
    """The moment the contract's periods are counted from (Metronome's `billing_anchor_date`)."""
    return _anchor(terms(contract))


def _boundary(terms: Terms, k: int) -> datetime:
    anchor = _anchor(terms)
    if terms.frequency == "WEEKLY":
        return anchor + timedelta(weeks=k)
    return _months_after(anchor, k * MONTHS_PER_PERIOD[terms.frequency])


@lru_cache(maxsize=65536)
def _months_after(anchor: datetime, months: int) -> datetime:
    """Contracts share anchors (the 1st of a month, an anchor day): each boundary computed once."""
    return anchor + relativedelta(months=months)


def _index_at_or_before(terms: Terms, moment: datetime) -> int:
    """The largest k with boundary(k) <= moment."""
    anchor = _anchor(terms)
    if terms.frequency == "WEEKLY":
        k = (moment - anchor) // timedelta(weeks=1)
    else:
        months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
        k = months // MONTHS_PER_PERIOD[terms.frequency]
    while _boundary(terms, k) > moment:
        k -= 1
    while _boundary(terms, k + 1) <= moment:
        k += 1
    return k


def importable_periods(found: Terms) -> tuple[Period, ...]:
    """The periods of contracts of these terms that end by their generation start (imported,
    not generated)."""
    return _bounded_periods(found, found.generation_starts_at)


def periods(contract: Contract, until: datetime | None = None) -> Iterator[Period]:
    """The contract's periods in order, clipped to the contract, up to `until` (exclusive)."""
    found = terms(contract)
    if until is None and found.ending_before is None:
        return _periods(found, None)  # without end: never all of them at once
    return iter(_bounded_periods(found, until))


@lru_cache(maxsize=65536)
def _bounded_periods(terms: Terms, until: datetime | None) -> tuple[Period, ...]:
    return tuple(_periods(terms, until))


def _periods(terms: Terms, until: datetime | None) -> Iterator[Period]:
    end = terms.ending_before
    stop = until if end is None else (end if until is None else min(end, until))
    k = _index_at_or_before(terms, terms.starting_at)
    boundary = _boundary(terms, k)
    while True:
        start = max(boundary, terms.starting_at)
        if stop is not None and start >= stop:
            return
        boundary = _boundary(terms, k + 1)  # this period's end, the next one's start
        yield Period(start, boundary if end is None else min(boundary, end))
        k += 1


def period_containing(contract: Contract, moment: datetime) -> Period | None:
    """The billing period that contains `moment`, or None outside the contract."""
    return _period_containing(terms(contract), moment)


@lru_cache(maxsize=65536)
def _period_containing(terms: Terms, moment: datetime) -> Period | None:
    if moment < terms.starting_at or (
        terms.ending_before is not None and moment >= terms.ending_before
    ):
        return None
    k = _index_at_or_before(terms, moment)
    start = max(_boundary(terms, k), terms.starting_at)
    boundary = _boundary(terms, k + 1)
    end = boundary if terms.ending_before is None else min(boundary, terms.ending_before)
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
