"""Drawdown invariants on generated commits, credits and daily usage."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import acme, invoice, line, query, run_cli, write_dataset

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")

segments = st.lists(
    st.tuples(
        st.integers(0, 40000),  # amount
        st.integers(1, 45),  # first day (from June 1)
        st.integers(1, 60),  # length in days
        st.sampled_from(["PREPAID", "CREDIT", "POSTPAID"]),
        st.one_of(st.none(), st.integers(1, 3)),  # priority
    ),
    min_size=1,
    max_size=4,
)
usage = st.lists(
    st.integers(0, 5), min_size=61, max_size=61
)  # API calls per day, June 1 to July 31


FIRST = datetime(2024, 6, 1, tzinfo=UTC)


def _day(n: int) -> str:
    """Day n after June 1, 2024, as a UTC timestamp."""
    return (FIRST + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _files(drawn: list[tuple[int, int, int, str, int | None]], daily: list[int]) -> dict[str, Any]:
    files = acme()
    commits, credits = [], []
    for amount, first, length, kind, priority in drawn:
        start, end = _day(first - 1), _day(first - 1 + length)
        body: dict[str, Any] = {
            "product_id": "prod_api_calls",
            "priority": priority,
            "access_schedule": {
                "schedule_items": [{"amount": amount, "starting_at": start, "ending_before": end}]
            },
        }
        if kind == "CREDIT":
            credits.append(body)
        else:
            body["type"] = kind
            if kind == "POSTPAID":
                body["invoice_schedule"] = {
                    "schedule_items": [{"timestamp": end, "amount": amount}]
                }
            commits.append(body)
    files["contracts"][0]["commits"], files["contracts"][0]["credits"] = commits, credits
    june = [(_day(n), _day(n + 1), q) for n, q in enumerate(daily[:30])]
    july = [(_day(n), _day(n + 1), q) for n, q in enumerate(daily[30:61], start=30)]  # to July 31
    files["invoices"]["invoices"] = [
        invoice(*JUNE, [line("prod_api_calls", *JUNE, windows=june)], granularity="DAY"),
        invoice(*JULY, [line("prod_api_calls", *JULY, windows=july)], granularity="DAY"),
    ]
    return files


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=segments, daily=usage)
def test_balances_never_go_below_zero_and_applications_are_bounded(
    drawn: list[tuple[int, int, int, str, int | None]], daily: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = write_dataset(Path(scratch) / "set", _files(drawn, daily))
        db = Path(scratch) / "store.duckdb"
        result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")
        assert result.exit_code == 0, result.stdout

        remaining = [r for (r,) in query(db, "SELECT remaining FROM segment_balances")]
        assert all(r >= 0 for r in remaining)
        (applied, segment_total, usage_total) = query(
            db,
            """
            SELECT (SELECT coalesce(-sum(total), 0) FROM invoice_line_items WHERE type = 'applied_commit_or_credit'),
                   (SELECT coalesce(sum(amount), 0) FROM commit_segments),
                   (SELECT coalesce(sum(total), 0) FROM invoice_line_items WHERE type = 'usage')""",
        )[0]
        assert applied <= segment_total
        assert applied <= usage_total
        for document in result.json()["data"]:
            assert document["total"] >= 0
            assert (
                document["total"]
                <= document["subtotal"]
                == sum(
                    (item["total"] for item in document["line_items"] if item["type"] == "usage"),
                    Decimal(0),
                )
            )
