"""Wrong money, lost invoices, someone else's data: the cases that must never happen silently.

Each case asserts the exit code, that no traceback or internal error appears, what the message
names, and that a refused run leaves the database file and its WAL byte for byte as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from tests.adversarial.conftest import ACME_AS_OF, Snapshot, assert_clean, copy_sample
from tests.conftest import SAMPLES, acme, query, run_cli, run_process, write_dataset


def _beta(files: dict[str, Any], *, price: int | None = None, start: str | None = None) -> None:
    """acme's files as another customer's: contract `con_beta` on rate card `rc_beta`."""
    files["catalog"]["customers"][0]["id"] = "cus_beta"
    card = files["catalog"]["rate_cards"][0]
    card["id"] = "rc_beta"
    for rate in card["rates"]:
        if price is not None and "price" in rate:
            rate["price"] = price
    contract = files["contracts"][0]
    contract.update(id="con_beta", customer_id="cus_beta", rate_card_id="rc_beta")
    if start is not None:
        contract["starting_at"] = start
    for invoice in files["invoices"]["invoices"]:
        invoice.update(customer_id="cus_beta", contract_id="con_beta")


def _import(*args: str | Path) -> Any:
    return run_cli("import", *args, "--as-of", ACME_AS_OF)


# --- 1. wrong money, silently ---------------------------------------------------------------


def test_the_same_contract_id_with_other_content_in_two_data_sets_is_a_conflict(
    stored: Path, tmp_path: Path
) -> None:
    first, second = acme(), acme()
    _beta(first)
    _beta(second, price=99_999, start="2024-05-01T00:00:00Z")
    before = Snapshot.of(stored)

    result = _import(
        write_dataset(tmp_path / "a", first), write_dataset(tmp_path / "b", second), "--db", stored
    )

    assert_clean(result, 1, "CATALOG_CONFLICT", "rc_beta", "con_beta", str(tmp_path / "b"))
    assert before.unchanged()


def test_two_data_sets_with_different_contracts_import_both(db: Path, tmp_path: Path) -> None:
    beta = acme()
    _beta(beta)
    a = copy_sample("acme", tmp_path / "a")
    b = write_dataset(tmp_path / "b", beta)

    result = _import(a, b, "--db", db, "--json")

    assert_clean(result, 0)
    totals = query(
        db,
        "SELECT contract_id, strftime(start_timestamp, '%m'), total FROM invoices"
        " WHERE origin = 'HISTORICAL_IMPORT' ORDER BY 1, 2",
    )
    assert [(c, m, int(t)) for c, m, t in totals] == [
        ("con_acme_2024", "06", 12_500),
        ("con_acme_2024", "07", 25_000),
        ("con_beta", "06", 12_500),
        ("con_beta", "07", 25_000),
    ]


def test_the_same_objects_in_two_data_sets_are_kept_once(db: Path, tmp_path: Path) -> None:
    a = copy_sample("acme", tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    for name in ("catalog.json", "contracts.json"):
        shutil.copy(a / name, b / name)

    result = _import(a, b, "--db", db)

    assert_clean(result, 0, "37,500")
    assert query(db, "SELECT count(*) FROM contracts") == [(1,)]


def test_a_key_given_twice_in_a_json_object_is_refused(stored: Path, tmp_path: Path) -> None:
    """A plain parser keeps the last value: June would be billed as 1 instead of 1000."""
    text = (SAMPLES / "acme" / "invoices.json").read_text()
    body = json.loads(text)
    june = json.dumps(body["invoices"][0]["usage_line_items"][0])
    doubled = june.replace('"quantity": 10', '"quantity": 1000, "quantity": 1')
    assert doubled != june
    body_text = json.dumps(body).replace(june, doubled)
    (tmp_path / "june.json").write_text(body_text)
    before = Snapshot.of(stored)

    result = run_cli("import", tmp_path / "june.json", "--db", stored, "--as-of", ACME_AS_OF)

    assert_clean(result, 1, "DUPLICATE_KEY", "quantity", "june.json")
    assert before.unchanged()


def test_a_duplicate_key_in_ndjson_names_its_line(stored: Path, tmp_path: Path) -> None:
    source = SAMPLES / "acme-daily-ndjson" / "invoices.ndjson"
    lines = source.read_text().splitlines()
    lines[1] = lines[1].replace('"contract_id":', '"contract_id": "x", "contract_id":', 1)
    (tmp_path / "invoices.ndjson").write_text("\n".join(lines) + "\n")

    result = run_cli("import", tmp_path / "invoices.ndjson", "--db", stored, "--json")

    assert_clean(result, 1)
    [issue] = result.json()["issues"]
    assert (issue["code"], issue["row"], issue["field"]) == ("DUPLICATE_KEY", 2, "contract_id")


def test_a_contract_naming_an_unknown_rate_card_is_a_clean_problem(
    stored: Path, tmp_path: Path
) -> None:
    files = acme()
    _beta(files)
    files["contracts"][0]["rate_card_id"] = "rc_nothing"
    before = Snapshot.of(stored)

    result = _import(write_dataset(tmp_path / "d", files), "--db", stored)

    assert_clean(result, 1, "UNKNOWN_RATE_CARD", "rc_nothing", "contracts.json")
    assert before.unchanged()


# --- 2. lost invoices -----------------------------------------------------------------------


@pytest.fixture
def closed(stored: Path) -> Path:
    """The acme store closed on 2024-09-02: August finalized and queued for Stripe."""
    assert run_cli("close", "--db", stored, "--as-of", "2024-09-02").exit_code == 0
    return stored


def _queued(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT status FROM provider_outbox ORDER BY invoice_id")


def test_an_export_that_cannot_be_written_leaves_the_invoices_queued(
    closed: Path, tmp_path: Path
) -> None:
    failed = run_cli(
        "export-provider", "--provider", "stripe", "--out", tmp_path / "no" / "x.jsonl",
        "--db", closed,
    )  # fmt: skip
    assert_clean(failed, 2, str(tmp_path / "no"))
    assert _queued(closed) == [("QUEUED",)]

    retry = run_cli(
        "export-provider", "--provider", "stripe", "--out", tmp_path / "x.jsonl", "--db", closed
    )

    assert_clean(retry, 0, "1 invoice exported")
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 1
    assert _queued(closed) == [("EXPORTED",)]
    assert not list(tmp_path.glob(".*.part"))


def test_an_export_never_replaces_an_earlier_export_file(closed: Path, tmp_path: Path) -> None:
    out = tmp_path / "stripe.jsonl"
    assert (
        run_cli("export-provider", "--provider", "stripe", "--out", out, "--db", closed).exit_code
        == 0
    )
    earlier = out.read_bytes()

    again = run_cli("export-provider", "--provider", "stripe", "--out", out, "--db", closed)

    assert_clean(again, 2, "exists already")
    assert out.read_bytes() == earlier


def test_an_export_to_a_provider_no_contract_names_is_refused(closed: Path, tmp_path: Path) -> None:
    result = run_cli(
        "export-provider", "--provider", "strip", "--out", tmp_path / "x.jsonl", "--db", closed
    )
    assert_clean(result, 2, "strip", "stripe")
    assert _queued(closed) == [("QUEUED",)]
    assert not (tmp_path / "x.jsonl").exists()


def test_an_errors_file_that_cannot_be_written_is_refused_before_the_run(
    db: Path, tmp_path: Path
) -> None:
    result = _import(SAMPLES / "acme", "--db", db, "--errors", tmp_path / "no" / "e.csv")

    assert_clean(result, 2, "--errors", str(tmp_path / "no"))
    assert not db.exists()


def test_an_errors_file_is_written_whole_beside_a_stored_run(db: Path, tmp_path: Path) -> None:
    errors = tmp_path / "e.parquet"
    result = _import(SAMPLES / "acme", "--db", db, "--errors", errors)
    assert_clean(result, 0)
    assert pl.read_parquet(errors).height == 0
    assert not list(tmp_path.glob(".*.part"))


# --- 3. someone else's data ------------------------------------------------------------------


def test_another_programs_duckdb_file_is_never_written(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(theirs))
    con.execute("CREATE TABLE orders (id INTEGER); CREATE VIEW invoice_breakdowns AS SELECT 1 AS x")
    con.close()
    before = Snapshot.of(theirs)

    for extra in ([], ["--preview"]):
        result = run_process("import", SAMPLES / "acme", "--db", theirs, *extra)
        assert_clean(result, 2, "NOT_A_STORE", str(theirs), "another program")
        assert before.unchanged()
    sql = run_process("sql", "SELECT 1", "--db", theirs)
    assert_clean(sql, 2)
    assert before.unchanged()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("usage.parquet", None),
        ("invoices.json", b'{"invoices": []}\n'),
        ("usage.csv", b"customer_id,quantity\ncus_1,1\n"),
    ],
)
def test_a_file_of_another_format_given_as_the_database_is_refused(
    tmp_path: Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is None:
        pl.DataFrame({"quantity": [1]}).write_parquet(path)
    else:
        path.write_bytes(content)
    before = Snapshot.of(path)

    result = run_cli("import", SAMPLES / "acme", "--db", path, "--as-of", ACME_AS_OF)

    assert_clean(result, 2, "NOT_A_STORE", name)
    assert before.unchanged()


def test_a_folder_given_as_the_database_is_refused(tmp_path: Path) -> None:
    result = _import(SAMPLES / "acme", "--db", tmp_path)
    assert_clean(result, 2, "not a regular file")
