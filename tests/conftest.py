"""Shared helpers: data sets written as real files, the CLI run in-process or as a process."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import uvicorn
from typer.testing import CliRunner

from bulk_rating.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        # Numbers parsed exactly, as a billing client must.
        return json.loads(self.stdout, parse_float=Decimal)


# The columns of a usage CSV as the tests write it, in the order its rows give their values.
USAGE_CSV_COLUMNS = (
    "customer_id",
    "contract_id",
    "product_id",
    "inclusive_start_date",
    "exclusive_end_date",
    "quantity",
    "breakdown_granularity",
)


def write_usage_csv(path: Path, rows: Iterable[Sequence[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(USAGE_CSV_COLUMNS)
        writer.writerows(rows)


def run_cli(*args: str | Path) -> CliResult:
    """The CLI in-process (fast); stdout and stderr kept apart."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_process(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    """The installed entry point as a separate process, as a user runs it (`env`: variables
    set on top of this process's environment)."""
    done = subprocess.run(
        [sys.executable, "-m", "bulk_rating", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


# what differs between two runs of the same input whatever they do: wall time
TIMINGS = ("stage_seconds", "rows_per_second")


def document_without_timings(stdout: str) -> dict[str, Any]:
    """An `import --json` document, its wall times left out."""
    document: dict[str, Any] = json.loads(stdout)
    for timing in TIMINGS:
        document["summary"].pop(timing)
    return document


def stored_tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the store, rows sorted (a run's times aside)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                " ORDER BY table_name"
            ).fetchall()
        ]
        return {
            name: con.execute(
                f"SELECT * EXCLUDE (started_at, finished_at) FROM {name} ORDER BY ALL"
                if name == "_runs"
                else f"SELECT * FROM {name} ORDER BY ALL"
            ).fetchall()
            for name in tables
        }
    finally:
        con.close()


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def acme() -> dict[str, Any]:
    """The acme sample as dicts, to be changed by a test and written with `write_dataset`."""
    return {
        name: json.loads((SAMPLES / "acme" / f"{name}.json").read_text())
        for name in ("catalog", "contracts", "invoices")
    }


def write_dataset(directory: Path, files: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / f"{name}.json").write_text(json.dumps(content, indent=1))
    return directory


def invoice(
    start: str,
    end: str,
    lines: list[dict[str, Any]],
    *,
    granularity: str | None = None,
    contract: str = "con_acme_2024",
    customer: str = "cus_acme",
    issued: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer,
        "contract_id": contract,
        "credit_type_id": USD,
        "inclusive_start_date": start,
        "exclusive_end_date": end,
        "issue_date": issued or end,
        "usage_line_items": lines,
    }
    if granularity:
        body["breakdown_granularity"] = granularity
    return body


def line(
    product: str,
    start: str,
    end: str,
    quantity: Any = None,
    windows: list[tuple[str, str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product_id": product,
        "inclusive_start_date": start,
        "exclusive_end_date": end,
        **extra,
    }
    if quantity is not None:
        body["quantity"] = quantity
    if windows is not None:
        body["subtotals_with_quantity"] = [
            {"inclusive_start_date": s, "exclusive_end_date": e, "quantity": q}
            for s, e, q in windows
        ]
    return body


def add_rates(files: dict[str, Any], *rates: dict[str, Any]) -> None:
    files["catalog"]["rate_cards"][0]["rates"].extend(rates)


def add_product(files: dict[str, Any], product_id: str, name: str, **extra: Any) -> None:
    files["catalog"]["products"].append({"id": product_id, "name": name, "type": "USAGE", **extra})


def add_events_with_a_price_change(files: dict[str, Any]) -> None:
    """Product `prod_events`: FLAT 3 until 2024-06-15, FLAT 4 from then on."""
    add_product(files, "prod_events", "Events")
    add_rates(
        files,
        {
            "product_id": "prod_events",
            "starting_at": "2024-01-01T00:00:00Z",
            "ending_before": "2024-06-15T00:00:00Z",
            "entitled": True,
            "rate_type": "FLAT",
            "price": 3,
        },
        {
            "product_id": "prod_events",
            "starting_at": "2024-06-15T00:00:00Z",
            "entitled": True,
            "rate_type": "FLAT",
            "price": 4,
        },
    )


def import_json(
    db: Path, make: Callable[[dict[str, Any]], Path], files: dict[str, Any]
) -> dict[str, Any]:
    """Write `files` as a data set, import it as of 2024-08-15, and return the --json document."""
    result = run_cli("import", make(files), "--db", db, "--as-of", "2024-08-15", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document: dict[str, Any] = result.json()
    return document


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def dataset(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    counter = iter(range(1000))

    def make(files: dict[str, Any]) -> Path:
        return write_dataset(tmp_path / f"set{next(counter)}", copy.deepcopy(files))

    return make


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
