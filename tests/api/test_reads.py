"""The read endpoints through Metronome's SDK in strict mode: invoice breakdowns, contracts
get and list, customer balances and the net balance, on stores the command line imported from
the samples. Raw JSON is checked where numbers matter (strict mode alone would let "12500" or
12500.0 pass)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import metronome
import pytest
from tests.api.conftest import AS_OF, Served
from tests.conftest import SAMPLES, USD, run_cli

JUNE = "78581074-20c3-420c-2e4c-9ea2e66506a8"  # con_acme_2024's June invoice (id from content)
NULL_CREDIT_TYPE = "00000000-0000-0000-0000-000000000000"


def _imported(tmp_path: Path, sample: str) -> Path:
    db = tmp_path / f"{sample}.duckdb"
    result = run_cli("import", SAMPLES / sample, "--db", db, "--as-of", AS_OF)
    assert result.exit_code == 0, result.stdout + result.stderr
    return db


@pytest.fixture
def daily_db(tmp_path: Path) -> Path:
    """acme-daily: June as ten daily windows of 1 (1,250 cents each), July a plain 20."""
    return _imported(tmp_path, "acme-daily")


@pytest.fixture
def commit_db(tmp_path: Path) -> Path:
    """acme-commit: a 50,000-cent prepaid commit covers June and July; 12,500 remain."""
    return _imported(tmp_path, "acme-commit")


def _exact(response: Any) -> Any:
    """The raw JSON of a `with_raw_response` call, numbers as Decimal; the SDK's strict model
    is checked too."""
    response.parse()
    return json.loads(response.http_response.text, parse_float=Decimal)


def _error(raised: pytest.ExceptionInfo[metronome.APIStatusError]) -> dict[str, Any]:
    body = raised.value.body
    assert isinstance(body, dict)
    assert isinstance(body["message"], str)
    return body


# --- invoice breakdowns ---------------------------------------------------------------------


def _all_breakdowns(client: metronome.Metronome, **params: Any) -> list[dict[str, Any]]:
    """Every page's raw items, following next_page as the SDK does (and checking each page
    against its strict model)."""
    items: list[dict[str, Any]] = []
    next_page: str | None = None
    while True:
        extra = {"next_page": next_page} if next_page else {}
        page = _exact(
            client.v1.customers.invoices.with_raw_response.list_breakdowns(
                customer_id="cus_acme", **params, **extra
            )
        )
        items += page["data"]
        next_page = page["next_page"]
        if next_page is None:
            return items


def test_daily_breakdowns_add_up_to_each_invoice_across_pages(
    serve: Callable[..., Served], daily_db: Path
) -> None:
    client = serve(daily_db).client()
    invoices = {i.id: i for i in client.v1.customers.invoices.list(customer_id="cus_acme")}

    listed = list(
        client.v1.customers.invoices.list_breakdowns(
            customer_id="cus_acme",
            starting_on="2024-06-01T00:00:00Z",
            ending_before="2024-09-01T00:00:00Z",
            limit=10,
        )
    )  # the SDK follows next_page: 92 days in 10 pages
    raw = _all_breakdowns(
        client,
        starting_on="2024-06-01T00:00:00Z",
        ending_before="2024-09-01T00:00:00Z",
        window_size="day",
        limit=10,
    )

    assert len(listed) == len(raw) == 30 + 31 + 31  # June, July, the August draft
    starts = [(i["id"], i["breakdown_start_timestamp"]) for i in raw]
    assert len(set(starts)) == len(starts), "no window twice across pages"
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for item in raw:
        totals[item["id"]] += item["total"]
        assert item["total"] == sum((ln["total"] for ln in item["line_items"]), Decimal(0))
    assert totals == {i: Decimal(str(invoices[i].total)) for i in invoices}
    assert totals[JUNE] == 12500

    june = [i for i in raw if i["id"] == JUNE]
    assert [i["breakdown_start_timestamp"] for i in june[:2]] == [
        "2024-06-01T00:00:00Z",
        "2024-06-02T00:00:00Z",
    ]
    assert june[0]["breakdown_end_timestamp"] == "2024-06-02T00:00:00Z"
    assert june[0]["start_timestamp"] == "2024-06-01T00:00:00Z"  # the invoice's own period
    assert june[0]["end_timestamp"] == "2024-07-01T00:00:00Z"
    assert [(ln["quantity"], ln["total"]) for ln in june[9]["line_items"]] == [(1, 1250)]
    assert [(ln["quantity"], ln["total"]) for ln in june[10]["line_items"]] == [(0, 0)]
    assert june[0]["line_items"][0]["unit_price"] == 1250


def test_a_plain_quantity_falls_in_the_window_of_its_last_instant(
    serve: Callable[..., Served], daily_db: Path
) -> None:
    """July was sent as one quantity of 20: its 25,000 cents show on July 31."""
    client = serve(daily_db).client()
    raw = _all_breakdowns(
        client, starting_on="2024-07-01T00:00:00Z", ending_before="2024-08-01T00:00:00Z"
    )

    assert len(raw) == 31
    charged = [(i["breakdown_start_timestamp"], i["total"]) for i in raw if i["total"]]
    assert charged == [("2024-07-31T00:00:00Z", 25000)]
    assert raw[-1]["line_items"][0]["quantity"] == 20


def test_hourly_windows_and_the_range_filter(serve: Callable[..., Served], daily_db: Path) -> None:
    """Daily usage asked by the hour falls in the day's last hour; only windows wholly inside
    [starting_on, ending_before) are listed."""
    client = serve(daily_db).client()
    hours = _all_breakdowns(
        client,
        starting_on="2024-06-03T00:00:00Z",
        ending_before="2024-06-04T00:00:00Z",
        window_size="HOUR",
    )
    assert len(hours) == 24  # one page: 24 hours by default
    assert hours[0]["breakdown_start_timestamp"] == "2024-06-03T00:00:00Z"
    assert [(i["breakdown_start_timestamp"], i["total"]) for i in hours if i["total"]] == [
        ("2024-06-03T23:00:00Z", 1250)
    ]

    days = _all_breakdowns(
        client, starting_on="2024-06-09T12:00:00Z", ending_before="2024-06-12T00:00:00Z"
    )
    assert [i["breakdown_start_timestamp"] for i in days] == [
        "2024-06-10T00:00:00Z",
        "2024-06-11T00:00:00Z",
    ]


def test_breakdown_filters_and_sort(serve: Callable[..., Served], daily_db: Path) -> None:
    client = serve(daily_db).client()
    window = {"starting_on": "2024-06-29T00:00:00Z", "ending_before": "2024-08-03T00:00:00Z"}

    ascending = _all_breakdowns(client, **window)
    descending = _all_breakdowns(client, **window, sort="date_desc")
    finalized = _all_breakdowns(client, **window, status="finalized")
    skipped = _all_breakdowns(client, **window, skip_zero_qty_line_items=True)
    other_unit = _all_breakdowns(client, **window, credit_type_id="credits-of-nothing")

    assert len(ascending) == 2 + 31 + 2
    assert descending == ascending[::-1]
    assert {i["status"] for i in finalized} == {"FINALIZED"}
    assert len(finalized) == 2 + 31
    assert [len(i["line_items"]) for i in skipped if i["id"] == JUNE] == [0, 0]
    assert other_unit == []


def test_an_applied_commit_falls_in_the_invoices_last_window(
    serve: Callable[..., Served], commit_db: Path
) -> None:
    """The prepaid commit's -12,500 on June shows on June 30, where the ledger dates the
    deduction: June's windows add up to its total, 0, and their subtotals to 12,500."""
    client = serve(commit_db).client()
    june = _all_breakdowns(
        client, starting_on="2024-06-01T00:00:00Z", ending_before="2024-07-01T00:00:00Z"
    )

    assert len(june) == 30
    assert sum(i["total"] for i in june) == 0
    assert sum(i["subtotal"] for i in june) == 12500
    last = june[-1]
    assert last["breakdown_start_timestamp"] == "2024-06-30T00:00:00Z"
    applied = [ln for ln in last["line_items"] if ln["type"] == "applied_commit_or_credit"]
    assert [(ln["total"], ln["commit_id"]) for ln in applied] == [(-12500, "commit_acme_2024")]
    assert (last["subtotal"], last["total"]) == (12500, 0)
    assert all(ln["type"] == "usage" for item in june[:-1] for ln in item["line_items"]), (
        "the application shows once"
    )


