"""Bad input: exit 1, every problem named with its code and place, and the database unchanged."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.conftest import (
    acme,
    add_events_with_a_price_change,
    add_product,
    add_rates,
    file_digest,
    invoice,
    line,
    run_cli,
)

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
DAY1 = ("2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z")
Files = dict[str, Any]


def _first_line(files: Files) -> dict[str, Any]:
    line_: dict[str, Any] = files["invoices"]["invoices"][0]["usage_line_items"][0]
    return line_


def both_quantity_and_subtotals(files: Files) -> None:
    files["invoices"]["invoices"][0]["breakdown_granularity"] = "DAY"
    _first_line(files)["subtotals_with_quantity"] = [
        {"inclusive_start_date": DAY1[0], "exclusive_end_date": DAY1[1], "quantity": 1}
    ]


def window_outside_line(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        *JUNE,
        [
            line(
                "prod_api_calls",
                *JUNE,
                windows=[("2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z", 1)],
            )
        ],
        granularity="DAY",
    )


def window_not_on_hour(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        *JUNE,
        [
            line(
                "prod_api_calls",
                *JUNE,
                windows=[("2024-06-01T00:30:00Z", "2024-06-01T01:30:00Z", 1)],
            )
        ],
        granularity="HOUR",
    )


def window_wrong_width(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        *JUNE,
        [
            line(
                "prod_api_calls",
                *JUNE,
                windows=[("2024-06-01T00:00:00Z", "2024-06-01T02:00:00Z", 1)],
            )
        ],
        granularity="HOUR",
    )


def windows_overlapping(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        *JUNE, [line("prod_api_calls", *JUNE, windows=[(*DAY1, 1), (*DAY1, 2)])], granularity="DAY"
    )


def windows_without_granularity(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        *JUNE, [line("prod_api_calls", *JUNE, windows=[(*DAY1, 1)])]
    )


def unknown_product(files: Files) -> None:
    _first_line(files)["product_id"] = "prod_nope"


def invoice_before_contract(files: Files) -> None:
    files["invoices"]["invoices"][0] = invoice(
        "2024-05-01T00:00:00Z",
        "2024-06-01T00:00:00Z",
        [line("prod_api_calls", "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", quantity=1)],
    )


def invoice_after_generation_start(files: Files) -> None:
    files["invoices"]["invoices"][1] = invoice(
        "2024-07-01T00:00:00Z",
        "2024-08-02T00:00:00Z",
        [line("prod_api_calls", "2024-07-01T00:00:00Z", "2024-08-02T00:00:00Z", quantity=1)],
    )


def line_outside_invoice(files: Files) -> None:
    _first_line(files)["exclusive_end_date"] = "2024-07-02T00:00:00Z"


def overlapping_invoices(files: Files) -> None:
    files["invoices"]["invoices"].append(copy.deepcopy(files["invoices"]["invoices"][0]))


def unknown_contract(files: Files) -> None:
    files["invoices"]["invoices"][0]["contract_id"] = "con_nope"


def contract_of_another_customer(files: Files) -> None:
    files["catalog"]["customers"].append({"id": "cus_other", "name": "Other"})
    files["invoices"]["invoices"][0]["customer_id"] = "cus_other"


def no_line_quantity(files: Files) -> None:
    del _first_line(files)["quantity"]


def negative_quantity(files: Files) -> None:
    _first_line(files)["quantity"] = -1


def too_many_decimals(files: Files) -> None:
    _first_line(files)["quantity"] = "1.0000000001"


def nan_quantity(files: Files) -> None:
    _first_line(files)["quantity"] = "NaN"


def huge_quantity(files: Files) -> None:
    _first_line(files)["quantity"] = "12345678901234567890"


def naive_timestamp(files: Files) -> None:
    files["invoices"]["invoices"][0]["issue_date"] = "2024-07-03T00:00:00"


def unknown_field_in_catalog(files: Files) -> None:
    files["catalog"]["products"][0]["pricing_group_keys"] = ["region"]


def quantity_spanning_rate_change(files: Files) -> None:
    add_events_with_a_price_change(files)
    _first_line(files)["product_id"] = "prod_events"


def no_rate(files: Files) -> None:
    add_product(files, "prod_unpriced", "Unpriced")
    _first_line(files)["product_id"] = "prod_unpriced"


def not_entitled(files: Files) -> None:
    add_product(files, "prod_off", "Switched off")
    add_rates(
        files,
        {
            "product_id": "prod_off",
            "starting_at": "2024-01-01T00:00:00Z",
            "entitled": False,
            "rate_type": "FLAT",
            "price": 1,
        },
    )
    _first_line(files)["product_id"] = "prod_off"


def no_rate_for_part_of_a_window(files: Files) -> None:
    add_product(files, "prod_retired", "Retired")
    add_rates(
        files,
        {
            "product_id": "prod_retired",
            "starting_at": "2024-01-01T00:00:00Z",
            "ending_before": "2024-06-10T12:00:00Z",
            "entitled": True,
            "rate_type": "FLAT",
            "price": 1,
        },
    )
    files["invoices"]["invoices"][0] = invoice(
        *JUNE,
        [
            line(
                "prod_retired", *JUNE, windows=[("2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z", 1)]
            )
        ],
        granularity="DAY",
    )


def rates_overlapping(files: Files) -> None:
    add_rates(
        files,
        {
            "product_id": "prod_api_calls",
            "starting_at": "2024-03-01T00:00:00Z",
            "entitled": True,
            "rate_type": "FLAT",
            "price": 1,
        },
    )


CASES: list[tuple[Callable[[Files], None], str, str]] = [
    (both_quantity_and_subtotals, "QUANTITY_AND_SUBTOTALS", "quantity"),
    (window_outside_line, "WINDOW_OUTSIDE_LINE", "inclusive_start_date"),
    (window_not_on_hour, "WINDOW_NOT_ALIGNED", "inclusive_start_date"),
    (window_wrong_width, "WINDOW_WRONG_WIDTH", "exclusive_end_date"),
    (windows_overlapping, "WINDOW_OVERLAP", "inclusive_start_date"),
    (windows_without_granularity, "MISSING_GRANULARITY", "breakdown_granularity"),
    (unknown_product, "UNKNOWN_PRODUCT", "product_id"),
    (invoice_before_contract, "INVOICE_OUTSIDE_CONTRACT", "inclusive_start_date"),
    (invoice_after_generation_start, "INVOICE_AFTER_GENERATION_START", "exclusive_end_date"),
    (line_outside_invoice, "LINE_OUTSIDE_INVOICE", "inclusive_start_date"),
    (overlapping_invoices, "INVOICE_OVERLAP", "inclusive_start_date"),
    (unknown_contract, "UNKNOWN_CONTRACT", "contract_id"),
    (contract_of_another_customer, "CONTRACT_CUSTOMER_MISMATCH", "contract_id"),
    (no_line_quantity, "NO_QUANTITY", "quantity"),
    (negative_quantity, "NEGATIVE_QUANTITY", "quantity"),
    (too_many_decimals, "TOO_MANY_DECIMALS", "quantity"),
    (nan_quantity, "INVALID_NUMBER", "quantity"),
    (huge_quantity, "NUMBER_TOO_LARGE", "quantity"),
    (naive_timestamp, "TIMESTAMP_WITHOUT_OFFSET", "issue_date"),
    (unknown_field_in_catalog, "UNKNOWN_FIELD", "pricing_group_keys"),
    (quantity_spanning_rate_change, "QUANTITY_SPANS_RATE_CHANGE", "quantity"),
    (no_rate, "NO_RATE", "product_id"),
    (not_entitled, "PRODUCT_NOT_ENTITLED", "product_id"),
    (rates_overlapping, "RATE_OVERLAP", "starting_at"),
    (no_rate_for_part_of_a_window, "NO_RATE", "exclusive_end_date"),
]


@pytest.fixture
def stored_db(db: Path, dataset: Callable[[Files], Path]) -> Path:
    """A database that already holds another customer's history, so 'unchanged' means something."""
    files = acme()
    files["catalog"]["customers"][0]["id"] = files["contracts"][0]["customer_id"] = "cus_globex"
    files["catalog"]["rate_cards"][0]["id"] = files["contracts"][0]["rate_card_id"] = "rc_globex"
    files["contracts"][0]["id"] = "con_globex"
    for body in files["invoices"]["invoices"]:
        body["customer_id"], body["contract_id"] = "cus_globex", "con_globex"
    files["catalog"]["products"] = []
    files["catalog"]["rate_cards"][0]["rates"] = []
    files["invoices"]["invoices"] = []
    assert run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15").exit_code == 0
    return db


