from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bulk_rating.models import Contract
from bulk_rating.schedule import Period, draft_period, period_containing, periods


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
