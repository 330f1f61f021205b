"""report.html in Chromium, opened as a file: it fits a 1280 px screen (no horizontal scrolling),
the chart included, whatever the number of invoices, and renders with nothing fetched."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from tests.scenarios.test_reconcile_report import scenario

from bulk_rating import services


def test_the_report_fits_1280_pixels_and_renders_offline(page: Page, tmp_path: Path) -> None:
    result, periods = scenario(extra=240, missing=40)
    services.Reconciled(result, periods).write(tmp_path / "out")
    report = tmp_path / "out" / "report.html"
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(report.as_uri())

    expect(page.locator("h1")).to_have_text("Reconciliation: legacy against a preview")
    expect(page.locator("svg.chart")).to_be_visible()
    expect(page.locator("#invoices-PERIOD_MISMATCH tr")).to_have_count(2)  # header and one pair
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    box = page.locator("svg.chart").bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 1280
    assert requests == [report.as_uri()]  # nothing fetched but the file itself
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
