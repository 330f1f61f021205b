"""Bad usage tables (CSV, Parquet): exit 1, every problem named by code, field, file and row, and
the database unchanged."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import SAMPLES, file_digest, query, run_cli

CSV_SAMPLE = SAMPLES / "acme-daily-csv"
AS_OF = ("--as-of", "2024-08-15")

HEADER = "customer_id,contract_id,product_id,inclusive_start_date,exclusive_end_date,quantity,breakdown_granularity"
# A valid first data row: every bad case puts its problem in data row 2.
GOOD = "cus_acme,con_acme_2024,prod_api_calls,2024-06-01T00:00:00Z,2024-06-02T00:00:00Z,1,DAY"


def _row(
    start: str = "2024-06-02T00:00:00Z",
    end: str = "2024-06-03T00:00:00Z",
    quantity: str = "1",
    granularity: str = "DAY",
    *,
    customer: str = "cus_acme",
    contract: str = "con_acme_2024",
    product: str = "prod_api_calls",
) -> str:
    return ",".join([customer, contract, product, start, end, quantity, granularity])


def _csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _copy_catalog_and_contracts(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(CSV_SAMPLE / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def stored_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database that already holds another customer, its contract and an imported invoice."""
    base = tmp_path_factory.mktemp("base")
    catalog = json.loads((CSV_SAMPLE / "catalog.json").read_text())
    catalog["customers"] = [{"id": "cus_other", "name": "Other Corporation"}]
    (contract,) = json.loads((CSV_SAMPLE / "contracts.json").read_text())
    contract = {**contract, "id": "con_other_2024", "customer_id": "cus_other"}
    other = base / "other"
    other.mkdir()
    (other / "catalog.json").write_text(json.dumps(catalog))
    (other / "contracts.json").write_text(json.dumps([contract]))
    (other / "usage.csv").write_bytes(
        _csv(
            "cus_other,con_other_2024,prod_api_calls,2024-06-01T00:00:00Z,2024-07-01T00:00:00Z,3,NONE"
        )
    )
    db = base / "store.duckdb"
    result = run_cli("import", other, "--db", db, *AS_OF, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert query(db, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'") == [(1,)]
    return db


@pytest.fixture
def stored_db(stored_template: Path, tmp_path: Path) -> Path:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(stored_template, db)
    return db


@dataclass(frozen=True)
class Case:
    """A usage file's bytes and the problem it must be reported with (row None: file level)."""

    file_name: str
    content: bytes | Callable[[Path], None]
    code: str
    field: str | None
    row: int | None
    # Other codes the same input rightly gives too (every issue must be expected).
    also: frozenset[str] = frozenset()
    # A reader error that names the file but may not know the row.
    row_may_be_unknown: bool = False


def _expect_rejected(
    result: Any,
    db: Path,
    before: str | None,
    source: Path,
    code: str,
    field: str | None,
    row: int | None,
    *,
    row_may_be_unknown: bool = False,
) -> list[dict[str, Any]]:
    assert result.exit_code == 1, result.stdout + result.stderr
    document = result.json()
    issues: list[dict[str, Any]] = document["issues"]
    found = {(i["code"], i.get("field"), i.get("source"), i.get("row")) for i in issues}
    rows = {row, None} if row_may_be_unknown else {row}
    assert any((code, field, str(source), r) in found for r in rows), issues
    without_message = [i for i in issues if not i["message"]]
    assert not without_message, without_message
    assert document["data"] == []
    assert file_digest(db) == before
    return issues


# --- CSV --------------------------------------------------------------------------------------

CSV_CASES: dict[str, Case] = {
    "missing required column": Case(
        "usage.csv",
        _csv(
            "cus_acme,con_acme_2024,prod_api_calls,2024-06-01T00:00:00Z,2024-06-02T00:00:00Z,DAY",
            header="customer_id,contract_id,product_id,inclusive_start_date,exclusive_end_date,breakdown_granularity",
        ),
        "MISSING_COLUMN",
        "quantity",
        None,
    ),
    "misspelled column": Case(
        "usage.csv",
        _csv(GOOD, header=HEADER.replace("quantity", "quantty")),
        "UNKNOWN_COLUMN",
        "quantty",
        None,
        also=frozenset({"MISSING_COLUMN"}),
    ),
    "extra column": Case(
        "usage.csv",
        _csv(GOOD + ",us-east-1", header=HEADER + ",region"),
        "UNKNOWN_COLUMN",
        "region",
        None,
    ),
    "duplicate header": Case(
        "usage.csv",
        _csv(GOOD + ",1", header=HEADER + ",quantity"),
        "DUPLICATE_COLUMN",
        "quantity",
        None,
    ),
    "non-UTF-8 bytes in a data row": Case(
        "usage.csv",
        _csv(GOOD)
        + "cus_acm\xe9,con_acme_2024,prod_api_calls,2024-06-02T00:00:00Z,"
        "2024-06-03T00:00:00Z,1,DAY\n".encode("latin-1"),
        "INVALID_ENCODING",
        None,
        2,
        row_may_be_unknown=True,
    ),
    "ragged row with an extra field": Case(
        "usage.csv",
        _csv(GOOD, _row() + ",extra"),
        "MALFORMED_CSV",
        None,
        2,
        row_may_be_unknown=True,
    ),
    "empty file": Case("usage.csv", b"", "EMPTY_FILE", None, None),
    "locale date": Case(
        "usage.csv",
        _csv(GOOD, _row(start="06/02/2024")),
        "INVALID_TIMESTAMP",
        "inclusive_start_date",
        2,
    ),
    "two rows with locale dates": Case(
        "usage.csv",
        _csv(
            GOOD,
            _row(start="06/02/2024", end="06/03/2024"),
            _row(start="06/03/2024", end="06/04/2024"),
        ),
        "INVALID_TIMESTAMP",
        "inclusive_start_date",
        3,
    ),
    "date without time or offset": Case(
        "usage.csv",
        _csv(GOOD, _row(start="2024-06-02", end="2024-06-03")),
        "TIMESTAMP_WITHOUT_OFFSET",
        "inclusive_start_date",
        2,
    ),
    "timestamp without offset": Case(
        "usage.csv",
        _csv(GOOD, _row(start="2024-06-02T00:00:00")),
        "TIMESTAMP_WITHOUT_OFFSET",
        "inclusive_start_date",
        2,
    ),
    "invalid issue_date": Case(
        "usage.csv",
        _csv(
            GOOD + ",2024-07-03T00:00:00Z", _row() + ",3 July 2024", header=HEADER + ",issue_date"
        ),
        "INVALID_TIMESTAMP",
        "issue_date",
        2,
    ),
    "thousands separator": Case(
        "usage.csv", _csv(GOOD, _row(quantity='"1,234"')), "INVALID_NUMBER", "quantity", 2
    ),
    "scientific notation": Case(
        "usage.csv", _csv(GOOD, _row(quantity="1e3")), "INVALID_NUMBER", "quantity", 2
    ),
    "negative quantity": Case(
        "usage.csv", _csv(GOOD, _row(quantity="-1")), "NEGATIVE_QUANTITY", "quantity", 2
    ),
    "NaN quantity": Case(
        "usage.csv", _csv(GOOD, _row(quantity="NaN")), "INVALID_NUMBER", "quantity", 2
    ),
    "Infinity quantity": Case(
        "usage.csv", _csv(GOOD, _row(quantity="Infinity")), "INVALID_NUMBER", "quantity", 2
    ),
    "empty quantity": Case(
        "usage.csv", _csv(GOOD, _row(quantity="")), "INVALID_NUMBER", "quantity", 2
    ),
    "10 decimals": Case(
        "usage.csv",
        _csv(GOOD, _row(quantity="1.0000000001")),
        "TOO_MANY_DECIMALS",
        "quantity",
        2,
    ),
    "quantity too large": Case(
        "usage.csv",
        _csv(GOOD, _row(quantity="1000000000000")),
        "NUMBER_TOO_LARGE",
        "quantity",
        2,
    ),
    "empty customer_id": Case(
        "usage.csv", _csv(GOOD, _row(customer="")), "MISSING_FIELD", "customer_id", 2
    ),
    "unknown product": Case(
        "usage.csv", _csv(GOOD, _row(product="prod_nope")), "UNKNOWN_PRODUCT", "product_id", 2
    ),
    "unknown customer": Case(
        "usage.csv",
        _csv(GOOD, _row(customer="cus_nope")),
        "UNKNOWN_CUSTOMER",
        "customer_id",
        2,
    ),
    "unknown contract": Case(
        "usage.csv", _csv(GOOD, _row(contract="con_nope")), "UNKNOWN_CONTRACT", "contract_id", 2
    ),
    "contract of another customer": Case(
        "usage.csv",
        _csv(GOOD, _row(customer="cus_other")),
        "CONTRACT_CUSTOMER_MISMATCH",
        "contract_id",
        2,
    ),
    "row before the contract start": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-05-31T00:00:00Z", "2024-06-01T00:00:00Z")),
        "INVOICE_OUTSIDE_CONTRACT",
        "inclusive_start_date",
        2,
    ),
    "row in a generated period that is not the current draft": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-09-01T00:00:00Z", "2024-09-02T00:00:00Z")),
        "INVOICE_AFTER_GENERATION_START",
        "inclusive_start_date",
        2,
    ),
    "hourly row not on the hour": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-06-02T00:30:00Z", "2024-06-02T01:30:00Z", granularity="HOUR")),
        "WINDOW_NOT_ALIGNED",
        "inclusive_start_date",
        2,
    ),
    "2-hour row without breakdown_granularity": Case(
        "usage.csv",
        _csv(
            ",".join(GOOD.split(",")[:-1]),
            "cus_acme,con_acme_2024,prod_api_calls,2024-06-02T00:00:00Z,2024-06-02T02:00:00Z,1",
            header=HEADER.removesuffix(",breakdown_granularity"),
        ),
        "WINDOW_WRONG_WIDTH",
        "exclusive_end_date",
        2,
    ),
    "DAY row crossing the end of its billing period": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-06-30T12:00:00Z", "2024-07-01T12:00:00Z")),
        "WINDOW_OUTSIDE_LINE",
        "exclusive_end_date",
        2,
        also=frozenset({"WINDOW_NOT_ALIGNED"}),
    ),
    "NONE row crossing the end of its billing period": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-06-15T00:00:00Z", "2024-07-15T00:00:00Z", granularity="NONE")),
        "WINDOW_OUTSIDE_LINE",
        "exclusive_end_date",
        2,
    ),
    "end before start": Case(
        "usage.csv",
        _csv(GOOD, _row("2024-06-03T00:00:00Z", "2024-06-02T00:00:00Z", granularity="NONE")),
        "INVALID_PERIOD",
        "exclusive_end_date",
        2,
    ),
    "the same window twice with different quantities": Case(
        "usage.csv",
        _csv(GOOD, GOOD.replace(",1,DAY", ",2,DAY")),
        "CONFLICTING_DUPLICATE",
        "inclusive_start_date",
        2,
    ),
    "granularity WEEK": Case(
        "usage.csv",
        _csv(GOOD, _row(granularity="WEEK")),
        "INVALID_VALUE",
        "breakdown_granularity",
        2,
    ),
    "bad billable_status": Case(
        "usage.csv",
        _csv(GOOD + ",billable", _row() + ",maybe", header=HEADER + ",billable_status"),
        "INVALID_VALUE",
        "billable_status",
        2,
    ),
    "unknown pricing group value": Case(
        "usage.csv",
        _csv(
            GOOD.replace("prod_api_calls", "prod_compute") + ",us-east-1",
            _row(product="prod_compute") + ",mars-north-1",
            header=HEADER + ",pricing.region",
        ),
        "NO_RATE",
        "product_id",
        2,
    ),
    "unknown credit type": Case(
        "usage.csv",
        _csv(GOOD + ",", _row() + ",cred_nope", header=HEADER + ",credit_type_id"),
        "UNKNOWN_CREDIT_TYPE",
        "credit_type_id",
        2,
    ),
}


