"""The catalog through Metronome's SDK: customers, products, rate cards and their rates, credit
types; ids from content (a create sent again is the same object), stored objects immutable (a
rate card that contracts use cannot change), pages followed, exact prices, errors in Metronome's
shape; and the guide end to end on an empty store, through the SDK alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import metronome
import pytest
from metronome import Metronome
from tests.api.conftest import AS_OF, Served
from tests.conftest import SAMPLES, query, run_cli

from bulk_rating.models import USD_CENTS_ID

USD = {"id": USD_CENTS_ID, "name": "USD (cents)"}
JAN = "2024-01-01T00:00:00Z"


def _raw(response: Any) -> Any:
    """The answer's JSON with every number a Decimal, as sent (never through a float)."""
    return json.loads(response.http_response.text, parse_float=Decimal)


def _issues(error: metronome.APIStatusError) -> list[tuple[str, str | None]]:
    body = error.body
    assert isinstance(body, dict)
    return sorted((i["code"], i.get("field")) for i in body["issues"])


@pytest.fixture
def client(serve: Callable[..., Served]) -> Metronome:
    """A client of a server on an empty store (no file yet)."""
    return serve().client()


def _catalog(client: Metronome) -> tuple[str, str]:
    """A product and an unused rate card on the store; their ids."""
    product = client.v1.contracts.products.create(name="API calls", type="USAGE", tags=["api"])
    card = client.v1.contracts.rate_cards.create(name="Standard", description="List prices")
    return product.data.id, card.data.id


# --- customers ----------------------------------------------------------------------------------


