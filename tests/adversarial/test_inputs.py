"""Users' inputs that must never end in an internal error (issue 19, items 6, 7, 8 and 10): files
that are not regular files, unreadable or corrupt files, JSON nested or sized past its limits,
absurd headers, numbers too large or too precise for the store, timestamps at the edges of the
calendar or finer than a microsecond, a naive --as-of. Each gives its documented code and exit,
names the file (and row and field where there is one), and leaves the store byte for byte as it
was."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.adversarial.conftest import ACME_AS_OF, Snapshot, assert_clean
from tests.conftest import ROOT, SAMPLES, CliResult, acme, query, run_cli, write_dataset

from bulk_rating.load import MAX_COLUMNS, MAX_HEADER_BYTES

CSV_HEADER = "customer_id,contract_id,product_id,inclusive_start_date,exclusive_end_date,quantity,breakdown_granularity"


def _csv_row(
    start: str = "2024-06-01T00:00:00Z", end: str = "2024-06-02T00:00:00Z", q: str = "1"
) -> str:
    return f"cus_acme,con_acme_2024,prod_api_calls,{start},{end},{q},DAY"


def _csv_set(directory: Path, *rows: str, header: str = CSV_HEADER) -> Path:
    """The acme catalog and contracts with a usage.csv of `rows`."""
    directory.mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(SAMPLES / "acme-daily-csv" / name, directory / name)
    (directory / "usage.csv").write_text("\n".join([header, *rows]) + "\n")
    return directory


def _json_set(directory: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    files = acme()
    if change is not None:
        change(files)
    return write_dataset(directory, files)


def _raw(directory: Path, name: str, text: str) -> None:
    """A file of the data set replaced by exact text (numbers JSON cannot carry through dicts)."""
    (directory / f"{name}.json").write_text(text)


def _with_text(name: str, old: str, new: str) -> Callable[[Path], list[str]]:
    """The acme set with `old` replaced by `new` in the text of `<name>.json`."""

    def make(tmp: Path) -> list[str]:
        directory = _json_set(tmp / "set")
        path = directory / f"{name}.json"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return [str(directory)]

    return make


def _invoice_start(value: str) -> Callable[[Path], list[str]]:
    def change(files: dict[str, Any]) -> None:
        files["invoices"]["invoices"][0]["inclusive_start_date"] = value

    return lambda tmp: [str(_json_set(tmp / "set", change))]


def _replace_file(name: str, make_special: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """The acme set with `name` (removed first) made by `make_special`."""

    def make(tmp: Path) -> list[str]:
        directory = _json_set(tmp / "set")
        target = directory / name
        target.unlink(missing_ok=True)
        make_special(target)
        return [str(directory)]

    return make


def _csv_usage(make_special: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        directory = _csv_set(tmp / "set", _csv_row())
        (directory / "usage.csv").unlink()
        make_special(directory / "usage.csv")
        return [str(directory)]

    return make


def _parquet_set(tmp: Path, table: pa.Table) -> Path:
    directory = tmp / "set"
    directory.mkdir()
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(SAMPLES / "acme-daily-parquet" / name, directory / name)
    pq.write_table(table, directory / "usage.parquet")
    return directory


def _usage_table(*, ns_extra: int | None = None) -> pa.Table:
    """The acme daily usage as Parquet; with `ns_extra`, timestamps in nanoseconds and that many
    nanoseconds added to the third row's end."""
    table = pq.read_table(SAMPLES / "acme-daily-parquet" / "usage.parquet")
    if ns_extra is None:
        return table
    nanos = pa.timestamp("ns", tz="UTC")
    ends = table.column("exclusive_end_date").cast(nanos).cast(pa.int64()).to_pylist()
    ends[2] += ns_extra
    columns = {
        name: table.column(name).cast(nanos) if name.endswith("_date") else table.column(name)
        for name in table.column_names
    }
    columns["exclusive_end_date"] = pa.array(ends, pa.int64()).cast(nanos)
    return pa.table(columns)