def test_breakdowns_refuse_bad_parameters(serve: Callable[..., Served], daily_db: Path) -> None:
    client = serve(daily_db).client()
    breakdowns = client.v1.customers.invoices.list_breakdowns
    june = {"starting_on": "2024-06-01T00:00:00Z", "ending_before": "2024-07-01T00:00:00Z"}

    with pytest.raises(metronome.NotFoundError):
        breakdowns(customer_id="cus_nobody", **june)
    for bad in (
        {**june, "window_size": "WEEK"},
        {**june, "limit": 101},
        {**june, "sort": "sideways"},
        {**june, "next_page": "not-a-cursor"},
        {"starting_on": "2024-07-01T00:00:00Z", "ending_before": "2024-06-01T00:00:00Z"},
        {"starting_on": "2024-06-01T00:00:00", "ending_before": "2024-07-01T00:00:00Z"},
    ):
        with pytest.raises(metronome.BadRequestError) as raised:
            breakdowns(customer_id="cus_acme", **bad)  # type: ignore[arg-type]
        assert raised.value.response.headers["x-should-retry"] == "false"
        _error(raised)
    with pytest.raises(metronome.BadRequestError) as missing:
        client.get(
            "/v1/customers/cus_acme/invoices/breakdowns",
            cast_to=object,
            options={"params": {"starting_on": "2024-06-01T00:00:00Z"}},
        )
    assert "ending_before" in json.dumps(_error(missing))


