"""The Spark engine (`import --engine spark`) on Spark local[2]: buckets of contracts rated in
Spark's Python workers give the local engine's `--json` document and every stored table, byte for
byte, at any bucket count; bad input is reported with the same problems (code, file, row) and
nothing is written; a re-run writes nothing.

The history is generated with UUID ids in time order and given what the kernel must get right:
a TIERED product whose tiers are crossed, a mid-period price change, regional rates, contract
overrides (multipliers), prepaid commits and credits drawn down, exact duplicates collapsed,
rows in the contracts' DRAFT periods (rated again when more come), over 21 contracts."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.conftest import (
    ROOT,
    SAMPLES,
    USD,
    document_without_timings,
    file_digest,
    query,
    run_cli,
    run_process,
    stored_tables,
)

from bulk_rating import samples

SPARK = ("--engine", "spark", "--spark-master", "local[2]")
DRAFT_CONTRACTS = 4  # the first contracts get rows in their DRAFT period


def _contracts_with_terms(directory: Path) -> list[dict[str, Any]]:
    """Overrides, commits and credits on some of the generated contracts."""
    contracts: list[dict[str, Any]] = json.loads((directory / "contracts.json").read_text())
    products = [p["id"] for p in json.loads((directory / "catalog.json").read_text())["products"]]
    for i, contract in enumerate(contracts):
        start = contract["starting_at"]
        if i % 3 == 0:
            contract["overrides"] = [
                {
                    "type": "MULTIPLIER",
                    "product_id": products[1],
                    "multiplier": 0.8,
                    "starting_at": "2024-02-10T00:00:00Z",
                }
            ]
        if i % 4 == 1:
            contract["commits"] = [
                {
                    "id": f"commit-{i}",
                    "type": "PREPAID",
                    "product_id": products[0],
                    "priority": 1,
                    "access_schedule": {
                        "credit_type_id": USD,
                        "schedule_items": [
                            {
                                "id": f"segment-{i}",
                                "amount": 400000,
                                "starting_at": start,
                                "ending_before": "2025-01-01T00:00:00Z",
                            }
                        ],
                    },
                }
            ]
        if i % 5 == 2:
            contract["credits"] = [
                {
                    "id": f"credit-{i}",
                    "product_id": products[0],
                    "priority": 2,
                    "access_schedule": {
                        "credit_type_id": USD,
                        "schedule_items": [
                            {
                                "id": f"credit-segment-{i}",
                                "amount": 150000,
                                "starting_at": start,
                                "ending_before": "2025-01-01T00:00:00Z",
                            }
                        ],
                    },
                }
            ]
    (directory / "contracts.json").write_text(json.dumps(contracts, indent=1))
    return contracts


def _draft_rows(usage: pl.DataFrame, contracts: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of the last two days of some contracts' history, moved two days on: into the period
    their DRAFT invoice covers."""
    moved = []
    for contract in contracts[:DRAFT_CONTRACTS]:
        generation = datetime.fromisoformat(
            contract["usage_statement_schedule"]["invoice_generation_starting_at"]
        )
        rows = usage.filter(
            (pl.col("contract_id") == contract["id"])
            & (pl.col("inclusive_start_date") >= generation - timedelta(days=2))
            & (pl.col("inclusive_start_date") < generation)
        )
        moved.append(
            rows.with_columns(
                pl.col("inclusive_start_date") + timedelta(days=2),
                pl.col("exclusive_end_date") + timedelta(days=2),
            )
        )
    return pl.concat(moved)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The data set (history, duplicates, half the draft rows) and a second one (the other half
    of the draft rows), with the local engine's documents and stores of both imports."""
    root = tmp_path_factory.mktemp("spark")
    first = root / "first"
    written = samples.generate(
        first, customers=21, products=4, months=2, seed=41, ids="uuid", order="time",
        single_file=True,
    )  # fmt: skip
    contracts = _contracts_with_terms(first)
    usage = pl.read_parquet(first / "usage" / "part-0000.parquet")
    drafts = _draft_rows(usage, contracts)
    duplicates = usage.gather(range(0, usage.height, 997))
    pl.concat([usage, duplicates, drafts.gather_every(2)]).write_parquet(
        first / "usage" / "part-0000.parquet", row_group_size=20_000
    )
    second = root / "second"
    (second / "usage").mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copy(first / name, second / name)
    drafts.gather_every(2, offset=1).write_parquet(second / "usage" / "more.parquet")

    as_of = written["as_of"]
    local = root / "local.duckdb"
    done = run_cli("import", first, "--db", local, "--as-of", as_of, "--json")
    assert done.exit_code == 0, done.stderr
    after_first = stored_tables(local)
    shutil.copy(local, root / "local-first.duckdb")
    again = run_cli("import", second, "--db", local, "--as-of", as_of, "--json")
    assert again.exit_code == 0, again.stderr
    return {
        "root": root,
        "first": first,
        "second": second,
        "as_of": as_of,
        "document": document_without_timings(done.stdout),
        "stored": after_first,
        "first_store": root / "local-first.duckdb",
        "second_document": document_without_timings(again.stdout),
        "second_stored": stored_tables(local),
    }


