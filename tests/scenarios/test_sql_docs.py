"""Every query in docs/sql.md, run against a scenario with hand-checked answers (USD cents).

Scenario (rate card of the acme sample):
- acme, June (daily windows): API calls 1, 2, 0 on June 1-3 at 1250 = 1,250 + 2,500 + 0 = 3,750;
  storage 600 and 600 on tiers of 1,000 at 2.5 then 1.75 = 1,500 + (1,000 + 350) = 2,850.
  June total 6,600. July: API calls 20 = 25,000.
- globex (own contract, same card), June (hourly windows): API calls 4 = 5,000; compute in
  us-east-1 on June 3, hours 0-3: 1, 0, 2, 1 at 4.8 = 4.8 + 0 + 9.6 + 4.8 = 19.2. June total
  5,019.2. July: API calls 2 = 2,500.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.conftest import ROOT, acme, invoice, line, run_cli, write_dataset

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
JULY = ("2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z")
D = Decimal


def _day(d: int) -> tuple[str, str]:
    return f"2024-06-{d:02d}T00:00:00Z", f"2024-06-{d + 1:02d}T00:00:00Z"


def _hour(h: int) -> tuple[str, str]:
    return f"2024-06-03T{h:02d}:00:00Z", f"2024-06-03T{h + 1:02d}:00:00Z"


def _queries() -> dict[str, str]:
    text = (ROOT / "docs" / "sql.md").read_text()
    return dict(re.findall(r"### (.+?)\n\n```sql\n(.+?)```", text, flags=re.S))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = acme()
    globex = copy.deepcopy(files["contracts"][0])
    globex.update(id="con_globex", customer_id="cus_globex")
    files["catalog"]["customers"].append({"id": "cus_globex", "name": "Globex"})
    files["contracts"].append(globex)
    api = "prod_api_calls"
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line(api, *JUNE, windows=[(*_day(1), 1), (*_day(2), 2), (*_day(3), 0)]),
                line("prod_storage", *JUNE, windows=[(*_day(1), 600), (*_day(2), 600)]),
            ],
            granularity="DAY",
        ),
        invoice(*JULY, [line(api, *JULY, quantity=20)]),
        invoice(
            *JUNE,
            [
                line(api, *JUNE, quantity=4),
                line(
                    "prod_compute",
                    *JUNE,
                    windows=[(*_hour(h), q) for h, q in enumerate([1, 0, 2, 1])],
                    pricing_group_values={"region": "us-east-1"},
                ),
            ],
            contract="con_globex",
            customer="cus_globex",
            granularity="HOUR",
        ),
        invoice(
            *JULY, [line(api, *JULY, quantity=2)], contract="con_globex", customer="cus_globex"
        ),
    ]
    db = tmp_path_factory.mktemp("sql") / "store.duckdb"
    first = write_dataset(tmp_path_factory.mktemp("set"), files)
    assert run_cli("import", first, "--db", db, "--as-of", "2024-08-15").exit_code == 0
    return db


@pytest.fixture(scope="module")
def commit_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme-commit: 50,000 prepaid; June takes 12,500 (at its end, July 1), July 25,000 (August 1)."""
    db = tmp_path_factory.mktemp("commit") / "commit.duckdb"
    imported = run_cli(
        "import", ROOT / "data" / "samples" / "acme-commit", "--db", db, "--as-of", "2024-08-15"
    )
    assert imported.exit_code == 0
    return db


