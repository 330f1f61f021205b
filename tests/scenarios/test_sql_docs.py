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
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def _run(store: Path, name: str) -> list[dict[str, Any]]:
    result = run_cli("sql", _queries()[name], "--db", store, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = result.json()
    return rows


def test_the_docs_hold_at_least_eight_queries() -> None:
    assert len(_queries()) >= 11


def test_daily_spend_by_product(store: Path) -> None:
    rows = [(r["product_id"], r["day"], r["spend"]) for r in _run(store, "Daily spend by product")]
    assert rows == [
        ("prod_api_calls", "2024-06-01", 1250),
        ("prod_storage", "2024-06-01", 1500),
        ("prod_api_calls", "2024-06-02", 2500),
        ("prod_storage", "2024-06-02", 1350),
        ("prod_api_calls", "2024-06-03", 0),
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


def test_balance_burndown_per_commit(tmp_path: Path) -> None:
    # acme-commit: 50,000 prepaid; June takes 12,500 (at its end, July 1), July 25,000 (August 1).
    db = tmp_path / "commit.duckdb"
    assert (
        run_cli(
            "import", ROOT / "data" / "samples" / "acme-commit", "--db", db, "--as-of", "2024-08-15"
        ).exit_code
        == 0
    )

    burndown = [
        (r["day"], r["type"], r["amount"], r["balance"])
        for r in _run(db, "Balance burndown per commit")
    ]
    remaining = [
        (r["commit_or_credit_id"], r["amount"], r["remaining"])
        for r in _run(db, "What remains of each commit and credit")
    ]

    assert burndown == [
        ("2024-06-01", "PREPAID_COMMIT_SEGMENT_START", 50000, 50000),
        ("2024-07-01", "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -12500, 37500),
        ("2024-08-01", "PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -25000, 12500),
    ]
    assert remaining == [("commit_acme_2024", 50000, 12500)]