def test_spark_gives_the_local_document_and_store(history: dict[str, Any]) -> None:
    db = history["root"] / "spark-3.duckdb"
    done = run_cli(
        "import", history["first"], "--db", db, "--as-of", history["as_of"], "--json",
        *SPARK, "--buckets", "3",
    )  # fmt: skip

    assert done.exit_code == 0, done.stderr
    document = document_without_timings(done.stdout)
    assert document == history["document"]
    stored = stored_tables(db)
    assert stored == history["stored"]
    # what the comparison covers is there: drafts rated, commits and credits drawn down
    assert {d["status"] for d in document["drafts"]} == {"DRAFT"}
    assert stored["_draft_usage"]
    kinds = {row[4] for row in stored["balance_ledger_entries"]}
    assert {"PREPAID", "CREDIT"} <= kinds
    assert document["summary"]["duplicates_collapsed"] >= 1


def test_drafts_rated_again_on_spark_match_the_local_engine(history: dict[str, Any]) -> None:
    # the second import adds rows to drafts the first one rated: they are rated again, whole
    db = history["root"] / "spark-second.duckdb"
    shutil.copy(history["first_store"], db)
    done = run_cli(
        "import", history["second"], "--db", db, "--as-of", history["as_of"], "--json",
        *SPARK, "--buckets", "5",
    )  # fmt: skip

    assert done.exit_code == 0, done.stderr
    assert document_without_timings(done.stdout) == history["second_document"]
    assert stored_tables(db) == history["second_stored"]


@pytest.mark.parametrize("buckets", [1, 16])
def test_any_bucket_count_gives_the_same_store(history: dict[str, Any], buckets: int) -> None:
    db = history["root"] / f"spark-{buckets}.duckdb"
    done = run_cli(
        "import", history["first"], "--db", db, "--as-of", history["as_of"], "--json",
        *SPARK, "--buckets", str(buckets),
    )  # fmt: skip

    assert done.exit_code == 0, done.stderr
    assert document_without_timings(done.stdout) == history["document"]
    assert stored_tables(db) == history["stored"]


def test_a_spark_run_as_a_user_starts_it_says_nothing_of_spark_itself(
    history: dict[str, Any],
) -> None:
    # its own process (its own driver JVM), as typed: the summary, and no log lines of Spark's
    db = history["root"] / "spark-process.duckdb"
    done = run_process("import", history["first"], "--db", db, "--as-of", history["as_of"], *SPARK)

    assert done.exit_code == 0, done.stderr
    assert "invoices" in done.stdout
    for said in ("log4j", "Setting default log level", "NativeCodeLoader", " WARN "):
        assert said not in done.stderr, done.stderr


def test_a_rerun_on_spark_writes_nothing(history: dict[str, Any]) -> None:
    db = history["root"] / "spark-rerun.duckdb"
    shutil.copy(history["first_store"], db)
    before = file_digest(db)

    done = run_cli(
        "import", history["first"], "--db", db, "--as-of", history["as_of"], "--json", *SPARK
    )

    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["status"] == "already_imported"
    assert file_digest(db) == before


