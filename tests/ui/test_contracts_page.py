"""Customer -> contract -> invoice -> breakdown in Chromium: what the pages show is what the
API's services answer (the same reads), money formatted once, and the token guards every page."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from tests.conftest import run_cli
from tests.ui.conftest import TOKEN, Site, _serve

from bulk_rating import samples, services
from bulk_rating.markup import DASH
from bulk_rating.models import BalanceFilter
from bulk_rating.money import exact_money, format_decimal, format_money


def _log_in(page: Page, site: Site, token: str = TOKEN) -> None:
    page.goto(f"{site.base_url}/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.fill("#token", token)
    page.click("button[type=submit]")


def _shown(page: Page, selector: str, amount: Any, credit_type: dict[str, Any]) -> None:
    """The money at `selector` is the amount for people, the exact amount on hover."""
    money = page.locator(selector).first
    expect(money).to_have_text(
        format_money(Decimal(str(amount)), credit_type["id"], credit_type["name"])
    )
    expect(money).to_have_attribute("title", exact_money(Decimal(str(amount)), credit_type["name"]))


def test_customer_contract_invoice_and_breakdown_match_the_api(page: Page, site: Site) -> None:
    settings = site.settings
    _log_in(page, site)
    expect(page.locator("h1")).to_have_text("Customers")
    page.fill("input[name=q]", "acme")
    page.click("form.search button")
    customer = services.customers(settings=settings).data[0]
    page.click(f"text={customer['name']}")
    expect(page.locator("h1")).to_have_text(customer["name"])

    contract = services.customer_contracts(
        customer["id"], include_balance=True, settings=settings
    ).data[0]
    page.click(f"text={contract['current']['name']}")
    expect(page.locator("h1")).to_have_text(contract["current"]["name"])
    expect(page.locator("dd").nth(3)).to_have_text(
        contract["current"]["usage_statement_schedule"]["frequency"]
    )
    expect(page.locator("dd").nth(4)).to_have_text("2024-08-01")  # invoice generation from

    commits = [*contract["current"]["commits"], *contract["current"]["credits"]]
    if commits:  # the net balance is getNetBalance's over the contract's commits and credits
        kind = commits[0]["access_schedule"]["credit_type"]
        net = services.net_balance(
            customer["id"],
            credit_type_id=kind["id"],
            filters=[BalanceFilter(ids=[c["id"] for c in commits])],
            settings=settings,
        )
        _shown(page, "#net-balance .money", net.balance, kind)
        segments = services.customer_balances(customer["id"], settings=settings).segments
        remaining = segments["remaining"].to_list()
        rows = page.locator("table").nth(1).locator("tbody tr")
        expect(rows).to_have_count(len(remaining))
        _shown(page, "table >> nth=1 >> tbody tr >> td:nth-child(5) .money", remaining[0], kind)
    else:
        expect(page.locator("#net-balance")).to_have_text("no commits or credits")

    invoices = services.customer_invoices(customer["id"], settings=settings).data
    expect(page.locator("table").first.locator("tbody tr")).to_have_count(len(invoices))
    for invoice in invoices:
        row = f'tr:has(a[href$="/invoices/{invoice["id"]}"])'
        _shown(page, f"{row} td:nth-child(5) .money", invoice["total"], invoice["credit_type"])
        origin = "Imported" if invoice["origin"] == "HISTORICAL_IMPORT" else "Generated"
        expect(page.locator(f"{row} td:nth-child(4)")).to_have_text(origin)
        expect(page.locator(f"{row} td:nth-child(3)")).to_have_text(invoice["status"])

    june = invoices[0]
    page.click(f'a[href$="/invoices/{june["id"]}"]')
    expect(page.locator("h1")).to_have_text("Invoice 2024-06-01 \u2013 2024-07-01")
    _shown(page, "#invoice-total .money", june["total"], june["credit_type"])
    lines = page.locator("table").first.locator("tbody tr")
    expect(lines).to_have_count(len(june["line_items"]))
    for n, line in enumerate(june["line_items"]):
        _shown(
            page,
            f"table >> nth=0 >> tbody tr >> nth={n} >> td:nth-child(6) .money",
            line["total"],
            line["credit_type"],
        )

    windows = [
        w
        for w in services.customer_invoice_breakdowns(
            customer["id"],
            starting_on=datetime.fromisoformat(june["start_timestamp"]),
            ending_before=datetime.fromisoformat(june["end_timestamp"]),
            limit=100,
            settings=settings,
        ).data
        if w["id"] == june["id"]
    ]
    bars = page.locator("svg.chart rect.bar")
    expect(bars).to_have_count(len(windows))
    assert len(windows) == 30  # June, day by day
    shown = [bars.nth(n).get_attribute("data-total") for n in range(len(windows))]
    assert shown == [format_decimal(Decimal(str(w["total"]))) for w in windows]
    assert sum(Decimal(t or "0") for t in shown) == Decimal(str(june["total"]))

    page.click("text=hourly")
    expect(page.locator("svg.chart rect.bar")).to_have_count(30 * 24)


def test_a_wrong_token_is_refused(page: Page, site: Site) -> None:
    _log_in(page, site, token="not-the-token")
    expect(page.locator(".error")).to_have_text("That token is not accepted.")
    page.goto(f"{site.base_url}/ui/customers/cus_acme")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fcustomers%2Fcus_acme$"))
    assert page.context.cookies() == []


def test_the_cookie_opens_the_pages_only(site: Site) -> None:
    with httpx.Client(base_url=site.base_url, follow_redirects=False) as client:
        # the cookie sent by hand (the client keeps none: each request says what it carries)
        assert client.get("/ui/").status_code == 303
        refused = client.post("/ui/login", data={"token": "nope", "next": "/ui/"})
        assert refused.status_code == 401
        logged = client.post("/ui/login", data={"token": TOKEN, "next": "//elsewhere.example"})
        assert logged.status_code == 303
        assert logged.headers["location"] == "/ui/"  # never elsewhere
        cookie = logged.headers["set-cookie"]
        for attribute in ("HttpOnly", "Path=/ui", "SameSite=strict"):
            assert attribute in cookie
        sent = {"cookie": f"bulk_rating_token={logged.cookies['bulk_rating_token']}"}
        client.cookies.clear()
        opened = client.get("/ui/customers/cus_acme", headers=sent)
        assert opened.status_code == 200
        assert "Acme Corporation" in opened.text
        api = client.get("/v1/customers", headers=sent)
        assert api.status_code == 401  # the API wants the header, never the cookie


def test_every_value_is_escaped(page: Page, site: Site) -> None:
    name = '<img src=x onerror="document.title=1">Bobby & Co'
    with httpx.Client(base_url=site.base_url) as client:
        made = client.post(
            "/v1/customers", json={"name": name}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert made.status_code == 200, made.text
    _log_in(page, site)
    page.fill("input[name=q]", "bobby")
    page.click("form.search button")
    expect(page.locator("table a")).to_have_text(name)
    expect(page.locator("table img")).to_have_count(0)


def test_many_customers_are_paged_and_searched_in_the_store(
    page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("many") / "set"
    written = samples.generate(directory, customers=230, products=3, months=1, seed=3)
    db = directory.parent / "many.duckdb"
    assert run_cli("import", directory, "--db", db, "--as-of", written["as_of"]).exit_code == 0
    for site in _serve(db):
        _log_in(page, site)
        expect(page.locator("p.muted")).to_have_text(f"1{DASH}100 of 230 customers")
        expect(page.locator("main tbody tr")).to_have_count(100)
        page.click("text=next →")
        expect(page.locator("p.muted")).to_have_text(f"101{DASH}200 of 230 customers")
        page.click("text=next →")
        expect(page.locator("main tbody tr")).to_have_count(30)
        expect(page.locator("text=next →")).to_have_count(0)
        page.fill("input[name=q]", "CUS_02")
        page.click("form.search button")
        expect(page.locator("p.muted")).to_have_text("31 customers matching “CUS_02”")
        expect(page.locator("main tbody tr").first).to_contain_text("cus_0200")