def _corrupt_pages(tmp: Path) -> list[str]:
    """Parquet whose footer (schema) reads but whose pages are garbage."""
    directory = _parquet_set(tmp, _usage_table())
    path = directory / "usage.parquet"
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return [str(directory)]


def _deep_ndjson(tmp: Path) -> list[str]:
    invoices = acme()["invoices"]["invoices"]
    path = tmp / "invoices.ndjson"
    lines = [json.dumps(i) for i in invoices] + ["[" * 200_000 + "]" * 200_000]
    path.write_text("\n".join(lines) + "\n")
    return [str(path)]


def _big_invoice_total(tmp: Path) -> list[str]:
    """Three lines of 500,000,000,000 x 1,250 cents: each 6.25 x 10^14, together 1.875 x 10^15."""

    def change(files: dict[str, Any]) -> None:
        first = files["invoices"]["invoices"][0]
        first["usage_line_items"] = [
            {
                "product_id": "prod_api_calls",
                "inclusive_start_date": f"2024-06-0{day}T00:00:00Z",
                "exclusive_end_date": f"2024-06-0{day + 1}T00:00:00Z",
                "quantity": 500_000_000_000,
            }
            for day in (1, 2, 3)
        ]
        files["invoices"]["invoices"] = [first]

    return [str(_json_set(tmp / "set", change))]


def _big_line_amount(tmp: Path) -> list[str]:
    def change(files: dict[str, Any]) -> None:
        files["invoices"]["invoices"][1]["usage_line_items"][0]["quantity"] = 999_999_999_999

    return [str(_json_set(tmp / "set", change))]


def _big_table_total(tmp: Path) -> list[str]:
    """Daily rows of 999,999,999,999 x 1,250 cents (each about 1.25 x 10^15): a usage table."""
    rows = [
        _csv_row(f"2024-06-{d:02d}T00:00:00Z", f"2024-06-{d + 1:02d}T00:00:00Z", "700000000000")
        for d in (1, 2)
    ]
    return [str(_csv_set(tmp / "set", *rows))]


def _line_end(value: str) -> Callable[[Path], list[str]]:
    def change(files: dict[str, Any]) -> None:
        files["invoices"]["invoices"][0]["usage_line_items"][0]["exclusive_end_date"] = value

    return lambda tmp: [str(_json_set(tmp / "set", change))]