def test_bad_input_on_spark_is_reported_as_locally_and_writes_nothing(
    history: dict[str, Any], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(history["first"], bad)
    usage = pl.read_parquet(bad / "usage" / "part-0000.parquet")
    broken = pl.concat(
        [
            usage,
            usage.gather(range(5, usage.height, 1999)).with_columns(
                contract_id=pl.lit("00000000-0000-0000-0000-000000000000")
            ),
            usage.gather(range(7, usage.height, 1499)).with_columns(quantity=-pl.col("quantity")),
        ]
    )
    broken.write_parquet(bad / "usage" / "part-0000.parquet", row_group_size=20_000)
    local, spark = tmp_path / "local.duckdb", tmp_path / "spark.duckdb"

    expected = run_cli("import", bad, "--db", local, "--as-of", history["as_of"], "--json")
    done = run_cli(
        "import", bad, "--db", spark, "--as-of", history["as_of"], "--json", *SPARK,
        "--buckets", "4",
    )  # fmt: skip

    assert expected.exit_code == done.exit_code == 1
    document = document_without_timings(done.stdout)
    assert document == document_without_timings(expected.stdout)
    issues = document["issues"]
    assert {i["code"] for i in issues} >= {"UNKNOWN_CONTRACT", "NEGATIVE_QUANTITY"}
    assert all(i["source"].endswith("part-0000.parquet") and i["row"] for i in issues)
    assert not spark.exists()
    assert not local.exists()


def test_problems_of_invoices_are_numbered_as_locally(
    history: dict[str, Any], tmp_path: Path
) -> None:
    # rows of one invoice that disagree on billable_status, in invoices of several contracts:
    # each bucket numbers its own invoices, the run names them as the local engine does
    bad = tmp_path / "bad"
    shutil.copytree(history["first"], bad)
    usage = pl.read_parquet(bad / "usage" / "part-0000.parquet")
    contracts = usage["contract_id"].unique().sort().to_list()[::5]
    first_rows = usage.with_row_index("n").group_by("contract_id").agg(pl.col("n").min())
    odd = first_rows.filter(pl.col("contract_id").is_in(contracts))["n"]
    usage.with_columns(
        billable_status=pl.when(pl.int_range(pl.len()).is_in(odd))
        .then(pl.lit("unbillable"))
        .otherwise(pl.lit("billable"))
    ).write_parquet(bad / "usage" / "part-0000.parquet", row_group_size=20_000)

    expected = run_cli("import", bad, "--db", tmp_path / "local.duckdb", "--json",
                       "--as-of", history["as_of"])  # fmt: skip
    done = run_cli("import", bad, "--db", tmp_path / "spark.duckdb", "--json",
                   "--as-of", history["as_of"], *SPARK, "--buckets", "4")  # fmt: skip

    assert expected.exit_code == done.exit_code == 1
    document = document_without_timings(done.stdout)
    assert document == document_without_timings(expected.stdout)
    named = [i for i in document["issues"] if i["field"] == "billable_status"]
    assert len(named) == len(contracts)
    assert len({i["invoice_index"] for i in named}) == len(contracts)


@pytest.mark.parametrize("bad", [False, True])
def test_a_csv_table_on_spark_is_rated_and_named_as_locally(tmp_path: Path, bad: bool) -> None:
    # a CSV is staged to Parquet with its line numbers first: Spark reads the staged files
    data = tmp_path / "set"
    shutil.copytree(SAMPLES / "acme-daily-csv", data)
    if bad:  # a blank line, then a negative quantity and a date that is none: data rows 13, 14
        with (data / "usage.csv").open("a") as usage:
            usage.write(
                "\n"
                "cus_acme,con_acme_2024,prod_api_calls,2024-06-12T00:00:00.000Z,"
                "2024-06-13T00:00:00.000Z,-1,DAY,2024-07-03T00:00:00.000Z\n"
                "cus_acme,con_acme_2024,prod_api_calls,2024-06-31T00:00:00.000Z,"
                "2024-06-14T00:00:00.000Z,1,DAY,2024-07-03T00:00:00.000Z\n"
            )
    local, spark = tmp_path / "local.duckdb", tmp_path / "spark.duckdb"

    expected = run_cli("import", data, "--db", local, "--as-of", "2024-08-15", "--json")
    done = run_cli("import", data, "--db", spark, "--as-of", "2024-08-15", "--json", *SPARK)

    assert done.exit_code == expected.exit_code == (1 if bad else 0), done.stderr
    document = document_without_timings(done.stdout)
    assert document == document_without_timings(expected.stdout)
    if bad:
        assert {(i["code"], i["row"]) for i in document["issues"]} >= {("NEGATIVE_QUANTITY", 13)}
        assert not spark.exists()
    else:
        assert stored_tables(spark) == stored_tables(local)


def _documented_queries(customer: str, contract: str) -> dict[str, str]:
    """docs/sql.md's queries, about a customer and contract of the generated history (its
    months are January to March 2024, the docs' June is February)."""
    text = (ROOT / "docs" / "sql.md").read_text()
    found = dict(re.findall(r"### (.+?)\n\n```sql\n(.+?)```", text, flags=re.S))
    assert len(found) == 12
    return {
        name: sql.replace("cus_acme", customer)
        .replace("con_acme_2024", contract)
        .replace("2024-06-01 ", "2024-02-01 ")
        .replace("2024-06-03", "2024-02-05")
        .replace("2024-06-04", "2024-02-06")
        .replace("2024-06-15", "2024-02-15")
        .replace("DATE '2024-06-01'", "DATE '2024-02-01'")
        .replace("DATE '2024-07-01'", "DATE '2024-03-01'")
        for name, sql in found.items()
    }


def test_breakdowns_kept_outside_the_store_read_as_the_stored_ones(
    history: dict[str, Any], tmp_path: Path
) -> None:
    db, outside = tmp_path / "spark.duckdb", tmp_path / "breakdowns"
    done = run_cli(
        "import", history["first"], "--db", db, "--as-of", history["as_of"], "--json",
        *SPARK, "--buckets", "3", "--breakdowns", outside,
    )  # fmt: skip

    assert done.exit_code == 0, done.stderr
    assert document_without_timings(done.stdout) == history["document"]
    # the history's windows and rollups are files by month, named in the store; the drafts'
    # stay in it; every other table is the local engine's
    stored, local = stored_tables(db), stored_tables(history["first_store"])
    files = stored.pop("_breakdown_files")
    assert {kind for _, kind, *_ in files} == {"windows", "days"}
    assert {month for _, _, month, *_ in files} == {"2024-01", "2024-02", "2024-03"}
    assert all(Path(path).is_relative_to(outside.resolve()) for *_, path, _ in files)
    assert sum(rows for _, kind, *_, rows in files if kind == "windows") + len(
        stored.pop("_priced_windows")
    ) == len(local.pop("_priced_windows"))
    assert 0 < len(stored.pop("_priced_days")) < len(local.pop("_priced_days"))
    local.pop("_breakdown_files")
    assert stored == local
    # every documented query answers the same, through the sandboxed `sql` command
    customer, contract = query(
        db, "SELECT customer_id, contract_id FROM invoices WHERE origin = 'HISTORICAL_IMPORT'"
        " ORDER BY ALL LIMIT 1"
    )[0]  # fmt: skip
    for name, sql in _documented_queries(customer, contract).items():
        ours = run_cli("sql", sql, "--db", db, "--format", "json")
        theirs = run_cli("sql", sql, "--db", history["first_store"], "--format", "json")
        assert ours.exit_code == theirs.exit_code == 0, (name, ours.stderr)
        assert ours.stdout == theirs.stdout, name
    assert json.loads(run_cli("sql", "SELECT count(*) AS n FROM invoice_breakdowns", "--db", db,
                              "--format", "json").stdout)[0]["n"] > 60_000  # fmt: skip
    # a query reads those files, and writes none of them
    target = files[0][3]
    before = file_digest(Path(target))
    refused = run_cli(
        "sql", f"COPY (SELECT 1 AS a) TO '{target}' (FORMAT parquet, USE_TMP_FILE false)",
        "--db", db,
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "refused" in refused.stderr
    assert file_digest(Path(target)) == before
