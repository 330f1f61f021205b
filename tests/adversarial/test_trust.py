"""Wrong money, lost invoices, someone else's data: the cases that must never happen silently.

Each case asserts the exit code, that no traceback or internal error appears, what the message
names, and that a refused run leaves the database file and its WAL byte for byte as they were."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from tests.adversarial.conftest import ACME_AS_OF, Snapshot, assert_clean, copy_sample
from tests.conftest import SAMPLES, acme, query, run_cli, run_process, write_dataset

from bulk_rating import samples


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

    assert_clean(result, 0, "$375.00")
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


# --- 4. one bad entry never stops the nightly batch -----------------------------------------


def test_a_bad_entry_of_the_nightly_batch_is_skipped_and_the_rest_goes_on(tmp_path: Path) -> None:
    inbox, db, reports = tmp_path / "inbox", tmp_path / "store.duckdb", tmp_path / "reports"
    bad = acme()
    _beta(bad)
    bad["contracts"][0]["rate_card_id"] = "rc_nothing"
    write_dataset(inbox / "2024-08-01-beta", bad)
    copy_sample("acme", inbox / "2024-08-02-acme")

    result = run_cli(
        "nightly", "--inbox", inbox, "--db", db, "--as-of", "2024-09-02", "--reports", reports
    )

    assert_clean(result, 1, "2024-08-01-beta: rejected", "2024-08-02-acme: imported")
    assert "1 draft finalized" in result.stdout  # close ran after the failed entry
    document = json.loads((reports / "2024-09-02" / "nightly.json").read_text())
    assert [(e["entry"], e["status"]) for e in document["imports"]] == [
        ("2024-08-01-beta", "rejected"),
        ("2024-08-02-acme", "imported"),
    ]
    issues = pl.read_csv(reports / "2024-09-02" / "2024-08-01-beta.issues.csv")
    assert issues["code"].to_list() == ["UNKNOWN_RATE_CARD"]


# --- 10. a database held by a reader (a notebook) ---------------------------------------------


def test_a_held_database_names_its_holder_and_can_be_waited_for(stored: Path) -> None:
    notebook = duckdb.connect(str(stored), read_only=True)
    try:
        refused = run_process("close", "--db", stored, "--as-of", "2024-09-02")
        assert_clean(refused, 2, "DATABASE_LOCKED", "PID", "--wait")

        threading.Timer(1.0, notebook.close).start()
        waited = run_process("close", "--db", stored, "--as-of", "2024-09-02", "--wait", "60")
    finally:
        notebook.close()

    assert_clean(waited, 0, "1 draft finalized")


# --- 7. silently accepted -------------------------------------------------------------------


def _fiat_nowhere(files: dict[str, Any]) -> None:
    files["catalog"]["rate_cards"][0]["fiat_credit_type_id"] = "ct-nowhere"


def _invoice_schedule_nowhere(files: dict[str, Any]) -> None:
    commit = json.loads((SAMPLES / "acme-commit" / "contracts.json").read_text())[0]["commits"][0]
    commit["id"] = "commit_beta"
    commit["invoice_schedule"]["credit_type_id"] = "ct-nowhere"
    files["contracts"][0]["commits"] = [commit]


def _tag_nowhere(files: dict[str, Any]) -> None:
    files["contracts"][0]["overrides"] = [
        {
            "starting_at": "2024-06-01T00:00:00Z",
            "applicable_product_tags": ["no-such-tag"],
            "type": "MULTIPLIER",
            "multiplier": 0.5,
        }
    ]


def _generation_before_the_contract(files: dict[str, Any]) -> None:
    schedule = files["contracts"][0]["usage_statement_schedule"]
    schedule["invoice_generation_starting_at"] = "2024-01-01T00:00:00Z"


def _generation_after_the_contract(files: dict[str, Any]) -> None:
    files["contracts"][0]["ending_before"] = "2024-09-01T00:00:00Z"
    schedule = files["contracts"][0]["usage_statement_schedule"]
    schedule["invoice_generation_starting_at"] = "2024-10-01T00:00:00Z"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        (_fiat_nowhere, "UNKNOWN_CREDIT_TYPE", "fiat_credit_type_id"),
        (_invoice_schedule_nowhere, "UNKNOWN_CREDIT_TYPE", "invoice_schedule"),
        (_tag_nowhere, "UNKNOWN_TAG", "applicable_product_tags"),
        (_generation_before_the_contract, "INVALID_PERIOD", "invoice_generation_starting_at"),
        (_generation_after_the_contract, "INVALID_PERIOD", "invoice_generation_starting_at"),
    ],
)
def test_a_reference_to_nothing_is_refused_not_silently_accepted(
    stored: Path, tmp_path: Path, change: Any, code: str, field: str
) -> None:
    files = acme()
    _beta(files)
    change(files)
    before = Snapshot.of(stored)

    result = _import(write_dataset(tmp_path / "d", files), "--db", stored, "--json")

    assert_clean(result, 1)
    assert (code, field) in [(i["code"], i["field"]) for i in result.json()["issues"]]
    assert before.unchanged()


def test_the_balances_of_an_unknown_customer_are_refused(stored: Path) -> None:
    result = run_cli("balances", "--customer", "cus_nobody", "--db", stored)
    assert_clean(result, 2, "cus_nobody")


# --- 6. a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system (tmpfs), where the store does not fit: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_said_plainly_and_the_file_stops_growing(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "store.duckdb"
    sizes = []
    for _ in range(3):
        result = run_process("import", SAMPLES / "acme", "--db", db, "--as-of", ACME_AS_OF)
        assert result.exit_code in (0, 2), result.stderr
        assert "Traceback" not in result.stderr
        assert "internal error" not in result.stderr
        if result.exit_code == 2:
            assert "DISK_FULL" in result.stderr
            assert "no space left" in " ".join(result.stderr.split())
        sizes.append(sum(p.stat().st_size for p in small_disk.iterdir()))
    beta = acme()
    _beta(beta)
    more = run_process("import", write_dataset(tmp_path / "beta", beta), "--db", db)
    assert_clean(more, 2, "DISK_FULL")
    assert sizes[1] == sizes[2], f"the store grows run after run: {sizes}"


def test_no_room_to_split_the_usage_table_is_said_plainly_and_writes_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    # in 6 partitions or more the table is first copied, split, into the staging folder (TMPDIR)
    data = tmp_path / "set"
    written = samples.generate(data, customers=60, products=4, months=2, seed=3, ids="uuid")
    db = tmp_path / "store.duckdb"
    done = run_process(
        "import", data, "--db", db, "--as-of", written["as_of"], "--partitions", "7",
        env={"TMPDIR": str(small_disk)},
    )  # fmt: skip

    assert done.exit_code == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "DISK_FULL" in said
    assert "split by partition" in said
    assert "TMPDIR" in said
    assert "internal error" not in said
    assert not db.exists()
    assert not list(small_disk.iterdir())  # the staging folder is removed


# --- beyond the list ----------------------------------------------------------------------------


def test_a_preview_of_a_database_that_does_not_exist_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    result = _import(SAMPLES / "acme", "--db", db, "--preview")
    assert_clean(result, 0, "preview (nothing saved)")
    assert list(tmp_path.iterdir()) == []


def test_a_rejected_run_on_a_new_database_path_leaves_no_file(tmp_path: Path) -> None:
    files = acme()
    files["contracts"][0]["rate_card_id"] = "rc_nothing"
    db = tmp_path / "new.duckdb"
    result = _import(write_dataset(tmp_path / "d", files), "--db", db)
    assert_clean(result, 1, "UNKNOWN_RATE_CARD")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("name", ["usage.csv", "errors.csv"])
def test_the_errors_file_never_overwrites_an_input_or_lands_in_an_input_folder(
    tmp_path: Path, db: Path, name: str
) -> None:
    """Written into the data set, the next run would read the problems list as usage."""
    data = copy_sample("acme-daily-csv", tmp_path / "set")
    before = {p.name: p.read_bytes() for p in data.iterdir()}

    result = _import(data, "--db", db, "--errors", data / name)

    assert_clean(result, 2, "--errors", "input")
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert not db.exists()


def test_a_database_path_with_quotes_is_stored_and_previewed(tmp_path: Path) -> None:
    db = tmp_path / "it's" / "o'brien.duckdb"
    db.parent.mkdir()
    assert_clean(_import(SAMPLES / "acme", "--db", db), 0, "$375.00")
    assert_clean(_import(SAMPLES / "acme", "--db", db, "--preview"), 0, "already imported")


@pytest.mark.parametrize("text", ["10_000", " 10 ", "\u0661\u0660", "1,5", "0x10", ""])
def test_a_number_given_as_text_is_a_plain_decimal_or_refused(
    stored: Path, tmp_path: Path, text: str
) -> None:
    """Python's Decimal reads "10_000" as 10000 and Arabic-Indic digits as 10: never silently."""
    files = acme()
    _beta(files)
    files["invoices"]["invoices"][0]["usage_line_items"][0]["quantity"] = text
    before = Snapshot.of(stored)

    result = _import(write_dataset(tmp_path / "d", files), "--db", stored, "--json")

    assert_clean(result, 1)
    [issue] = result.json()["issues"]
    assert issue["code"] == "INVALID_NUMBER"
    assert issue["field"].endswith("quantity")
    assert before.unchanged()


@pytest.mark.parametrize(("text", "total"), [("10", 12_500), ("1e1", 12_500), (".5", 625)])
def test_a_plain_decimal_given_as_text_is_priced_exactly(
    db: Path, tmp_path: Path, text: str, total: int
) -> None:
    files = acme()
    files["invoices"]["invoices"][0]["usage_line_items"][0]["quantity"] = text
    result = _import(write_dataset(tmp_path / "d", files), "--db", db, "--json")
    assert_clean(result, 0)
    assert result.json()["data"][0]["total"] == total