def _run(store: Path, name: str) -> list[dict[str, Any]]:
    result = run_cli("sql", _queries()[name], "--db", store, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = result.json()
    return rows


def test_the_docs_hold_every_query_tested_here() -> None:
    assert len(_queries()) == 12


def test_daily_spend_by_product(store: Path) -> None:
    rows = [(r["product_id"], r["day"], r["spend"]) for r in _run(store, "Daily spend by product")]
    assert rows == [
        ("prod_api_calls", "2024-06-01", 1250),
        ("prod_storage", "2024-06-01", 1500),
        ("prod_api_calls", "2024-06-02", 2500),
        ("prod_storage", "2024-06-02", 1350),
        ("prod_api_calls", "2024-06-03", 0),
    ]


def test_total_spend_per_day_over_all_customers(store: Path) -> None:
    rows = [(r["day"], r["spend"]) for r in _run(store, "Total spend per day over all customers")]
    # June 1: acme's calls and storage; June 2 the same (storage in its second tier); June 3:
    # acme's zero calls and globex's compute (globex's calls are a plain quantity: no day)
    assert rows == [
        ("2024-06-01", 1250 + 1500),
        ("2024-06-02", 2500 + 1350),
        ("2024-06-03", D("19.2")),
    ]


def test_hourly_usage_of_one_customer_over_one_day(store: Path) -> None:
    query = _queries()["Hourly usage of one customer over one day"].replace(
        "cus_acme", "cus_globex"
    )
    result = run_cli("sql", query, "--db", store, "--format", "json")
    rows = [
        (r["window_start"][11:16], r["product_id"], r["quantity"], r["amount"])
        for r in result.json()
    ]
    assert rows == [
        ("00:00", "prod_compute", 1, D("4.8")),
        ("01:00", "prod_compute", 0, 0),
        ("02:00", "prod_compute", 2, D("9.6")),
        ("03:00", "prod_compute", 1, D("4.8")),
    ]


def test_top_customers_by_spend_per_month(store: Path) -> None:
    rows = [
        (r["month"], r["customer_id"], r["spend"], r["rank"])
        for r in _run(store, "Top customers by spend per month")
    ]
    assert rows == [
        ("2024-06", "cus_acme", 6600, 1),
        ("2024-06", "cus_globex", D("5019.2"), 2),
        ("2024-07", "cus_acme", 25000, 1),
        ("2024-07", "cus_globex", 2500, 2),
    ]


def test_the_tier_each_day_reached(store: Path) -> None:
    rows = [
        (r["product_id"], r["day"], r["highest_tier"])
        for r in _run(store, "The tier each day reached")
    ]
    assert rows == [("prod_storage", "2024-06-01", 1), ("prod_storage", "2024-06-02", 2)]


def test_invoices_by_origin_and_status(store: Path) -> None:
    rows = [
        (r["origin"], r["status"], r["invoices"], r["total"])
        for r in _run(store, "Invoices by origin and status")
    ]
    assert rows == [
        ("CONTRACT_SCHEDULE", "DRAFT", 2, 0),
        ("HISTORICAL_IMPORT", "FINALIZED", 4, D("39119.2")),
    ]


def test_windows_with_zero_usage(store: Path) -> None:
    rows = [
        (r["customer_id"], r["product_id"], r["granularity"], r["window_start"][:16])
        for r in _run(store, "Windows with zero usage")
    ]
    assert rows == [
        ("cus_acme", "prod_api_calls", "DAY", "2024-06-03 00:00"),
        ("cus_globex", "prod_compute", "HOUR", "2024-06-03 01:00"),
    ]


def test_month_over_month_change(store: Path) -> None:
    rows = [
        (r["customer_id"], r["month"], r["spend"], r["change"])
        for r in _run(store, "Month-over-month change per customer")
    ]
    assert rows == [
        ("cus_acme", "2024-06", 6600, None),
        ("cus_acme", "2024-07", 25000, 18400),
        ("cus_globex", "2024-06", D("5019.2"), None),
        ("cus_globex", "2024-07", 2500, D("-2519.2")),
    ]


def test_a_contracts_effective_prices_at_a_moment(store: Path) -> None:
    rows = [
        (r["product_id"], r["tier_key"], r["price"])
        for r in _run(store, "A contract's effective prices at a moment")
    ]
    assert rows == [
        ("prod_api_calls", 0, 1250),
        ("prod_compute", 0, D("5.6")),
        ("prod_compute", 0, D("4.8")),
        ("prod_storage", 1, D("2.5")),
        ("prod_storage", 2, D("1.75")),
    ]


def test_line_items_of_one_invoice(store: Path) -> None:
    rows = [
        (r["name"], r["quantity"], r["total"], r["tier_level"])
        for r in _run(store, "Line items of one invoice")
    ]
    assert rows == [
        ("API calls (thousands)", 3, 3750, None),
        ("Storage (GB-days)", 1000, 2500, 1),
        ("Storage (GB-days)", 200, 350, 2),
    ]


def test_a_write_is_refused(store: Path) -> None:
    result = run_cli("sql", "DELETE FROM invoices", "--db", store)
    assert result.exit_code == 2
    assert "read-only" in result.stderr
    assert _run(store, "Invoices by origin and status")[1]["invoices"] == 4


def test_balance_burndown_per_commit(commit_store: Path) -> None:
    burndown = [
        (r["day"], r["type"], r["amount"], r["balance"])
        for r in _run(commit_store, "Balance burndown per commit")
    ]
    remaining = [
        (r["commit_or_credit_id"], r["amount"], r["remaining"])
        for r in _run(commit_store, "What remains of each commit and credit")
    ]

    assert burndown == [
        ("2024-06-01", "PREPAID_COMMIT_SEGMENT_START", 50000, 50000),
        ("2024-07-01", "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -12500, 37500),
        ("2024-08-01", "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -25000, 12500),
    ]
    assert remaining == [("commit_acme_2024", 50000, 12500)]


# Zones on either side of UTC: New York is behind it (June 1 00:00 UTC is May 31 there) and
# changes its clock (2024-03-10, 2024-11-03); Kolkata is ahead by a half hour.
CLIENT_ZONES = ("America/New_York", "Asia/Kolkata")


def _answers(db: Path, zone: str, queries: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each query's rows as a client gets them: DuckDB's Python client on the file, its TimeZone
    set to `zone`. Timestamps are compared as instants (in UTC: Python never finds a time of a
    clock's repeated hour equal to one of another zone)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute(f"SET TimeZone = '{zone}'")
        return {
            name: [
                tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row)
                for row in con.execute(sql).fetchall()
            ]
            for name, sql in queries.items()
        }
    finally:
        con.close()


@pytest.mark.parametrize("zone", CLIENT_ZONES)
def test_every_query_answers_the_same_in_any_client_time_zone(
    store: Path, commit_store: Path, zone: str
) -> None:
    queries = {
        f"{name} ({customer})": sql.replace("cus_acme", customer)
        for name, sql in _queries().items()
        for customer in ("cus_acme", "cus_globex")  # globex's windows are hourly, acme's daily
    }
    answered = set()
    for db in (store, commit_store):
        in_utc = _answers(db, "UTC", queries)
        assert _answers(db, zone, queries) == in_utc
        answered |= {name for name, rows in in_utc.items() if rows}
    # every query is compared on rows, for one customer or the other
    assert {name.rsplit(" (", 1)[0] for name in answered} == set(_queries())


def test_the_views_answer_the_same_in_any_client_time_zone(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Days of New York's clock changes and hours on either side of midnight UTC: each row's UTC
    day, and a day window's end 24 hours after its start (not a day of the client's calendar)."""
    files = acme()
    contract = files["contracts"][0]
    contract["starting_at"] = "2024-03-01T00:00:00Z"
    contract["usage_statement_schedule"]["invoice_generation_starting_at"] = "2025-01-01T00:00:00Z"
    march = ("2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z")
    november = ("2024-11-01T00:00:00Z", "2024-12-01T00:00:00Z")

    def days(quantity: int) -> list[tuple[str, str, int]]:
        return [
            (f"2024-03-{d:02d}T00:00:00Z", f"2024-03-{d + 1:02d}T00:00:00Z", quantity)
            for d in (9, 10, 11)
        ]

    # New York's clock goes back at 06:00 UTC on November 3
    hours = [
        ("2024-11-02T23:00:00Z", "2024-11-03T00:00:00Z", 1),
        ("2024-11-03T00:00:00Z", "2024-11-03T01:00:00Z", 2),
        ("2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z", 3),
    ]
    files["invoices"]["invoices"] = [
        invoice(
            *march,
            [
                line("prod_api_calls", *march, windows=days(1)),
                # 600 a day on tiers of 1,000: March 10 has a part in each
                line("prod_storage", *march, windows=days(600)),
            ],
            granularity="DAY",
        ),
        invoice(
            *november,
            [
                line(
                    "prod_compute",
                    *november,
                    windows=hours,
                    pricing_group_values={"region": "us-east-1"},
                )
            ],
            granularity="HOUR",
        ),
    ]
    db = tmp_path_factory.mktemp("zones") / "store.duckdb"
    data = write_dataset(tmp_path_factory.mktemp("set"), files)
    assert run_cli("import", data, "--db", db, "--as-of", "2024-12-15").exit_code == 0
    views = {
        name: f"SELECT * FROM {name} ORDER BY ALL"
        for name in ("invoice_breakdowns", "breakdowns_hourly", "breakdowns_daily")
    }

    in_utc = _answers(db, "UTC", views)

    for zone in CLIENT_ZONES:
        assert _answers(db, zone, views) == in_utc
    lengths = """
        SELECT granularity, day, epoch(window_end) - epoch(window_start) FROM breakdowns_hourly
        UNION ALL SELECT 'DAY', day, epoch(window_end) - epoch(window_start) FROM breakdowns_daily
        ORDER BY ALL"""
    rows = _answers(db, "America/New_York", {"lengths": lengths})["lengths"]
    hour, day = 3600, 24 * 3600  # seconds
    assert rows == [
        *[("DAY", date(2024, 3, 9), day)] * 2,  # calls, storage
        *[("DAY", date(2024, 3, 10), day)] * 3,  # calls, storage in each tier
        *[("DAY", date(2024, 3, 11), day)] * 2,
        ("DAY", date(2024, 11, 2), day),  # compute's hours, by UTC day
        ("DAY", date(2024, 11, 3), day),
        ("HOUR", date(2024, 11, 2), hour),
        *[("HOUR", date(2024, 11, 3), hour)] * 2,
    ]
