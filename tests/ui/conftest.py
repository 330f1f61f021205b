"""The Contracts page in a real browser: Debian's Chromium driven by Playwright (which never
downloads a browser), against a real server on 127.0.0.1 over a store the CLI imported."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from tests.conftest import SAMPLES, run_cli, running_server

from bulk_rating.server import create_app
from bulk_rating.settings import Settings

TOKEN = "ui-test-token-7d2a"
AS_OF = "2024-08-15"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Site:
    base_url: str
    settings: Settings


def _serve(db: Path) -> Iterator[Site]:
    settings = Settings(db=db, as_of=AS_OF)
    with running_server(create_app(settings, [TOKEN])) as base_url:
        yield Site(base_url, settings)


@pytest.fixture(scope="module", params=["acme-commit", "acme-daily"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A server on a store `bulk-rating import` made from one acme sample."""
    db = tmp_path_factory.mktemp("ui") / "ui.duckdb"
    imported = run_cli("import", SAMPLES / request.param, "--db", db, "--as-of", AS_OF)
    assert imported.exit_code == 0, imported.stderr
    yield from _serve(db)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it (apt-get, as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser page at 1280px (no cookie); on failure, a screenshot in the test's tmp."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    called = getattr(request.node, "report_call", None)
    if called is not None and called.failed:
        shot = tmp_path / "failure.png"
        opened.screenshot(path=str(shot), full_page=True)
        sys.stderr.write(f"screenshot of the failure: {shot}\n")
    context.close()
