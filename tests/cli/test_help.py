"""The help says what it is written to say: bracketed text (an extra's name, the variable an
option reads) is shown, not taken for terminal markup."""

from __future__ import annotations

from tests.conftest import run_process


def test_import_help_shows_bracketed_text() -> None:
    shown = run_process("import", "--help", env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "pip install 'bulk-rating[spark]'" in text
    assert "DuckDB file [env BULK_RATING_DB]" in text
    assert "holds [env BULK_RATING_WAIT]" in text