# --- contracts ------------------------------------------------------------------------------

SECOND_CONTRACT: dict[str, Any] = {
    "customer_id": "cus_acme",
    "rate_card_id": "rc_standard_2024",
    "starting_at": "2024-08-01T00:00:00Z",
    "name": "Acme add-on",
    "usage_statement_schedule": {
        "frequency": "MONTHLY",
        "invoice_generation_starting_at": "2024-08-01T00:00:00Z",
    },
    "credits": [
        {
            "product_id": "prod_api_calls",
            "name": "Welcome credit",
            "priority": 2,
            "custom_fields": {"campaign": "welcome"},
            "access_schedule": {
                "schedule_items": [
                    {
                        "amount": 1000.25,
                        "starting_at": "2024-08-01T00:00:00Z",
                        "ending_before": "2025-01-01T00:00:00Z",
                    }
                ]
            },
        }
    ],
    "commits": [
        {
            "type": "PREPAID",
            "product_id": "prod_api_calls",
            "access_schedule": {
                "schedule_items": [
                    {
                        "amount": 3000,
                        "starting_at": "2024-09-01T00:00:00Z",
                        "ending_before": "2025-01-01T00:00:00Z",
                    }
                ]
            },
        }
    ],
}


def test_a_contract_in_metronomes_v1_shape(serve: Callable[..., Served], commit_db: Path) -> None:
    client = serve(commit_db).client()
    plain = _exact(
        client.v1.contracts.with_raw_response.retrieve(
            contract_id="con_acme_2024", customer_id="cus_acme"
        )
    )["data"]
    full = _exact(
        client.v1.contracts.with_raw_response.retrieve(
            contract_id="con_acme_2024",
            customer_id="cus_acme",
            include_balance=True,
            include_ledgers=True,
        )
    )["data"]

    assert (plain["id"], plain["customer_id"], plain["amendments"]) == (
        "con_acme_2024",
        "cus_acme",
        [],
    )
    assert plain["initial"] == plain["current"]
    state = plain["current"]
    assert state["usage_statement_schedule"] == {
        "frequency": "MONTHLY",
        "billing_anchor_date": "2024-06-01T00:00:00Z",
    }
    assert (state["starting_at"], state["rate_card_id"]) == (
        "2024-06-01T00:00:00Z",
        "rc_standard_2024",
    )
    [commit] = state["commits"]
    assert commit["id"] == "commit_acme_2024"
    assert commit["product"] == {"id": "prod_api_calls", "name": "API calls (thousands)"}
    assert commit["access_schedule"]["schedule_items"] == [
        {
            "id": "segment_2024",
            "amount": 50000,
            "starting_at": "2024-06-01T00:00:00Z",
            "ending_before": "2025-06-01T00:00:00Z",
        }
    ]
    assert commit["invoice_schedule"]["schedule_items"][0]["amount"] == 50000
    assert "balance" not in commit
    assert "ledger" not in commit

    [drawn] = full["current"]["commits"]
    assert drawn["balance"] == 12500
    assert [(e["type"], e["amount"]) for e in drawn["ledger"]] == [
        ("PREPAID_COMMIT_SEGMENT_START", 50000),
        ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -12500),
        ("PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION", -25000),
    ]
    assert drawn["ledger"][1]["invoice_id"] == JUNE