def _as_of(value: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [str(SAMPLES / "acme"), "--as-of", value]


def _wide_csv(columns: int) -> Callable[[Path], list[str]]:
    """A usage.csv with `columns` columns: the documented ones and `pricing.k<n>` ones, empty."""

    def make(tmp: Path) -> list[str]:
        extra = columns - len(CSV_HEADER.split(","))
        header = CSV_HEADER + "".join(f",pricing.k{n}" for n in range(extra))
        return [str(_csv_set(tmp / "set", _csv_row() + "," * extra, header=header))]

    return make


def _wide_parquet(tmp: Path) -> list[str]:
    table = _usage_table()
    for n in range(MAX_COLUMNS + 1 - table.num_columns):
        table = table.append_column(f"pricing.k{n}", pa.array([None] * table.num_rows, pa.string()))
    return [str(_parquet_set(tmp, table))]


def _long_header(tmp: Path) -> list[str]:
    """A CSV whose header line is 100 MB without a newline: only its first 64 KiB are read."""
    directory = _csv_set(tmp / "set")
    with (directory / "usage.csv").open("wb") as handle:
        for _ in range(100):
            handle.write(b"x" * 1_000_000)
    return [str(directory)]


def _csv_not_utf8(tmp: Path) -> list[str]:
    directory = _csv_set(tmp / "set")
    rows = [_csv_row(f"2024-06-0{d}T00:00:00Z", f"2024-06-0{d + 1}T00:00:00Z") for d in (1, 2, 3)]
    data = (
        "\n".join([CSV_HEADER, *rows])
        .encode()
        .replace(b"2024-06-03T00:00:00Z,2024", b"2024-06-03T00:00:00Z\xff\xfe,2024", 1)
    )
    (directory / "usage.csv").write_bytes(data + b"\n")
    return [str(directory)]


@dataclass(frozen=True)
class Case:
    """An input, the exit it must give, and what the answer must name. `code`: of an issue row
    (exit 1) or of the error (exit 2); `source`: what the issue's source or the error's path ends
    with; `field`, `row`, `invoice_index`: the issue's, when it has one; `says`: texts of the
    message. With `fresh`, the run is against a new database path instead of the acme store."""

    make: Callable[[Path], list[str]]
    exit_code: int
    code: str | None
    source: str | None = None
    field: str | None = None
    row: int | None = None
    invoice_index: int | None = None
    says: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    fresh: bool = False


def _mkfifo(path: Path) -> None:
    os.mkfifo(path)


def _link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    path.mkdir()


CASES: dict[str, Case] = {
    # --- only regular files are read (7: a FIFO or /dev/zero was skipped, exit 0) ----------
    "catalog.json is a directory": Case(
        _replace_file("catalog.json", _directory),
        1,
        "NOT_A_FILE",
        "catalog.json",
        says=("directory",),
    ),
    "catalog.json is a directory, fresh store": Case(
        _replace_file("catalog.json", _directory), 1, "NOT_A_FILE", "catalog.json", fresh=True
    ),
    "invoices.json is a FIFO": Case(
        _replace_file("invoices.json", _mkfifo), 1, "NOT_A_FILE", "invoices.json", says=("FIFO",)
    ),
    "invoices.json links to /dev/zero": Case(
        _replace_file("invoices.json", _link_to_dev_zero),
        1,
        "NOT_A_FILE",
        "invoices.json",
        says=("device",),
    ),
    "invoices.json links to nothing": Case(
        _replace_file("invoices.json", lambda p: p.symlink_to(p.parent / "gone.json")),
        1,
        "NOT_A_FILE",
        "invoices.json",
        says=("broken link",),
    ),
    "usage.csv links to /dev/zero": Case(
        _csv_usage(_link_to_dev_zero), 1, "NOT_A_FILE", "usage.csv", says=("device",)
    ),
    "usage.csv is a FIFO": Case(_csv_usage(_mkfifo), 1, "NOT_A_FILE", "usage.csv"),
    "usage.csv is a directory": Case(_csv_usage(_directory), 1, "NOT_A_FILE", "usage.csv"),
    "the path given is a FIFO": Case(
        lambda tmp: [str(_fifo(tmp / "invoices.json"))],
        2,
        "USAGE_ERROR",
        "invoices.json",
        says=("FIFO",),
    ),
    "the path given is a device": Case(
        lambda tmp: ["/dev/null"], 2, "USAGE_ERROR", "/dev/null", says=("device",)
    ),
    # --- unreadable or corrupt files (6) ---------------------------------------------------
    "catalog.json is binary garbage": Case(
        lambda tmp: [str(_garbage_catalog(tmp))],
        1,
        "INVALID_JSON",
        "catalog.json",
        says=("not UTF-8",),
    ),
    "catalog.json is cut short": Case(
        _with_text("catalog", '"rate_cards"', '"rate_cards": [{"id": '),
        1,
        "INVALID_JSON",
        "catalog.json",
        says=("line",),
    ),
    "Parquet with corrupt pages": Case(_corrupt_pages, 1, "CORRUPT_FILE", "usage.parquet"),
    "Parquet with corrupt pages, split in 7 partitions": Case(
        _corrupt_pages, 1, "CORRUPT_FILE", "usage.parquet", env={"BULK_RATING_PARTITIONS": "7"}
    ),
    # --- JSON limits (6, 8) ----------------------------------------------------------------
    "JSON nested 200,000 deep": Case(
        lambda tmp: [str(_deep_invoices(tmp))], 1, "JSON_TOO_DEEP", "invoices.json"
    ),
    "an NDJSON line nested 200,000 deep": Case(
        _deep_ndjson, 1, "JSON_TOO_DEEP", "invoices.ndjson", row=3
    ),
    "JSON past a sixteenth of the memory budget": Case(
        lambda tmp: [str(_padded_invoices(tmp, 1_100_000))],
        1,
        "JSON_TOO_LARGE",
        "invoices.json",
        says=("1,000,000 bytes",),
        env={"BULK_RATING_MEMORY_LIMIT": "16MB"},
    ),
    # --- usage table headers (6, 8) --------------------------------------------------------
    "a 100 MB CSV header": Case(_long_header, 1, "HEADER_TOO_LARGE", "usage.csv"),
    f"a CSV of {MAX_COLUMNS + 1} columns": Case(
        _wide_csv(MAX_COLUMNS + 1),
        1,
        "HEADER_TOO_LARGE",
        "usage.csv",
        says=(f"{MAX_COLUMNS + 1} columns",),
    ),
    f"a Parquet file of {MAX_COLUMNS + 1} columns": Case(
        _wide_parquet, 1, "HEADER_TOO_LARGE", "usage.parquet"
    ),
    # --- numbers (6) -----------------------------------------------------------------------
    "a 40-digit price": Case(
        _with_text("catalog", '"price": 1250', '"price": ' + "9" * 40),
        1,
        "NUMBER_TOO_LARGE",
        "catalog.json",
        "price",
    ),
    "a price with 40 decimals": Case(
        _with_text("catalog", '"price": 1250', '"price": 0.' + "1" * 40),
        1,
        "TOO_MANY_DECIMALS",
        "catalog.json",
        "price",
    ),
    "a price of 10^7": Case(
        _with_text("catalog", '"price": 1250', '"price": 10000000'),
        1,
        "NUMBER_TOO_LARGE",
        "catalog.json",
        "price",
    ),
    "a tier size of 1e40": Case(
        _with_text("catalog", '"size": 1000', '"size": 1e40'),
        1,
        "NUMBER_TOO_LARGE",
        "catalog.json",
        "size",
    ),
    "a tier size of 10^13": Case(
        _with_text("catalog", '"size": 1000', '"size": 10000000000000'),
        1,
        "NUMBER_TOO_LARGE",
        "catalog.json",
        "tiers",
    ),
    "a 5,000-digit quantity in JSON": Case(
        _with_text("invoices", '"quantity": 10', '"quantity": ' + "9" * 5000),
        1,
        "NUMBER_TOO_LARGE",
        "invoices.json",
        "quantity",
        invoice_index=0,
    ),
    "a 5,000-digit quantity in CSV": Case(
        lambda tmp: [
            str(
                _csv_set(
                    tmp / "set",
                    _csv_row(),
                    _csv_row("2024-06-02T00:00:00Z", "2024-06-03T00:00:00Z", "9" * 5000),
                )
            )
        ],
        1,
        "NUMBER_TOO_LARGE",
        "usage.csv",
        "quantity",
        row=2,
    ),
    "an invoice total of 10^15 made of smaller lines": Case(
        _big_invoice_total,
        1,
        "NUMBER_TOO_LARGE",
        "invoices.json",
        invoice_index=0,
        says=("1,875,000,000,000,000",),
        fresh=True,
    ),
    "a line amount of 10^15": Case(
        _big_line_amount,
        1,
        "NUMBER_TOO_LARGE",
        "invoices.json",
        invoice_index=1,
        says=("999999999999 x 1250",),
        fresh=True,
    ),
    "a usage table's invoice total of 10^15": Case(
        _big_table_total, 1, "NUMBER_TOO_LARGE", "usage.csv", invoice_index=0, fresh=True
    ),
    # --- time (6, 7) -----------------------------------------------------------------------
    "0001-01-01T00:00+05:00": Case(
        _invoice_start("0001-01-01T00:00+05:00"),
        1,
        "INVALID_TIMESTAMP",
        "invoices.json",
        "inclusive_start_date",
        invoice_index=0,
        says=("years 1 to 9999",),
    ),
    "9999-12-31T23:00-05:00": Case(
        _invoice_start("9999-12-31T23:00-05:00"),
        1,
        "INVALID_TIMESTAMP",
        "invoices.json",
        "inclusive_start_date",
        invoice_index=0,
    ),
    "a contract starting 0001-01-01T00:00+05:00": Case(
        _with_text(
            "contracts",
            '"starting_at": "2024-06-01T00:00:00Z"',
            '"starting_at": "0001-01-01T00:00+05:00"',
        ),
        1,
        "INVALID_TIMESTAMP",
        "contracts.json",
        "starting_at",
        fresh=True,
    ),
    "CSV windows at the calendar's edges": Case(
        lambda tmp: [
            str(
                _csv_set(
                    tmp / "set",
                    _csv_row("0001-01-01T00:00:00+05:00", "2024-06-02T00:00:00Z"),
                    _csv_row("9999-12-31T23:00:00-05:00", "2024-06-03T00:00:00Z"),
                )
            )
        ],
        1,
        "INVALID_PERIOD",
        "usage.csv",
        "exclusive_end_date",
        row=2,
    ),
    "a JSON timestamp 1 ns past a boundary": Case(
        _line_end("2024-07-01T00:00:00.000000001Z"),
        1,
        "INVALID_TIMESTAMP",
        "invoices.json",
        "exclusive_end_date",
        invoice_index=0,
        says=("more precise than a microsecond",),
    ),
    "a CSV timestamp 1 ns past a boundary": Case(
        lambda tmp: [
            str(
                _csv_set(
                    tmp / "set",
                    _csv_row(),
                    _csv_row("2024-06-02T00:00:00Z", "2024-06-03T00:00:00.000000001Z"),
                )
            )
        ],
        1,
        "INVALID_TIMESTAMP",
        "usage.csv",
        "exclusive_end_date",
        row=2,
        says=("more precise than a microsecond",),
    ),
    "a Parquet nanosecond timestamp 1 ns past a boundary": Case(
        lambda tmp: [str(_parquet_set(tmp, _usage_table(ns_extra=1)))],
        1,
        "INVALID_TIMESTAMP",
        "usage.parquet",
        "exclusive_end_date",
        row=3,
        says=("2024-06-04T00:00:00.000000001Z",),
    ),
    # --- the command line (6) --------------------------------------------------------------
    "--as-of without an offset": Case(
        _as_of("2024-08-15T00:00:00"), 2, "USAGE_ERROR", says=("as_of", "offset")
    ),
    "--as-of outside the calendar in UTC": Case(
        _as_of("0001-01-01T00:00+05:00"), 2, "USAGE_ERROR", says=("as_of", "9999")
    ),
    # --- a CSV data row not UTF-8 (10) -----------------------------------------------------
    "invalid UTF-8 in a CSV data row": Case(
        _csv_not_utf8, 1, "INVALID_ENCODING", "usage.csv", row=3, says=("line 4",)
    ),
}


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _garbage_catalog(tmp: Path) -> Path:
    directory = _json_set(tmp / "set")
    (directory / "catalog.json").write_bytes(b"\x00\x9f\x92\x96 not json \xff")
    return directory


def _deep_invoices(tmp: Path) -> Path:
    directory = _json_set(tmp / "set")
    _raw(directory, "invoices", "[" * 200_000 + "]" * 200_000)
    return directory


def _padded_invoices(tmp: Path, size: int) -> Path:
    """The acme set, its invoices.json padded with spaces (still valid JSON) to `size` bytes."""
    directory = _json_set(tmp / "set")
    path = directory / "invoices.json"
    text = path.read_text()
    path.write_text(text + " " * (size - len(text.encode())))
    return directory


@pytest.fixture(scope="module")
def acme_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The acme sample imported once (as the `stored` fixture does it), copied for each case."""
    db = tmp_path_factory.mktemp("acme") / "store.duckdb"
    done = run_cli("import", SAMPLES / "acme", "--db", db, "--as-of", ACME_AS_OF)
    assert done.exit_code == 0, done.stderr
    return db


def _store_copy(template: Path, tmp: Path) -> Path:
    db = tmp / "db" / "store.duckdb"
    db.parent.mkdir()
    shutil.copyfile(template, db)
    if Path(f"{template}.wal").exists():
        shutil.copyfile(f"{template}.wal", f"{db}.wal")
    return db


def _answer(result: CliResult) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The issues and the error of a --json run."""
    document = result.json()
    return document.get("issues", []), document.get("error")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_mistake_gets_its_code_and_leaves_the_store_as_it_was(
    case: Case, tmp_path: Path, acme_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "new" / "store.duckdb" if case.fresh else _store_copy(acme_store, tmp_path)
    before = Snapshot.of(db)
    args = case.make(tmp_path)
    if "--as-of" not in args:
        args += ["--as-of", ACME_AS_OF]
    result = run_cli("import", *args, "--db", db, "--json")
    assert_clean(result, case.exit_code, *case.says)
    if case.fresh:  # a new store may be created (its schema), but holds nothing of the run
        assert not db.exists() or query(db, "SELECT count(*) FROM _runs") == [(0,)]
    else:
        assert Snapshot.of(db) == before
    issues, error = _answer(result)
    if case.exit_code == 2:
        assert error is not None, result.stdout
        assert error["code"] == case.code, error
        if case.source is not None:
            assert str(error["path"]).endswith(case.source), error
        return
    found = [i for i in issues if i["code"] == case.code]
    assert found, issues
    named = [
        i
        for i in found
        if (case.source is None or str(i["source"]).endswith(case.source))
        and (case.field is None or i["field"] == case.field)
        and (case.row is None or i["row"] == case.row)
        and (case.invoice_index is None or i["invoice_index"] == case.invoice_index)
    ]
    assert named, found


# --- what is allowed at the limits is read ------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    make: Callable[[Path], list[str]]
    env: dict[str, str] = dataclasses.field(default_factory=dict)


ALLOWED: dict[str, Allowed] = {
    f"a CSV of {MAX_COLUMNS} columns": Allowed(_wide_csv(MAX_COLUMNS)),
    "a CSV header of almost 64 KiB": Allowed(
        lambda tmp: [
            str(
                _csv_set(
                    tmp / "set",
                    _csv_row() + ",",
                    header=CSV_HEADER
                    + ",pricing."
                    + "k" * (MAX_HEADER_BYTES - len(CSV_HEADER) - 20),
                )
            )
        ]
    ),
    "a link to a regular invoices.json": Allowed(
        _replace_file("invoices.json", lambda p: p.symlink_to(SAMPLES / "acme" / "invoices.json"))
    ),
    "Parquet nanoseconds that are whole microseconds": Allowed(
        lambda tmp: [str(_parquet_set(tmp, _usage_table(ns_extra=0)))]
    ),
    "JSON within a small memory budget": Allowed(
        lambda tmp: [str(_padded_invoices(tmp, 900_000))], env={"BULK_RATING_MEMORY_LIMIT": "16MB"}
    ),
    "numbers at their limits": Allowed(
        _with_text("catalog", '"price": 1250', '"price": 999999.9999999999')
    ),
}


@pytest.mark.parametrize("case", ALLOWED.values(), ids=ALLOWED.keys())
def test_what_is_within_the_limits_imports(
    case: Allowed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "store.duckdb"
    result = run_cli("import", *case.make(tmp_path), "--db", db, "--as-of", ACME_AS_OF, "--json")
    assert_clean(result, 0)
    assert result.json()["summary"]["invoices"] >= 1


# --- previews leave no temporary folder (10) -----------------------------------------------


PREVIEWS = {
    "JSON, into the acme store (already imported)": (lambda tmp: SAMPLES / "acme", 0, True),
    "CSV, staged then priced": (lambda tmp: SAMPLES / "acme-daily-csv", 0, False),
    "CSV, staged then rejected": (
        lambda tmp: _csv_set(tmp / "set", _csv_row(q="-1")),
        1,
        False,
    ),
}


@pytest.mark.parametrize(("make", "exit_code", "stored"), PREVIEWS.values(), ids=PREVIEWS.keys())
def test_a_preview_leaves_no_temporary_folder(
    make: Callable[[Path], Path],
    exit_code: int,
    stored: bool,
    tmp_path: Path,
    acme_store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    db = _store_copy(acme_store, tmp_path) if stored else tmp_path / "new.duckdb"
    before = Snapshot.of(db)
    data = make(tmp_path)
    result = run_cli("import", data, "--db", db, "--preview", "--as-of", ACME_AS_OF)
    assert_clean(result, exit_code)
    assert Snapshot.of(db) == before
    assert list(scratch.iterdir()) == []


# --- permissions: exit 2 naming the path (6) -----------------------------------------------
# Tests run as root, who reads and writes whatever the modes say: the command then runs as the
# unprivileged `nobody`, so that the operating system itself refuses.


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temporary folders are private)."""
    folder = Path(tempfile.mkdtemp(prefix="bulk-rating-test-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_unprivileged(*args: str | Path) -> CliResult:
    """The CLI as a process of a user without rights on what the test closed (`nobody`, by
    util-linux's setpriv, when the tests run as root)."""
    command = [sys.executable, "-m", "bulk_rating", *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv is needed to run a process as another user")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if os.geteuid() == 0 and "setpriv:" in done.stderr:
        pytest.skip(f"cannot run a process as another user here: {done.stderr.strip()}")
    return CliResult(done.returncode, done.stdout, done.stderr)


def _open_to_all(*paths: Path) -> None:
    for path in paths:
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            item.chmod(0o777 if item.is_dir() else 0o666)


@pytest.mark.parametrize("closed", ["catalog.json", "usage.parquet"])
def test_a_file_without_read_permission_is_a_usage_error(closed: str, shared_dir: Path) -> None:
    sample = "acme" if closed == "catalog.json" else "acme-daily-parquet"
    data = shutil.copytree(SAMPLES / sample, shared_dir / "set")
    db = shared_dir / "db" / "store.duckdb"
    db.parent.mkdir()
    _open_to_all(data, db.parent)
    (data / closed).chmod(0)
    result = _run_unprivileged("import", data, "--db", db, "--as-of", ACME_AS_OF)
    assert_clean(result, 2, "USAGE_ERROR", f"{data / closed}", "Permission denied")
    assert not db.exists()


@pytest.mark.parametrize("where", ["a folder not writable", "a folder inside it"])
def test_a_database_folder_not_writable_is_a_usage_error(where: str, shared_dir: Path) -> None:
    closed = shared_dir / "closed"
    closed.mkdir()
    closed.chmod(0o555)
    db = (
        closed / "store.duckdb" if where == "a folder not writable" else closed / "sub" / "x.duckdb"
    )
    result = _run_unprivileged("import", SAMPLES / "acme", "--db", db, "--as-of", ACME_AS_OF)
    assert_clean(result, 2, "USAGE_ERROR", str(db.parent), "Permission denied")
    assert list(closed.iterdir()) == []