@pytest.mark.parametrize(("mutate", "code", "field"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_exits_1_with_its_code_and_writes_nothing(
    stored_db: Path,
    dataset: Callable[[Files], Path],
    mutate: Callable[[Files], None],
    code: str,
    field: str,
) -> None:
    files = acme()
    mutate(files)
    before = file_digest(stored_db)

    result = run_cli("import", dataset(files), "--db", stored_db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 1, result.stdout
    issues = result.json()["issues"]
    assert (code, field) in {(i["code"], i["field"]) for i in issues}, issues
    assert all(i["source"] and i["message"] for i in issues)
    assert result.json()["data"] == []
    assert file_digest(stored_db) == before


def test_every_problem_is_reported_not_just_the_first(
    db: Path, dataset: Callable[[Files], Path]
) -> None:
    files = acme()
    unknown_product(files)
    invoice_after_generation_start(files)
    files["invoices"]["invoices"][1]["usage_line_items"][0]["quantity"] = "-2.5"

    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    found = {(i["code"], i["invoice_index"], i["line_index"]) for i in result.json()["issues"]}
    assert result.exit_code == 1
    assert found == {
        ("UNKNOWN_PRODUCT", 0, 0),
        ("INVOICE_AFTER_GENERATION_START", 1, None),
        ("NEGATIVE_QUANTITY", 1, 0),
    }
    assert not db.exists()  # nothing stored: not even the empty store a new path would get


def test_the_terminal_shows_counts_per_code_on_stderr(
    db: Path, dataset: Callable[[Files], Path]
) -> None:
    files = acme()
    unknown_product(files)
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15")

    assert result.exit_code == 1
    assert "UNKNOWN_PRODUCT: 1" in result.stderr
    assert "prod_nope" in result.stderr
    assert result.stdout == ""


def test_invalid_json_names_line_and_column(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "invoices.json"
    bad.write_text('{"invoices": [}')
    result = run_cli("import", bad, "--db", db, "--json")

    assert result.exit_code == 1
    (problem,) = result.json()["issues"]
    assert problem["code"] == "INVALID_JSON"
    assert "line 1, column 15" in problem["message"]


def test_a_missing_path_is_a_usage_error(db: Path, tmp_path: Path) -> None:
    result = run_cli("import", tmp_path / "nope", "--db", db)
    assert result.exit_code == 2
    assert "no such file" in result.stderr
    assert not db.exists()


def test_a_bad_as_of_date_is_a_usage_error(db: Path) -> None:
    from tests.conftest import SAMPLES

    result = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", "15/08/2024")
    assert result.exit_code == 2
    assert "as_of" in result.stderr


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_errors_file_holds_every_problem_for_sql(
    db: Path, dataset: Callable[[Files], Path], tmp_path: Path, suffix: str
) -> None:
    files = acme()
    unknown_product(files)
    negative_quantity(files)
    errors = tmp_path / f"errors{suffix}"

    result = run_cli(
        "import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--errors", errors
    )

    assert result.exit_code == 1
    con = duckdb.connect()
    reader = "read_parquet" if suffix == ".parquet" else "read_csv_auto"
    codes = con.execute(
        f"SELECT code, field, invoice_index FROM {reader}('{errors}') ORDER BY code"
    ).fetchall()
    assert codes == [("NEGATIVE_QUANTITY", "quantity", 0), ("UNKNOWN_PRODUCT", "product_id", 0)]


def test_errors_file_must_be_csv_or_parquet(db: Path) -> None:
    from tests.conftest import SAMPLES

    result = run_cli("import", SAMPLES / "acme", "--db", db, "--errors", "problems.txt")
    assert result.exit_code == 2
    assert not db.exists()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('[{"invoices": []}]', "INVALID_SHAPE"),
        ("", "INVALID_JSON"),
        ('{"invoices": "none", "preview": false}', "INVALID_SHAPE"),
    ],
    ids=["a list, not an object", "empty file", "invoices not a list"],
)
def test_json_of_the_wrong_shape_is_named(db: Path, tmp_path: Path, text: str, code: str) -> None:
    bad = tmp_path / "invoices.json"
    bad.write_text(text)
    result = run_cli("import", bad, "--db", db, "--json")

    assert result.exit_code == 1
    assert code in {i["code"] for i in result.json()["issues"]}


@pytest.mark.parametrize("quantity", ["Infinity", '"Infinity"', '""', '"abc"', "-Infinity"])
def test_json_quantities_that_are_not_finite_numbers(
    db: Path, dataset: Callable[[Files], Path], quantity: str
) -> None:
    files = acme()
    directory = dataset(files)
    text = (directory / "invoices.json").read_text()
    (directory / "invoices.json").write_text(
        text.replace('"quantity": 10', f'"quantity": {quantity}', 1)
    )

    result = run_cli("import", directory, "--db", db, "--as-of", "2024-08-15", "--json")

    assert result.exit_code == 1, result.stdout
    assert {(i["code"], i["invoice_index"], i["line_index"]) for i in result.json()["issues"]} == {
        ("INVALID_NUMBER", 0, 0)
    }