@pytest.mark.parametrize("case", CSV_CASES.values(), ids=CSV_CASES.keys())
def test_a_bad_csv_exits_1_names_the_problem_and_writes_nothing(
    case: Case, stored_db: Path, tmp_path: Path
) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    source = directory / case.file_name
    assert isinstance(case.content, bytes)
    source.write_bytes(case.content)
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(
        result,
        stored_db,
        before,
        source,
        case.code,
        case.field,
        case.row,
        row_may_be_unknown=case.row_may_be_unknown,
    )
    assert {i["code"] for i in issues} == {case.code, *case.also}, issues


def test_a_csv_under_usage_names_its_own_path(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage").mkdir()
    source = directory / "usage" / "june.csv"
    source.write_bytes(_csv(GOOD, _row(product="prod_nope")))
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    _expect_rejected(result, stored_db, before, source, "UNKNOWN_PRODUCT", "product_id", 2)


def test_every_bad_row_is_reported_not_just_the_first(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    source = directory / "usage.csv"
    source.write_bytes(
        _csv(
            _row("2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z", product="prod_nope"),
            GOOD.replace("2024-06-01", "2024-06-05").replace("2024-06-02", "2024-06-06"),
            _row("2024-06-02T00:00:00Z", "2024-06-03T00:00:00Z", quantity="-2.5"),
            _row("2024-06-03T00:30:00Z", "2024-06-03T01:30:00Z", granularity="HOUR"),
        )
    )
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(result, stored_db, before, source, "UNKNOWN_PRODUCT", "product_id", 1)
    assert {(i["code"], i["field"], i["row"]) for i in issues} == {
        ("UNKNOWN_PRODUCT", "product_id", 1),
        ("NEGATIVE_QUANTITY", "quantity", 3),
        ("WINDOW_NOT_ALIGNED", "inclusive_start_date", 4),
    }
    assert {i["source"] for i in issues} == {str(source)}


def test_rows_without_a_rate_are_each_named(stored_db: Path, tmp_path: Path) -> None:
    """Rows that find no rate piece share the check's groups; each is still named."""
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    source = directory / "usage.csv"
    source.write_bytes(
        _csv(
            GOOD,
            _row(product="prod_nope"),
            _row("2024-06-03T00:00:00Z", "2024-06-04T00:00:00Z", product="prod_other"),
            _row(contract="con_nope"),
            _row("2024-06-04T00:00:00Z", "2024-06-05T00:00:00Z"),
        )
    )
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(result, stored_db, before, source, "UNKNOWN_PRODUCT", "product_id", 2)
    assert {(i["code"], i["row"]) for i in issues} == {
        ("UNKNOWN_PRODUCT", 2),
        ("UNKNOWN_PRODUCT", 3),
        ("UNKNOWN_CONTRACT", 4),
    }


def test_a_rule_broken_by_many_rows_lists_the_first_and_counts_the_rest(
    stored_db: Path, tmp_path: Path
) -> None:
    # 1,003 hourly rows of an unknown product and one negative quantity: one line counts the
    # product's rows past the first 1,000, which are named in order; the quantity's one row is
    # named as ever.
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    source = directory / "usage.csv"
    june = datetime(2024, 6, 1, tzinfo=UTC)
    hours = [(june + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(1004)]
    rows = [_row(a, b, granularity="HOUR", product="prod_nope") for a, b in pairwise(hours)]
    source.write_bytes(_csv(*rows, _row(quantity="-1")))
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(result, stored_db, before, source, "UNKNOWN_PRODUCT", "product_id", 1)
    unknown = [i for i in issues if i["code"] == "UNKNOWN_PRODUCT"]
    assert [i["row"] for i in unknown] == [None, *range(1, 1001)]  # the file's own line first
    assert unknown[0]["message"] == "3 more rows like these; the first 1,000 are listed"
    assert unknown[0]["source"] == str(source)
    assert [(i["code"], i["row"]) for i in issues if i["code"] != "UNKNOWN_PRODUCT"] == [
        ("NEGATIVE_QUANTITY", 1004)
    ]
    assert [i["count"] for i in unknown] == [3] + [1] * 1000
    assert result.json()["summary"]["issues"] == 1004  # every failing row, listed or counted

    shown = run_cli("import", directory, "--db", stored_db, *AS_OF)

    assert shown.exit_code == 1
    assert "1,004 problems found; nothing was written" in shown.stderr
    assert "UNKNOWN_PRODUCT: 1,003" in shown.stderr
    assert "NEGATIVE_QUANTITY: 1" in shown.stderr


def test_each_bad_file_is_named_with_its_own_rows(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage").mkdir()
    first, second = directory / "a.csv", directory / "usage" / "b.csv"
    first.write_bytes(_csv(GOOD, _row(product="prod_nope")))
    second.write_bytes(
        _csv(
            _row("2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z"),
            _row("2024-06-11T00:00:00Z", "2024-06-12T00:00:00Z", quantity="-1"),
        )
    )
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(result, stored_db, before, first, "UNKNOWN_PRODUCT", "product_id", 2)
    assert {(i["code"], i["source"], i["row"]) for i in issues} == {
        ("UNKNOWN_PRODUCT", str(first), 2),
        ("NEGATIVE_QUANTITY", str(second), 2),
    }


def test_an_invoice_problem_names_the_file_its_rows_are_in(stored_db: Path, tmp_path: Path) -> None:
    """A problem of a whole invoice (no one row to blame) names the first file holding its rows."""
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage").mkdir()
    first, second = directory / "a.csv", directory / "usage" / "b.csv"
    header = HEADER + ",issue_date"
    first.write_bytes(_csv(GOOD + ",2024-07-01T00:00:00Z", header=header))
    second.write_bytes(
        _csv(
            _row("2024-07-10T00:00:00Z", "2024-07-11T00:00:00Z") + ",2024-08-01T00:00:00Z",
            _row("2024-07-11T00:00:00Z", "2024-07-12T00:00:00Z") + ",2024-08-02T00:00:00Z",
            header=header,
        )
    )
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(
        result, stored_db, before, second, "INVALID_VALUE", "issue_date", None
    )
    assert [(i["code"], i["source"]) for i in issues] == [("INVALID_VALUE", str(second))]


def _totals(result: Any) -> list[Decimal]:
    return [invoice["total"] for invoice in result.json()["data"]]


def test_a_csv_with_a_byte_order_mark_imports(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage.csv").write_bytes(b"\xef\xbb\xbf" + (CSV_SAMPLE / "usage.csv").read_bytes())

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json()["issues"] == []
    assert _totals(result) == [12500, 25000]
    stored = query(
        stored_db,
        "SELECT total FROM invoices WHERE contract_id = 'con_acme_2024'"
        " AND origin = 'HISTORICAL_IMPORT' ORDER BY start_timestamp",
    )
    assert stored == [(12500,), (25000,)]


def test_offsets_are_converted_and_enums_take_any_casing(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage.csv").write_bytes(
        _csv(GOOD, _row("2024-06-02T02:00:00+02:00", "2024-06-02T20:00:00-04:00", "2", "day"))
    )

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert _totals(result) == [3750]  # (1 + 2) x 1250
    assert query(stored_db, "SELECT window_start FROM breakdowns_daily ORDER BY 1")[1] == (
        datetime(2024, 6, 2, tzinfo=UTC),
    )


def test_a_blank_line_at_the_end_of_a_csv_is_not_a_row(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    (directory / "usage.csv").write_bytes((CSV_SAMPLE / "usage.csv").read_bytes() + b"\n")

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert _totals(result) == [12500, 25000]


# --- Parquet ----------------------------------------------------------------------------------

UTC_US = pa.timestamp("us", tz="UTC")


def _usage_table(
    quantities: pa.Array,
    *,
    timestamps: pa.DataType = UTC_US,
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """Daily rows from June 1, one a quantity, of acme's API calls."""
    n = len(quantities)
    tz = UTC if timestamps.tz is not None else None
    starts = [datetime(2024, 6, 1 + d, tzinfo=tz) for d in range(n)]
    ends = [datetime(2024, 6, 2 + d, tzinfo=tz) for d in range(n)]
    columns: dict[str, pa.Array] = {
        "customer_id": pa.array(["cus_acme"] * n),
        "contract_id": pa.array(["con_acme_2024"] * n),
        "product_id": pa.array(["prod_api_calls"] * n),
        "inclusive_start_date": pa.array(starts, type=timestamps),
        "exclusive_end_date": pa.array(ends, type=timestamps),
        "quantity": quantities,
        **(extra or {}),
    }
    return pa.table(columns)


def _dated_table(
    starts: list[datetime | None],
    products: list[str] | None = None,
    width: timedelta = timedelta(days=1),
) -> pa.Table:
    """Rows of one unit each at the given UTC starts, a day wide unless said (typed timestamps:
    the checks that run once per group of rows, not per row)."""
    n = len(starts)
    return pa.table(
        {
            "customer_id": pa.array(["cus_acme"] * n),
            "contract_id": pa.array(["con_acme_2024"] * n),
            "product_id": pa.array(products or ["prod_api_calls"] * n),
            "inclusive_start_date": pa.array(starts, type=UTC_US),
            "exclusive_end_date": pa.array(
                [s + width if s else datetime(2024, 6, 3, tzinfo=UTC) for s in starts],
                type=UTC_US,
            ),
            "quantity": pa.array([1.0] * n),
        }
    )


def _write_parquet(table: pa.Table) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pq.write_table(table, path)

    return write


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(2048))


def _half_a_file(path: Path) -> None:
    pq.write_table(_usage_table(pa.array([1.0] * 20)), path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


PARQUET_CASES: dict[str, Case] = {
    "random bytes": Case("usage.parquet", _random_bytes, "CORRUPT_FILE", None, None),
    "half a file": Case("usage.parquet", _half_a_file, "CORRUPT_FILE", None, None),
    "zero bytes": Case("usage.parquet", _zero_bytes, "EMPTY_FILE", None, None),
    "timestamps without a time zone": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([1.0, 2.0]), timestamps=pa.timestamp("us"))),
        "TIMESTAMP_WITHOUT_OFFSET",
        "inclusive_start_date",
        None,
    ),
    "float with 10 decimals": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([0.1, 0.1234567891]))),
        "TOO_MANY_DECIMALS",
        "quantity",
        2,
    ),
    "float NaN": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([0.1, float("nan")]))),
        "INVALID_NUMBER",
        "quantity",
        2,
    ),
    "decimal with 10 decimals": Case(
        "usage.parquet",
        _write_parquet(
            _usage_table(
                pa.array([Decimal("1"), Decimal("1.0000000001")], type=pa.decimal128(20, 10))
            )
        ),
        "TOO_MANY_DECIMALS",
        "quantity",
        2,
    ),
    "bad row in a later row group": Case(
        "usage.parquet",
        lambda path: pq.write_table(
            _usage_table(pa.array([1.0, 1.0, 1.0, 1.0, 0.1234567891, 1.0])), path, row_group_size=2
        ),
        "TOO_MANY_DECIMALS",
        "quantity",
        5,
    ),
    "null quantity": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([1.0, None], type=pa.float64()))),
        "INVALID_NUMBER",
        "quantity",
        2,
    ),
    "boolean quantity column": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([True, False]))),
        "INVALID_COLUMN_TYPE",
        "quantity",
        None,
    ),
    "a window before the contract starts": Case(
        "usage.parquet",
        _write_parquet(
            _dated_table([datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 5, 31, tzinfo=UTC)])
        ),
        "INVOICE_OUTSIDE_CONTRACT",
        "inclusive_start_date",
        2,
    ),
    "a window in a period the contract generates": Case(
        "usage.parquet",
        _write_parquet(
            _dated_table([datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 9, 2, tzinfo=UTC)])
        ),
        "INVOICE_AFTER_GENERATION_START",
        "inclusive_start_date",
        2,
    ),
    "an hour window off the hour": Case(
        "usage.parquet",
        _write_parquet(
            _dated_table(
                [datetime(2024, 6, 1, 0, tzinfo=UTC), datetime(2024, 6, 1, 1, 30, tzinfo=UTC)],
                width=timedelta(hours=1),
            )
        ),
        "WINDOW_NOT_ALIGNED",
        "inclusive_start_date",
        2,
    ),
    "a day window off midnight": Case(
        "usage.parquet",
        _write_parquet(
            _dated_table(
                [datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, 6, tzinfo=UTC)],
            )
        ),
        "WINDOW_NOT_ALIGNED",
        "inclusive_start_date",
        2,
    ),
    "an empty start beside a good row": Case(
        "usage.parquet",
        _write_parquet(_dated_table([datetime(2024, 6, 1, tzinfo=UTC), None])),
        "MISSING_FIELD",
        "inclusive_start_date",
        2,
    ),
    "an unknown product in a typed table": Case(
        "usage.parquet",
        _write_parquet(
            _dated_table(
                [datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)],
                ["prod_api_calls", "prod_nope"],
            )
        ),
        "UNKNOWN_PRODUCT",
        "product_id",
        2,
    ),
    "negative integer": Case(
        "usage.parquet",
        _write_parquet(_usage_table(pa.array([1, -3], type=pa.int64()))),
        "NEGATIVE_QUANTITY",
        "quantity",
        2,
    ),
}


