"""Ids made in SQL and in Python for the same key are the same id."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_rating.balances import stable_id
from bulk_rating.store import Store


@settings(max_examples=25, deadline=None)
@given(keys=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=20))
def test_the_store_macro_and_python_give_the_same_stable_id(keys: list[str]) -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        Store.open(Path(scratch) / "ids.duckdb") as store,
    ):
        made = store.rows("SELECT k, stable_id(k) AS id FROM unnest(?::VARCHAR[]) t(k)", [keys])
    assert [row["id"] for row in made] == [stable_id(key) for key in keys]


def test_a_stable_id_is_the_md5_digest_written_as_a_uuid() -> None:
    # md5("abc") = 900150983cd24fb0d6963f7d28e17f72 (RFC 1321, appendix A.5)
    with (
        tempfile.TemporaryDirectory() as scratch,
        Store.open(Path(scratch) / "ids.duckdb") as store,
    ):
        made = store.scalar("SELECT stable_id('abc')")
    assert made == "90015098-3cd2-4fb0-d696-3f7d28e17f72" == stable_id("abc")