def test_contracts_are_listed_in_pages_by_cursor(
    serve: Callable[..., Served], commit_db: Path
) -> None:
    client = serve(commit_db).client()
    added = client.v1.contracts.create(**SECOND_CONTRACT).data.id

    listed = list(client.v1.contracts.list(customer_id="cus_acme", limit=1))
    first = client.v1.contracts.with_raw_response.list(customer_id="cus_acme", limit=1)
    covering = client.v1.contracts.list(
        customer_id="cus_acme", covering_date="2024-07-01T00:00:00Z"
    )
    later = client.v1.contracts.list(customer_id="cus_acme", starting_at="2024-07-01T00:00:00Z")

    assert [c.id for c in listed] == ["con_acme_2024", added]
    assert _exact(first)["cursor"] == "1"
    assert [c.id for c in covering.data] == ["con_acme_2024"]
    assert [c.id for c in later.data] == [added]
    assert [c.name for c in listed[1].current.credits or []] == ["Welcome credit"]


def test_unknown_contracts_and_customers_are_404_and_bad_bodies_400(
    serve: Callable[..., Served], commit_db: Path
) -> None:
    client = serve(commit_db).client()
    for call in (
        lambda: client.v1.contracts.retrieve(contract_id="con_nothing", customer_id="cus_acme"),
        lambda: client.v1.contracts.retrieve(contract_id="con_acme_2024", customer_id="cus_x"),
        lambda: client.v1.contracts.list(customer_id="cus_nobody"),
    ):
        with pytest.raises(metronome.NotFoundError) as raised:
            call()
        assert raised.value.response.headers["x-should-retry"] == "false"
        _error(raised)
    for body in (
        {"customer_id": "cus_acme"},
        {"customer_id": "cus_acme", "contract_id": "con_acme_2024", "include_balanse": True},
        [],
    ):
        with pytest.raises(metronome.BadRequestError) as bad:
            client.post("/v1/contracts/get", cast_to=object, body=body)
        _error(bad)
    with pytest.raises(metronome.BadRequestError) as both:
        client.v1.contracts.list(
            customer_id="cus_acme",
            covering_date="2024-07-01T00:00:00Z",
            starting_at="2024-07-01T00:00:00Z",
        )
    assert "covering_date" in _error(both)["message"]
    with pytest.raises(metronome.BadRequestError):
        client.v1.contracts.list(customer_id="cus_acme", limit=21)


# --- balances -------------------------------------------------------------------------------


def test_balances_list_commits_and_credits_as_metronome_does(
    serve: Callable[..., Served], commit_db: Path
) -> None:
    client = serve(commit_db).client()
    client.v1.contracts.create(**SECOND_CONTRACT)

    customer_level = client.v1.contracts.list_balances(customer_id="cus_acme")
    every = list(
        client.v1.contracts.list_balances(
            customer_id="cus_acme", include_contract_balances=True, limit=1
        )
    )  # three pages
    raw = _exact(
        client.v1.contracts.with_raw_response.list_balances(
            customer_id="cus_acme",
            include_contract_balances=True,
            include_balance=True,
            include_ledgers=True,
        )
    )
    active = client.v1.contracts.list_balances(
        customer_id="cus_acme",
        include_contract_balances=True,
        covering_date="2024-08-15T00:00:00Z",
        exclude_zero_balances=True,
    )

    assert customer_level.data == []  # bulk_rating's commits and credits belong to contracts
    assert [(b.type, b.name) for b in every] == [
        ("PREPAID", "Prepaid usage 2024"),
        ("CREDIT", "Welcome credit"),
        ("PREPAID", "Prepaid commit"),
    ]
    prepaid, credit, upcoming = raw["data"]
    assert raw["next_page"] is None
    assert (prepaid["balance"], credit["balance"], upcoming["balance"]) == (12500, 1000.25, 0)
    assert [e["amount"] for e in prepaid["ledger"]] == [50000, -12500, -25000]
    assert credit["ledger"] == [
        {
            "type": "CREDIT_SEGMENT_START",
            "amount": Decimal("1000.25"),
            "timestamp": "2024-08-01T00:00:00Z",
            "segment_id": credit["access_schedule"]["schedule_items"][0]["id"],
        }
    ]
    assert upcoming["ledger"] == []  # its segment starts after the as-of day
    assert (
        '"balance":1000.25'
        in client.v1.contracts.with_raw_response.list_balances(
            customer_id="cus_acme", include_contract_balances=True, include_balance=True
        ).http_response.text
    )
    assert [b.id for b in active.data] == [prepaid["id"], credit["id"]]

    one = client.v1.contracts.list_balances(
        customer_id="cus_acme", id=credit["id"], include_contract_balances=True
    )
    assert [b.id for b in one.data] == [credit["id"]]
    with pytest.raises(metronome.NotFoundError):
        client.v1.contracts.list_balances(customer_id="cus_acme", id="commit_nothing")
    with pytest.raises(metronome.NotFoundError):
        client.v1.contracts.list_balances(customer_id="cus_nobody")
    with pytest.raises(metronome.BadRequestError):
        client.v1.contracts.list_balances(customer_id="cus_acme", limit=26)


