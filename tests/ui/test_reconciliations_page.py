"""The kept reconciliation runs on the Contracts page: listed, and each shown as the report the
run wrote (the same sections, word for word), in Chromium against a real server."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from tests.conftest import run_cli
from tests.scenarios.test_reconcile import data, legacy  # noqa: F401  (the fixtures)
from tests.ui.conftest import TOKEN, _serve

SECTIONS = "main > :not(h1):not(nav)"


def test_a_kept_reconciliation_reads_as_its_report(
    page: Page,
    data: Path,  # noqa: F811
    legacy: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.duckdb"
    assert run_cli("import", data, "--db", db, "--as-of", "2024-08-15").exit_code == 0
    out = tmp_path / "report"
    assert run_cli("reconcile", "--legacy", legacy, "--db", db, "--out", out).exit_code == 1
    page.goto((out / "report.html").as_uri())
    report = page.locator(SECTIONS).all_inner_texts()

    for site in _serve(db):
        page.goto(f"{site.base_url}/ui/reconciliations")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Reconciliations")
        expect(page.locator("main tbody tr")).to_have_count(1)
        expect(page.locator("main tbody tr td").nth(4)).to_have_text("5")  # differences

        page.click("main tbody tr a")

        expect(page.locator("h1")).to_have_text("Reconciliation 1")
        assert page.locator(SECTIONS).all_inner_texts() == report
        expect(page.locator("#invoices-MISSING_IN_LEGACY tr")).to_have_count(2)  # header, one
        expect(page.locator("svg.chart")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280

        page.goto(f"{site.base_url}/ui/reconciliations/2")
        expect(page.locator("h1")).to_have_text("Not found")