@pytest.mark.parametrize("case", PARQUET_CASES.values(), ids=PARQUET_CASES.keys())
def test_a_bad_parquet_file_exits_1_names_the_problem_and_writes_nothing(
    case: Case, stored_db: Path, tmp_path: Path
) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    source = directory / case.file_name
    assert callable(case.content)
    case.content(source)
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    issues = _expect_rejected(
        result,
        stored_db,
        before,
        source,
        case.code,
        case.field,
        case.row,
        row_may_be_unknown=case.row_may_be_unknown,
    )
    assert {i["code"] for i in issues} == {case.code, *case.also}, issues


def test_parquet_files_with_different_columns_are_a_schema_mismatch(
    stored_db: Path, tmp_path: Path
) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    usage = directory / "usage"
    usage.mkdir()
    pq.write_table(_usage_table(pa.array([1.0])), usage / "a.parquet")
    granular = _usage_table(pa.array([1.0]), extra={"breakdown_granularity": pa.array(["DAY"])})
    pq.write_table(granular.slice(0, 1), usage / "b.parquet")
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    _expect_rejected(result, stored_db, before, usage / "b.parquet", "SCHEMA_MISMATCH", None, None)


def test_parquet_files_with_other_column_types_are_a_schema_mismatch(
    stored_db: Path, tmp_path: Path
) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    pq.write_table(_usage_table(pa.array([1.0])), directory / "a.parquet")
    pq.write_table(_usage_table(pa.array(["1"])), directory / "b.parquet")
    before = file_digest(stored_db)

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    _expect_rejected(
        result, stored_db, before, directory / "b.parquet", "SCHEMA_MISMATCH", None, None
    )


def test_nanosecond_timestamps_import(stored_db: Path, tmp_path: Path) -> None:
    """pandas writes datetime64[ns, UTC] by default."""
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    table = _usage_table(pa.array([1, 2], type=pa.int64()), timestamps=pa.timestamp("ns", tz="UTC"))
    pq.write_table(table, directory / "usage.parquet")

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert _totals(result) == [3750]


def test_a_float_quantity_of_0_1_is_exact_at_9_decimals(stored_db: Path, tmp_path: Path) -> None:
    directory = _copy_catalog_and_contracts(tmp_path / "set")
    pq.write_table(_usage_table(pa.array([0.1, 0.2, 0.3])), directory / "usage.parquet")

    result = run_cli("import", directory, "--db", stored_db, *AS_OF, "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    (june,) = result.json()["data"]
    assert june["line_items"][0]["quantity"] == Decimal("0.6")
    assert june["total"] == Decimal("750")  # 0.6 x 1250, exactly
    assert query(stored_db, "SELECT sum(quantity) FROM invoice_breakdowns") == [(Decimal("0.6"),)]
