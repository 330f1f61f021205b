from __future__ import annotations

from tests.conftest import ROOT

from bulk_rating.errors import ISSUE_CODES


def test_every_error_code_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [code for code in ISSUE_CODES if f"`{code}`" not in readme]
    assert missing == []