def _cli_net(db: Path) -> dict[str, Decimal]:
    result = run_cli("balances", "--customer", "cus_acme", "--db", db, "--as-of", AS_OF, "--json")
    assert result.exit_code == 0, result.stderr
    return {n["credit_type_id"]: n["balance"] for n in result.json()["net_balance"]}


def test_the_net_balance_is_the_command_lines(
    serve: Callable[..., Served], commit_db: Path
) -> None:
    client = serve(commit_db).client()
    before = _exact(client.v1.contracts.with_raw_response.get_net_balance(customer_id="cus_acme"))
    assert before == {"data": {"balance": 12500, "credit_type_id": USD}}
    assert _cli_net(commit_db) == {USD: 12500}

    client.v1.contracts.create(**SECOND_CONTRACT)
    raw = client.v1.contracts.with_raw_response.get_net_balance(
        customer_id="cus_acme", credit_type_id=USD
    )
    assert '"balance":13500.25' in raw.http_response.text  # exact, never 13500.250000000002
    assert _exact(raw)["data"]["balance"] == _cli_net(commit_db)[USD] == Decimal("13500.25")

    def net(**params: Any) -> Decimal:
        answer = _exact(
            client.v1.contracts.with_raw_response.get_net_balance(customer_id="cus_acme", **params)
        )
        return Decimal(answer["data"]["balance"])

    assert net(filters=[{"balance_types": ["CREDIT"]}]) == Decimal("1000.25")
    assert net(filters=[{"ids": ["commit_acme_2024"]}]) == 12500
    assert net(filters=[{"custom_fields": {"campaign": "welcome"}}]) == Decimal("1000.25")
    assert net(filters=[{"balance_types": ["POSTPAID_COMMIT"]}, {"ids": ["nothing"]}]) == 0
    assert net(invoice_inclusion_mode="FINALIZED") == Decimal("13500.25")  # no draft drew any
    quantity = client.v1.contracts.get_net_balance(customer_id="cus_acme", access_type="QUANTITY")
    assert (quantity.data.balance, quantity.data.credit_type_id) == (0, NULL_CREDIT_TYPE)


def test_net_balance_errors(serve: Callable[..., Served], commit_db: Path) -> None:
    client = serve(commit_db).client()
    with pytest.raises(metronome.NotFoundError):
        client.v1.contracts.get_net_balance(customer_id="cus_nobody")
    with pytest.raises(metronome.NotFoundError) as unknown_unit:
        client.v1.contracts.get_net_balance(customer_id="cus_acme", credit_type_id="no-such-unit")
    assert "no-such-unit" in _error(unknown_unit)["message"]
    with pytest.raises(metronome.BadRequestError):
        client.v1.contracts.get_net_balance(
            customer_id="cus_acme", access_type="QUANTITY", credit_type_id=USD
        )
    with pytest.raises(metronome.BadRequestError) as bad_type:
        client.v1.contracts.get_net_balance(
            customer_id="cus_acme",
            filters=[{"balance_types": ["GIFT_CARD"]}],  # type: ignore[list-item]
        )
    assert _error(bad_type)["issues"][0]["field"] == "filters.0.balance_types.0"
