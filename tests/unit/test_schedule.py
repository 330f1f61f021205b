from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from bulk_rating import assemble, catalog, frames, resolve
from bulk_rating.models import Contract
from bulk_rating.schedule import Period, draft_period, period_containing, periods
from bulk_rating.store import Store


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def _contract(
    frequency: str = "MONTHLY", start: datetime | None = None, **schedule: Any
) -> Contract:
    return Contract.model_validate(
        {
            "id": "c",
            "customer_id": "cus",
            "rate_card_id": "rc",
            "starting_at": start or _utc(2024, 6, 1),
            "usage_statement_schedule": {"frequency": frequency, **schedule},
        }
    )


def test_guide_draft_is_august_when_generation_starts_in_august() -> None:
    contract = _contract(invoice_generation_starting_at="2024-08-01T00:00:00Z")
    assert draft_period(contract, _utc(2024, 8, 15)) == Period(_utc(2024, 8, 1), _utc(2024, 9, 1))
    assert draft_period(contract, _utc(2024, 7, 15)) is None  # July is imported, never generated


def test_month_end_anchor_follows_the_calendar() -> None:
    contract = _contract(day="CONTRACT_START", start=_utc(2024, 1, 31))
    starts = [
        p.inclusive_start.date().isoformat() for p in periods(contract, until=_utc(2024, 5, 1))
    ]
    assert starts == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]


def test_custom_anchor_clips_the_first_period_to_the_contract() -> None:
    # Metronome's example: start 09-15, anchor 09-10, monthly: first statement 09-15..10-10.
    contract = _contract(
        day="CUSTOM_DATE", start=_utc(2024, 9, 15), billing_anchor_date="2024-09-10T00:00:00Z"
    )
    first = next(periods(contract))
    assert first == Period(_utc(2024, 9, 15), _utc(2024, 10, 10))


@pytest.mark.parametrize(
    ("frequency", "moment", "expected"),
    [
        ("QUARTERLY", _utc(2024, 10, 2), Period(_utc(2024, 9, 1), _utc(2024, 12, 1))),
        ("ANNUAL", _utc(2025, 5, 1), Period(_utc(2024, 6, 1), _utc(2025, 6, 1))),
        ("WEEKLY", _utc(2024, 6, 10), Period(_utc(2024, 6, 8), _utc(2024, 6, 15))),
    ],
)
def test_period_containing(frequency: str, moment: datetime, expected: Period) -> None:
    assert period_containing(_contract(frequency), moment) == expected


def test_periods_end_with_the_contract() -> None:
    contract = Contract.model_validate(
        {
            "id": "c",
            "customer_id": "cus",
            "rate_card_id": "rc",
            "starting_at": "2024-06-01T00:00:00Z",
            "ending_before": "2024-07-15T00:00:00Z",
            "usage_statement_schedule": {"frequency": "monthly"},
        }
    )
    assert list(periods(contract)) == [
        Period(_utc(2024, 6, 1), _utc(2024, 7, 1)),
        Period(_utc(2024, 7, 1), _utc(2024, 7, 15)),
    ]
    assert period_containing(contract, _utc(2024, 7, 15)) is None


def _weeks(start: datetime, end: datetime) -> range:
    """The UTC weeks (resolve.WEEK_US since the epoch) [start, end) touches."""
    epoch, us = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
    first = (start - epoch) // us // resolve.WEEK_US
    return range(first, ((end - epoch) // us - 1) // resolve.WEEK_US + 1)


def test_period_weeks_from_stored_terms_are_each_contract_s_own_periods() -> None:
    # contracts of every kind of terms, some sharing theirs (their periods computed once)
    later = {"invoice_generation_starting_at": "2024-09-01T00:00:00Z"}
    contracts = [
        _contract(start=_utc(2024, 1, 31), day="CONTRACT_START", **later),
        _contract(start=_utc(2024, 1, 31), day="CONTRACT_START", **later),
        _contract(start=_utc(2024, 1, 31), day="FIRST_OF_MONTH", **later),
        _contract("QUARTERLY", start=_utc(2024, 2, 10, 6), **later),
        _contract("WEEKLY", start=_utc(2024, 3, 5, 12), **later),
        _contract(
            day="CUSTOM_DATE",
            billing_anchor_date="2024-01-15T00:00:00Z",
            invoice_generation_starting_at="2024-06-15T00:00:00Z",
        ),
        _contract(),  # no generation start: it generates every invoice, none is imported
        _contract(start=_utc(2024, 6, 1), **later).model_copy(
            update={"ending_before": _utc(2024, 7, 20)}
        ),
    ]
    contracts = [c.model_copy(update={"id": f"c{n}"}) for n, c in enumerate(contracts)]
    rows = frames.from_rows(
        [catalog.contract_row(c) for c in contracts], frames.CATALOG_TABLES["contracts"]
    )
    draft = (_utc(2024, 9, 1), _utc(2024, 10, 1))
    drafts = frames.from_columns(
        {"contract_id": ["c2"], "inclusive_start": [draft[0]], "exclusive_end": [draft[1]]},
        {
            "contract_id": pl.String(),
            "inclusive_start": frames.UTC_TIME,
            "exclusive_end": frames.UTC_TIME,
        },
    )
    with Store.scratch() as store:
        store.temp_table("_given", rows)
        terms = store.frame(assemble.contract_terms_sql("_given"))

    weeks = assemble.period_weeks(terms, drafts)

    expected = {
        (c.id, week, p.inclusive_start, p.exclusive_end, False)
        for c in contracts
        for p in periods(c, until=c.generation_starts_at)
        for week in _weeks(p.inclusive_start, p.exclusive_end)
    } | {("c2", week, *draft, True) for week in _weeks(*draft)}
    assert {c for c, *_ in expected} == {f"c{n}" for n in (0, 1, 2, 3, 4, 5, 7)}
    assert weeks.height == len(expected) > 100
    assert set(weeks.iter_rows()) == expected