def test_customers_are_created_with_ids_from_their_content_listed_in_pages_and_retrieved(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    client = served.client()
    assert list(client.v1.customers.list()) == []  # an empty store, not an error

    created = client.v1.customers.with_raw_response.create(
        name="Acme Corporation", custom_fields={"crm_id": "0015g00000Acme"}
    )
    acme = created.parse().data
    again = client.v1.customers.create(
        name="Acme Corporation", custom_fields={"crm_id": "0015g00000Acme"}
    )
    others = [client.v1.customers.create(name=f"Customer {n}").data.id for n in range(3)]

    assert _raw(created) == {
        "data": {
            "id": acme.id,
            "external_id": acme.id,
            "ingest_aliases": [],
            "name": "Acme Corporation",
            "custom_fields": {"crm_id": "0015g00000Acme"},
        }
    }
    assert again.data.id == acme.id  # a retried create names the same customer
    assert query(served.db, "SELECT count(*) FROM customers") == [(4,)]

    first = client.v1.customers.list(limit=3)
    assert [c.id for c in first.data] == [acme.id, *others[:2]]  # in the order stored
    assert first.next_page == "3"
    listed = list(client.v1.customers.list(limit=3))  # the SDK follows next_page
    assert [c.id for c in listed] == [acme.id, *others]
    chosen = client.v1.customers.list(customer_ids=[others[2], acme.id])
    assert sorted(c.id for c in chosen) == sorted([others[2], acme.id])
    assert list(client.v1.customers.list(only_archived=True)) == []

    detail = client.v1.customers.retrieve(customer_id=acme.id).data
    assert (detail.name, detail.custom_fields, detail.ingest_aliases) == (
        "Acme Corporation",
        {"crm_id": "0015g00000Acme"},
        [],
    )
    assert detail.created_at == detail.updated_at  # stored objects do not change
    with pytest.raises(metronome.NotFoundError) as missing:
        client.v1.customers.retrieve(customer_id="cus_nobody")
    assert "cus_nobody" in missing.value.body["message"]  # type: ignore[index]


def test_a_customers_fields_not_modelled_yet_are_named_never_ignored(client: Metronome) -> None:
    with pytest.raises(metronome.BadRequestError) as refused:
        client.v1.customers.create(name="Acme", ingest_aliases=["acme-prod"])
    body = refused.value.body
    assert isinstance(body, dict)
    assert [i["message"] for i in body["issues"]] == ["`ingest_aliases` is not supported yet"]
    assert refused.value.response.headers["x-should-retry"] == "false"


# --- products -----------------------------------------------------------------------------------


def test_products_are_created_retrieved_and_listed_in_pages(serve: Callable[..., Served]) -> None:
    served = serve()
    client = served.client()
    made = [
        client.v1.contracts.products.create(
            name="Compute (vCPU-hours)",
            type="USAGE",
            tags=["compute"],
            pricing_group_key=["region"],
            custom_fields={"sku": "C-1"},
        ).data.id,
        client.v1.contracts.products.create(name="Storage", type="usage").data.id,
        client.v1.contracts.products.create(name="Onboarding", type="PROFESSIONAL_SERVICE").data.id,
    ]
    assert client.v1.contracts.products.create(name="Storage", type="usage").data.id == made[1]

    one = client.v1.contracts.products.retrieve(id=made[0]).data
    assert (one.type, one.current.name, one.current.tags, one.current.pricing_group_key) == (
        "USAGE",
        "Compute (vCPU-hours)",
        ["compute"],
        ["region"],
    )
    assert one.initial == one.current
    assert (one.updates, one.custom_fields) == ([], {"sku": "C-1"})

    page = client.v1.contracts.products.list(limit=2)
    assert ([p.id for p in page.data], page.next_page) == (made[:2], "2")
    listed = list(client.v1.contracts.products.list(limit=2))
    assert [p.id for p in listed] == made
    assert listed[2].type == "PRO_SERVICE"  # Metronome's read name for PROFESSIONAL_SERVICE
    assert list(client.v1.contracts.products.list(archive_filter="ARCHIVED")) == []
    assert len(list(client.v1.contracts.products.list(archive_filter="ALL"))) == 3
    assert query(served.db, "SELECT count(*) FROM products") == [(3,)]


# --- rate cards and rates -----------------------------------------------------------------------


def test_rates_flat_and_tiered_are_added_and_read_back_exactly_in_pages(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    client = served.client()
    product, card = _catalog(client)
    storage = client.v1.contracts.products.create(name="Storage", type="USAGE").data.id
    compute = client.v1.contracts.products.create(
        name="Compute", type="USAGE", pricing_group_key=["region"]
    ).data.id
    rates = client.v1.contracts.rate_cards.rates

    flat = rates.with_raw_response.add(
        rate_card_id=card,
        product_id=product,
        entitled=True,
        rate_type="FLAT",
        starting_at=JAN,
        ending_before="2024-07-01T00:00:00Z",
        price="1234.5678901234",  # type: ignore[arg-type]  # more digits than a float keeps
    )
    many = rates.add_many(
        rate_card_id=card,
        rates=[
            {
                "product_id": product,
                "entitled": True,
                "rate_type": "FLAT",
                "starting_at": "2024-07-01T00:00:00Z",
                "price": 0.1,
            },
            {
                "product_id": storage,
                "entitled": True,
                "rate_type": "TIERED",
                "starting_at": JAN,
                "tiers": [{"size": 1000, "price": 2.5}, {"price": 1.75}],
            },
            {
                "product_id": compute,
                "entitled": True,
                "rate_type": "FLAT",
                "starting_at": JAN,
                "price": 4.8,
                "pricing_group_values": {"region": "us-east-1"},
            },
            {
                "product_id": compute,
                "entitled": True,
                "rate_type": "FLAT",
                "starting_at": JAN,
                "price": 5.6,
                "pricing_group_values": {"region": "eu-west-1"},
            },
        ],
    )

    assert _raw(flat) == {
        "data": {"rate_type": "FLAT", "credit_type": USD, "price": Decimal("1234.5678901234")}
    }
    assert many.data.id == card
    assert query(served.db, "SELECT count(*) FROM rates WHERE rate_card_id = ?", [card]) == [(5,)]

    def page(at: str, limit: int, next_page: str | None = None, **given: Any) -> Any:
        return _raw(
            rates.with_raw_response.list(
                rate_card_id=card,
                at=at,
                limit=limit,
                **({"next_page": next_page} if next_page else {}),
                **given,
            )
        )

    first = page(JAN, 2)
    second = page(JAN, 2, first["next_page"])
    third = page(JAN, 2, second["next_page"])
    rows = first["data"] + second["data"] + third["data"]
    assert (first["next_page"], second["next_page"], third["next_page"]) == ("2", "4", None)
    assert [(r["product_id"], r["rate"].get("price")) for r in rows] == [
        (product, Decimal("1234.5678901234")),
        (product, Decimal("0.1")),
        (storage, None),
        (compute, Decimal("4.8")),
        (compute, Decimal("5.6")),
    ]
    assert rows[2]["rate"] == {
        "rate_type": "TIERED",
        "credit_type": USD,
        "tiers": [{"price": Decimal("2.5"), "size": 1000}, {"price": Decimal("1.75")}],
    }
    assert (rows[0]["product_name"], rows[0]["product_tags"], rows[0]["ending_before"]) == (
        "API calls",
        ["api"],
        "2024-07-01T00:00:00Z",
    )
    # a rate that ended by `at` is not in the schedule; the SDK validates every row strictly
    later = list(rates.list(rate_card_id=card, at="2024-08-01T00:00:00Z", limit=1))
    assert [(r.product_id, r.rate.price) for r in later][:2] == [(product, 0.1), (storage, None)]
    assert len(later) == 4
    chosen = rates.list(
        rate_card_id=card,
        at=JAN,
        selectors=[{"pricing_group_values": {"region": "eu-west-1"}}, {"product_id": storage}],
    )
    assert [(r.product_id, r.pricing_group_values) for r in chosen] == [
        (storage, None),
        (compute, {"region": "eu-west-1"}),
    ]
    tagged = rates.list(rate_card_id=card, at=JAN, selectors=[{"product_tags": ["api", "x"]}])
    assert [r.product_id for r in tagged] == [product, product]


def test_rate_cards_are_created_retrieved_and_listed_with_an_empty_body(
    client: Metronome,
) -> None:
    custom = client.v1.pricing_units.create(name="AI credits").data.id
    first = client.v1.contracts.rate_cards.create(name="Standard", description="List prices")
    second = client.v1.contracts.rate_cards.with_raw_response.create(
        name="Credits",
        credit_type_conversions=[{"custom_credit_type_id": custom, "fiat_per_custom_credit": 2.5}],
        custom_fields={"tier": "gold"},
    )

    got = client.v1.contracts.rate_cards.retrieve(id=second.parse().data.id).data
    assert (got.name, got.custom_fields, got.fiat_credit_type) == (
        "Credits",
        {"tier": "gold"},
        metronome.types.shared.CreditTypeData(**USD),
    )
    assert [
        (c.custom_credit_type.name, c.fiat_per_custom_credit)
        for c in got.credit_type_conversions or []
    ] == [("AI credits", "2.5")]
    page = client.v1.contracts.rate_cards.list(limit=1)  # POST, paging in the query, no body
    assert [c.id for c in page.data] == [first.data.id]
    assert [c.name for c in client.v1.contracts.rate_cards.list(limit=1)] == ["Standard", "Credits"]


# --- credit types -------------------------------------------------------------------------------


def test_credit_types_list_usd_then_the_custom_ones_in_pages(client: Metronome) -> None:
    made = client.v1.pricing_units.create(name="AI credits")
    again = client.v1.pricing_units.create(name="AI credits")
    other = client.v1.pricing_units.create(name="GPU hours")

    first = client.v1.pricing_units.list(limit=2)
    listed = list(client.v1.pricing_units.list(limit=2))

    assert again.data.id == made.data.id
    assert (len(first.data), first.next_page) == (2, "2")
    assert [(c.id, c.name, c.is_currency) for c in listed] == [
        (USD_CENTS_ID, "USD (cents)", True),
        (made.data.id, "AI credits", False),
        (other.data.id, "GPU hours", False),
    ]


# --- immutability -------------------------------------------------------------------------------


def test_rates_change_an_unused_rate_card_and_a_retried_add_is_not_added_twice(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    client = served.client()
    product, card = _catalog(client)
    rate: dict[str, Any] = {
        "product_id": product,
        "entitled": True,
        "rate_type": "FLAT",
        "starting_at": JAN,
        "price": 1250,
    }
    client.v1.contracts.rate_cards.rates.add(rate_card_id=card, **rate)
    client.v1.contracts.rate_cards.rates.add(rate_card_id=card, **rate)  # a retry
    # a create sent again after the card changed names the same card, still changed
    again = client.v1.contracts.rate_cards.create(name="Standard", description="List prices")

    assert again.data.id == card
    assert query(served.db, "SELECT count(*), any_value(price) FROM rates") == [(1, Decimal(1250))]
    (body,) = query(served.db, "SELECT body FROM rate_cards")[0]
    assert [r["price"] for r in json.loads(body)["rates"]] == ["1250"]
    with pytest.raises(metronome.BadRequestError) as overlapping:  # the card checked as a whole
        client.v1.contracts.rate_cards.rates.add(rate_card_id=card, **{**rate, "price": 1300})
    assert [code for code, _ in _issues(overlapping.value)] == ["RATE_OVERLAP"]


def test_a_rate_card_that_a_contract_uses_cannot_change(serve: Callable[..., Served]) -> None:
    served = serve()
    client = served.client()
    product, card = _catalog(client)
    customer = client.v1.customers.create(name="Acme").data.id
    client.v1.contracts.rate_cards.rates.add(
        rate_card_id=card,
        product_id=product,
        entitled=True,
        rate_type="FLAT",
        starting_at=JAN,
        ending_before="2025-01-01T00:00:00Z",
        price=1250,
    )
    contract = client.v1.contracts.create(
        customer_id=customer,
        rate_card_id=card,
        starting_at="2024-06-01T00:00:00Z",
        usage_statement_schedule={"frequency": "MONTHLY"},
    ).data.id
    before = query(
        served.db, "SELECT body FROM rate_cards UNION ALL SELECT count(*)::VARCHAR FROM rates"
    )

    with pytest.raises(metronome.ConflictError) as refused:
        client.v1.contracts.rate_cards.rates.add(
            rate_card_id=card,
            product_id=product,
            entitled=True,
            rate_type="FLAT",
            starting_at="2025-01-01T00:00:00Z",
            price=1300,
        )
    with pytest.raises(metronome.ConflictError):
        client.v1.contracts.rate_cards.rates.add_many(
            rate_card_id=card,
            rates=[
                {
                    "product_id": product,
                    "entitled": True,
                    "rate_type": "FLAT",
                    "starting_at": "2025-01-01T00:00:00Z",
                    "price": 1300,
                }
            ],
        )

    body = refused.value.body
    assert isinstance(body, dict)
    assert contract in body["message"]
    assert "reprice" in body["message"]
    assert [i["code"] for i in body["issues"]] == ["CATALOG_CONFLICT"]
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert (
        query(
            served.db, "SELECT body FROM rate_cards UNION ALL SELECT count(*)::VARCHAR FROM rates"
        )
        == before
    )


def test_a_conflict_is_final_but_a_database_held_elsewhere_is_worth_retrying(
    serve: Callable[..., Served],
) -> None:
    """Both are 409: CATALOG_CONFLICT says `x-should-retry: false`; a database another process
    holds does not (it is released in time, so the SDK's retries may succeed)."""
    served = serve()
    client = served.client()
    client.v1.customers.create(name="Acme")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; con = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " sys.stdin.readline()",
            str(served.db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(metronome.ConflictError) as locked:
            client.v1.customers.list()
    finally:
        holder.communicate("\n", timeout=30)

    assert [i["code"] for i in locked.value.body["issues"]] == ["DATABASE_LOCKED"]  # type: ignore[index]
    assert "x-should-retry" not in locked.value.response.headers
    assert [c.name for c in client.v1.customers.list()] == ["Acme"]


# --- errors -------------------------------------------------------------------------------------


def test_unknown_ids_are_404(client: Metronome) -> None:
    product, card = _catalog(client)
    calls: list[Callable[[], object]] = [
        lambda: client.v1.contracts.products.retrieve(id="nothing"),
        lambda: client.v1.contracts.rate_cards.retrieve(id="nothing"),
        lambda: client.v1.contracts.rate_cards.rates.list(rate_card_id="nothing", at=JAN),
        lambda: client.v1.contracts.rate_cards.rates.add(
            rate_card_id="nothing",
            product_id=product,
            entitled=True,
            rate_type="FLAT",
            starting_at=JAN,
            price=1,
        ),
        lambda: client.v1.customers.retrieve(customer_id=card),  # an id of another kind
    ]
    for call in calls:
        with pytest.raises(metronome.NotFoundError) as missing:
            call()
        assert "nothing" in str(missing.value.body) or card in str(missing.value.body)


def test_a_bad_body_is_a_400_listing_every_problem_and_writes_nothing(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    client = served.client()
    product, card = _catalog(client)
    before = query(served.db, "SELECT count(*) FROM _runs")

    with pytest.raises(metronome.BadRequestError) as product_problems:
        client.v1.contracts.products.create(
            name=7,  # type: ignore[arg-type]
            type="GADGET",  # type: ignore[arg-type]
            quantity_rounding={"decimal_places": 0, "rounding_method": "ROUND_UP"},
        )
    with pytest.raises(metronome.BadRequestError) as rate_problems:
        client.v1.contracts.rate_cards.rates.add_many(
            rate_card_id=card,
            rates=[
                {
                    "product_id": "prod_nothing",
                    "entitled": True,
                    "rate_type": "FLAT",
                    "starting_at": JAN,
                    "price": -1,
                },
                {
                    "product_id": product,
                    "entitled": True,
                    "rate_type": "TIERED",
                    "starting_at": JAN,
                    "tiers": [{"price": 1}, {"price": 2}],
                },
            ],
        )
    with pytest.raises(metronome.BadRequestError) as typo:
        client.v1.contracts.rate_cards.rates.add(
            rate_card_id=card,
            product_id=product,
            entitled=True,
            rate_type="FLAT",
            starting_at=JAN,
            price=1,
            extra_body={"prise": 2},
        )
    with pytest.raises(metronome.BadRequestError) as percentage:
        client.v1.contracts.rate_cards.rates.add(
            rate_card_id=card,
            product_id=product,
            entitled=True,
            rate_type="PERCENTAGE",
            starting_at=JAN,
        )
    with pytest.raises(metronome.BadRequestError) as no_at:
        client.v1.contracts.rate_cards.rates.list(
            rate_card_id=card,
            at="2024-01-01T00:00:00",  # no offset
        )
    with pytest.raises(metronome.BadRequestError) as given_id:
        client.v1.customers.create(name="Acme", extra_body={"id": "cus_mine"})
    with pytest.raises(metronome.BadRequestError) as with_rates:
        client.v1.contracts.rate_cards.create(name="Inline", extra_body={"rates": []})
    for bad_page in ({"limit": 0}, {"limit": 101}, {"next_page": "abc"}):
        with pytest.raises(metronome.BadRequestError):
            client.v1.contracts.products.list(**bad_page)  # type: ignore[arg-type]

    product_body = product_problems.value.body
    assert isinstance(product_body, dict)
    assert "3 problems found" in product_body["message"]
    assert _issues(product_problems.value) == [
        ("INVALID_VALUE", "name"),
        ("INVALID_VALUE", "type"),
        ("UNKNOWN_FIELD", "quantity_rounding"),
    ]
    assert "`quantity_rounding` is not supported yet" in str(product_body)
    assert _issues(rate_problems.value) == [
        ("INVALID_RATE", "price"),
        ("INVALID_RATE", "tiers"),
        ("UNKNOWN_PRODUCT", "product_id"),
    ]
    assert _issues(typo.value) == [("UNKNOWN_FIELD", "prise")]
    assert "`PERCENTAGE` is not supported yet" in str(percentage.value.body)
    assert _issues(no_at.value) == [("TIMESTAMP_WITHOUT_OFFSET", "at")]
    assert "given by the API" in str(given_id.value.body)
    assert "addRate" in str(with_rates.value.body)
    assert query(served.db, "SELECT count(*) FROM _runs") == before


# --- reading a catalog imported from files ------------------------------------------------------


def test_a_catalog_imported_from_files_reads_back_through_the_api(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    db = tmp_path / "acme.duckdb"
    assert run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", AS_OF).exit_code == 0
    client = serve(db).client()

    assert [c.id for c in client.v1.customers.list()] == ["cus_acme"]
    assert [p.id for p in client.v1.contracts.products.list()] == [
        "prod_api_calls",
        "prod_compute",
        "prod_storage",
    ]
    storage = client.v1.contracts.rate_cards.rates.list(
        rate_card_id="rc_standard_2024", at=JAN, selectors=[{"product_id": "prod_storage"}]
    )
    (row,) = storage.data
    assert [(t.size, t.price) for t in row.rate.tiers or []] == [(1000, 2.5), (None, 1.75)]
    with pytest.raises(metronome.ConflictError):  # con_acme_2024 uses it
        client.v1.contracts.rate_cards.rates.add(
            rate_card_id="rc_standard_2024",
            product_id="prod_api_calls",
            entitled=True,
            rate_type="FLAT",
            starting_at="2030-01-01T00:00:00Z",
            price=1,
        )


# --- the guide, end to end ----------------------------------------------------------------------


def test_the_guide_runs_end_to_end_through_the_sdk_on_an_empty_store(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Customer, product, rate card and rate, contract, preview, import, invoices: no file but
    the store, and the same invoices as the command line's import of data/samples/acme."""
    served = serve(tmp_path / "guide.duckdb")
    client = served.client()
    assert not served.db.exists()

    customer = client.v1.customers.create(
        name="Acme Corporation", custom_fields={"crm_id": "0015g00000Acme"}
    ).data.id
    product = client.v1.contracts.products.create(
        name="API calls (thousands)", type="USAGE", tags=["api"]
    ).data.id
    card = client.v1.contracts.rate_cards.create(
        name="Standard 2024", description="List prices in USD cents"
    ).data.id
    client.v1.contracts.rate_cards.rates.add(
        rate_card_id=card,
        product_id=product,
        entitled=True,
        rate_type="FLAT",
        starting_at=JAN,
        price=1250,
    )
    contract = client.v1.contracts.create(
        customer_id=customer,
        rate_card_id=card,
        starting_at="2024-06-01T00:00:00Z",
        name="Acme usage contract",
        usage_statement_schedule={
            "frequency": "MONTHLY",
            "invoice_generation_starting_at": "2024-08-01T00:00:00Z",
        },
    ).data.id
    history = json.loads((SAMPLES / "acme" / "invoices.json").read_text())["invoices"]
    for sent in history:
        sent.update(customer_id=customer, contract_id=contract)
        for line in sent["usage_line_items"]:
            line["product_id"] = product

    previewed = client.v1.contracts.create_historical_invoices(invoices=history, preview=True)
    imported = _raw(
        client.v1.contracts.with_raw_response.create_historical_invoices(
            invoices=history, preview=False
        )
    )
    listed = list(client.v1.customers.invoices.list(customer_id=customer))

    cli = run_cli(
        "import", SAMPLES / "acme", "--db", tmp_path / "cli.duckdb", "--as-of", AS_OF, "--json"
    )
    expected = json.loads(cli.stdout, parse_float=Decimal)["data"]

    def essence(invoice: dict[str, Any]) -> Any:
        return (
            invoice["start_timestamp"],
            invoice["end_timestamp"],
            invoice["status"],
            invoice["total"],
            [
                (li["name"], li["quantity"], li["unit_price"], li["total"])
                for li in invoice["line_items"]
            ],
        )

    assert [i.total for i in previewed.data] == [12500, 25000]
    assert [i["total"] for i in imported["data"]] == [12500, 25000]
    assert [essence(i) for i in imported["data"]] == [essence(i) for i in expected]
    assert [(i.start_timestamp.month, i.status, i.total) for i in listed] == [  # type: ignore[union-attr]
        (6, "FINALIZED", 12500),
        (7, "FINALIZED", 25000),
        (8, "DRAFT", 0),
    ]
