"""The command line: the only module that touches the terminal.

Exit codes: 0 done; 1 data problems (nothing written); 2 usage or configuration errors;
3 internal errors (traceback only with --debug). `--json` prints exactly one JSON document on
stdout; everything else goes to stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bulk_rating import environment, interrupts, lazy, services
from bulk_rating.errors import BulkRatingError, ExitCode, UsageError
from bulk_rating.money import dumps_exact, exact_money, format_decimal, format_money
from bulk_rating.output import check_outside, check_writable, write_atomically

if TYPE_CHECKING:
    import polars as pl

    from bulk_rating import frames, reconcile, results
    from bulk_rating.report import RunReport
    from bulk_rating.settings import Settings
else:
    # Imported by the commands that use them: each starts without what it does not need.
    pl = lazy.Module("polars")
    frames = lazy.Module("bulk_rating.frames")
    reconcile = lazy.Module("bulk_rating.reconcile")
    results = lazy.Module("bulk_rating.results")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
ISSUES_SHOWN_PER_CODE = 5
# Options every command that has them spells the same way.
DbOption = Annotated[Path | None, typer.Option(help="DuckDB file \\[env BULK_RATING_DB]")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
WaitOption = Annotated[
    float | None,
    typer.Option(
        "--wait",
        min=0,
        help="seconds to wait for a database another process holds \\[env BULK_RATING_WAIT]",
    ),
]
INVOICES_SHOWN = 20


class RowsPerSecond(ProgressColumn):
    """Rows a stage read per second so far: its rows times the share done, over the time taken."""

    def render(self, task: Task) -> Text:
        rows, elapsed = task.fields.get("rows"), task.elapsed
        if not rows or not elapsed:
            return Text("")
        rate = rows * task.completed / 100 / elapsed
        shown = f"{rate / 1e6:,.1f}M" if rate >= 1e6 else f"{rate:,.0f}"
        return Text(f"{shown} rows/s", style="progress.data.speed")


class TerminalProgress:
    """A progress bar per long stage on stderr (the pipeline's Progress sink): percent done, rows
    per second, the partition of contracts being read when there are several, time taken."""

    def __init__(self, *, enabled: bool) -> None:
        self.active = enabled
        self._bars = Progress(
            TextColumn("{task.description}{task.fields[part]}"),
            BarColumn(),
            TaskProgressColumn(),
            RowsPerSecond(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self._task: TaskID | None = None
        self._partitions = 1

    def __enter__(self) -> TerminalProgress:
        if self.active:
            self._bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.active:
            self._bars.stop()

    def begin(self, stage: str, rows: int | None = None) -> None:
        self._task = self._bars.add_task(stage, total=100, rows=rows, part="")

    def update(self, percent: float, part: tuple[int, int] = (1, 1)) -> None:
        if self._task is not None:
            partition, self._partitions = part
            shown = (
                f" (partition {partition} of {self._partitions})" if self._partitions > 1 else ""
            )
            self._bars.update(self._task, completed=percent, part=shown)

    def end(self) -> None:
        if self._task is not None:
            shown = f" (in {self._partitions} partitions)" if self._partitions > 1 else ""
            self._bars.update(self._task, part=shown)
            self._bars.stop_task(self._task)  # its time and rows per second stay as they ended
        self._task, self._partitions = None, 1


@app.callback()
def _commands() -> None:
    """Import billing history into a usage-based billing ledger (DuckDB)."""


def _emit_json(document: dict[str, Any]) -> None:
    sys.stdout.write(dumps_exact(document) + "\n")


def _stream_json(report: RunReport) -> None:
    """The run's document, written invoice by invoice: the same JSON as `report.to_dict()`."""

    dump, write = dumps_exact, sys.stdout.write
    write('{"data": [')
    for n, document in enumerate(report.documents()):
        write(("," if n else "") + "\n  " + dump(document))
    write('\n], "drafts": ' + dump(report.drafts) + ',\n"summary": ' + dump(report.summary()))
    write(',\n"issues": ' + dump(report.issues.to_dicts()))
    write(',\n"notices": ' + dump(report.notices.to_dicts()) + "}\n")


def _settings(**values: Any) -> Settings:
    from pydantic import ValidationError  # with the settings model, which `sql` does without

    from bulk_rating.settings import Settings

    try:
        return Settings(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"bad option: {problems}") from exc


def _guarded(action: Callable[[], int], *, as_json: bool, debug: bool) -> None:
    """Run a command; user mistakes become messages and exit codes, never tracebacks."""
    try:
        code = action()
    except BulkRatingError as exc:
        code = int(exc.exit_code)
        if as_json:
            _emit_json({"error": exc.to_dict()})
        err.print(f"[red]error[/red] [{exc.code}] {exc.message}")
        if debug:
            raise
    except (KeyboardInterrupt, Exception) as exc:
        if debug:
            raise
        if isinstance(exc, KeyboardInterrupt) or interrupts.interrupted():
            # before a commit: the transaction was rolled back (after one, interrupts are held)
            interrupts.settle()
            err.print("interrupted: the work under way was rolled back, nothing of it written")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        if as_json:
            _emit_json({"error": {"code": "INTERNAL_ERROR", "message": str(exc)}})
        err.print(f"[red]internal error[/red]: {exc} (run with --debug for the traceback)")
        code = int(ExitCode.INTERNAL)
    raise typer.Exit(code)


def _render_report(report: RunReport, console: Console) -> None:
    summary = report.summary()
    if report.status == "already_imported":
        how = "the same files" if report.matched_by == "files" else "the same content"
        console.print(f"already imported (run {report.previous_run_id}, {how}): nothing written")
        return
    if report.status == "rejected":
        _render_issues(report.issues, console)
        return
    shown = [*report.invoices, *report.drafts]
    title = "preview (nothing saved)" if report.preview else f"imported (run {report.run_id})"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    # ids fold onto a second line rather than lose characters; dates, status and money never
    # break (`--json` has every amount exact)
    table.add_column("contract", overflow="fold")
    for column in ("from", "until", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("lines", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for invoice in shown:
        table.add_row(
            invoice["contract_id"],
            invoice["start_timestamp"][:10],
            invoice["end_timestamp"][:10],
            invoice["status"],
            str(len(invoice["line_items"])),
            format_money(
                invoice["total"], invoice["credit_type"]["id"], invoice["credit_type"]["name"]
            ),
        )
    console.print(table)
    hidden = summary["invoices"] - len(report.invoices)
    if hidden > 0:
        console.print(
            f"... and {hidden:,} more invoices (all of them with --json, or in the database)"
        )
    console.print(
        f"{_count(summary['invoices'], 'invoice')}, {_count(summary['line_items'], 'line')},"
        f" {_count(summary['windows'], 'window')}; {_count(summary['contracts_created'], 'contract')}"
        f" created, {_count(summary['drafts'], 'draft')}"
    )
    if summary["duplicates_collapsed"]:
        console.print(
            f"{summary['duplicates_collapsed']:,} exact duplicate rows collapsed (priced once)"
        )
    for total in summary["totals"]:
        money = (total["total"], total["credit_type_id"], total["credit_type_name"])
        console.print(f"total {format_money(*money)} ({exact_money(money[0], money[2])})")


def _count(number: int, noun: str) -> str:
    """`1 invoice`, `2,500 invoices`."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _closed(done: dict[str, int]) -> str:
    """What a close did: `1 draft finalized, 2 invoices created`."""
    return (
        f"{_count(done['finalized'], 'draft')} finalized,"
        f" {_count(done['invoices_created'], 'invoice')} created"
    )


def _render_issues(issues: pl.DataFrame, console: Console) -> None:
    found = frames.rows_counted(issues)
    console.print(f"[red]{_count(found, 'problem')} found; nothing was written[/red]")
    counts = issues.group_by("code").agg(pl.col("count").sum()).sort("code")
    for code, count in counts.iter_rows():
        console.print(f"  [bold]{code}[/bold]: {count:,}")
        for row in (
            issues.filter(pl.col("code") == code).head(ISSUES_SHOWN_PER_CODE).iter_rows(named=True)
        ):
            console.print(
                f"    {row['source']}: {row['message']}"
                + (f" [{row['field']}]" if row["field"] else "")
            )


@app.command("import")
def import_command(
    paths: Annotated[
        list[Path], typer.Argument(help="data set directories or invoices.json files")
    ],
    db: DbOption = None,
    preview: Annotated[
        bool, typer.Option("--preview", "--dry-run", help="compute, save nothing")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option(help="today for the run: YYYY-MM-DD or a timestamp")
    ] = None,
    as_json: JsonOption = False,
    errors: Annotated[
        Path | None,
        typer.Option(help="write every problem to this file too (.csv or .parquet), for SQL"),
    ] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks of internal errors")] = False,
    wait: WaitOption = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            help="check and price a usage table's contracts in this many partitions, one after"
            " another (default: as many as the memory limit needs)",
            min=1,
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="local (DuckDB here, the default) or spark: a usage table's contracts rated in"
            " buckets on Spark, then stored here (pip install 'bulk-rating\\[spark]')"
        ),
    ] = None,
    buckets: Annotated[
        int | None,
        typer.Option(
            help="Spark: buckets of contracts (default: as many as the rows need, at least 8)",
            min=1,
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(
            help="Spark: the master (local[2], spark://host:7077, yarn; default local[*])"
        ),
    ] = None,
    spark_remote: Annotated[
        str | None,
        typer.Option(help="Spark: a Spark Connect address instead (sc://host:15002)"),
    ] = None,
    stage: Annotated[
        Path | None,
        typer.Option(
            help="Spark: a folder the driver and every worker reach, for the run's snapshot and"
            " the buckets' results (default: a temporary folder here)"
        ),
    ] = None,
    breakdowns: Annotated[
        Path | None,
        typer.Option(
            help="Spark: keep the history's breakdown windows and daily rollups in this folder as"
            " Parquet files by month, named in the store and read through its views"
        ),
    ] = None,
) -> None:
    """Rate historical invoices with the contract's rate card and store them (or preview)."""

    def action() -> int:
        settings = _settings(
            db=db,
            as_of=as_of,
            preview=preview or None,
            wait=wait,
            partitions=partitions,
            engine=engine,
            buckets=buckets,
            spark_master=spark_master,
            spark_remote=spark_remote,
            stage=stage,
            breakdowns=breakdowns,
        )
        with TerminalProgress(enabled=not as_json and err.is_terminal) as progress:
            report = services.import_history(
                *paths,
                settings=settings,
                errors=errors,
                invoice_limit=None if as_json else INVOICES_SHOWN,
                progress=progress,
            )
        # a stored run is reported whole: Ctrl-C is held until it is
        with interrupts.held() if report.run_id is not None else nullcontext():
            for warning in report.warnings:
                err.print(f"[yellow]warning[/yellow] {warning}")
            if as_json:
                _stream_json(report)
            else:
                _render_report(report, out if report.status != "rejected" else err)
        return int(report.exit_code)

    _guarded(action, as_json=as_json, debug=debug)


@app.command("samples")
def samples_command(
    directory: Annotated[Path, typer.Option("--out", help="directory to write the data set into")],
    customers: Annotated[int, typer.Option(min=1)] = 20,
    products: Annotated[int, typer.Option(min=3)] = 6,
    months: Annotated[int, typer.Option(min=1)] = 3,
    seed: Annotated[int, typer.Option()] = 7,
    ids: Annotated[
        str, typer.Option(help="short (cus_0001) or uuid (36-character ids, as exports have)")
    ] = "short",
    order: Annotated[
        str, typer.Option(help="customer (grouped by customer) or time (as exports come)")
    ] = "customer",
    single_file: Annotated[
        bool, typer.Option("--single-file", help="one Parquet file of 1M-row row groups")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a seeded, realistic data set: catalog, contracts and hourly Parquet usage."""

    def action() -> int:
        from bulk_rating import samples

        if ids not in ("short", "uuid") or order not in ("customer", "time"):
            raise UsageError("--ids is short or uuid; --order is customer or time")
        written = samples.generate(
            directory,
            customers=customers,
            products=products,
            months=months,
            seed=seed,
            ids="uuid" if ids == "uuid" else "short",
            order="time" if order == "time" else "customer",
            single_file=single_file,
        )
        if as_json:
            _emit_json(written)
        else:
            out.print(
                f"wrote {written['rows']:,} usage rows for {_count(customers, 'customer')} to {directory}"
                f" (history {written['history_start']} to {written['history_end']});"
                f" import it with --as-of {written['as_of']}"
            )
        return 0

    _guarded(action, as_json=as_json, debug=False)


def _cell(value: object) -> str:
    if value is None:
        return ""
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


class LegacyUnit(StrEnum):
    minor = "minor"
    major = "major"


LegacyUnitOption = Annotated[
    LegacyUnit,
    typer.Option(
        help="unit of the legacy totals: minor = the credit type's smallest (cents),"
        " major = whole units (dollars, multiplied by 100 exactly)"
    ),
]


@app.command("reconcile")
def reconcile_command(
    legacy: Annotated[
        list[Path], typer.Option(help="legacy invoices (and lines): CSV or Parquet; repeatable")
    ],
    data: Annotated[
        list[Path] | None,
        typer.Argument(help="compare a preview of this data instead of the store"),
    ] = None,
    db: DbOption = None,
    tolerance: Annotated[int, typer.Option(min=0, help="whole units a total may differ by")] = 0,
    to: Annotated[
        Path | None,
        typer.Option("--out", help="write the diff (CSV, Parquet) and report.html here"),
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="today for a preview: YYYY-MM-DD")] = None,
    as_json: JsonOption = False,
    legacy_unit: LegacyUnitOption = LegacyUnit.minor,
) -> None:
    """Compare legacy invoices with the imported ones (exit 1 when any differs beyond tolerance)."""

    def action() -> int:
        reconciled = services.reconcile_invoices(
            legacy,
            data or [],
            tolerance=tolerance,
            legacy_unit=legacy_unit.value,
            out=to,
            settings=_settings(db=db, as_of=as_of),
        )
        if as_json:
            sys.stdout.write(dumps_exact(reconciled.to_dict()) + "\n")
        elif reconciled.result.issues.height:
            _render_issues(reconciled.result.issues, err)
        else:
            _render_reconciliation(reconciled.result, out)
        return int(reconciled.exit_code)

    _guarded(action, as_json=as_json, debug=False)


def _render_reconciliation(result: reconcile.Reconciliation, console: Console) -> None:
    counts = result.counts()
    table = Table(
        title="reconciliation" + (" (preview, nothing saved)" if result.preview else ""),
        box=box.SIMPLE_HEAD,
    )
    for column in ("status", "invoices", "lines"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for status in reconcile.STATUSES:
        table.add_row(status, str(counts["invoices"][status]), str(counts["lines"][status]))
    console.print(table)
    for difference in result.money_difference():
        credit_type = difference["credit_type_id"]
        name = result.credit_types.get(credit_type, credit_type)
        amount = difference["difference"]
        console.print(
            f"difference {format_money(amount, credit_type, name)} (imported minus legacy,"
            f" {exact_money(amount, name)})"
        )
    console.print(
        f"{_count(result.differences, 'difference')} beyond a tolerance of {result.tolerance}"
    )


@app.command("nightly")
def nightly_command(
    inbox: Annotated[
        Path, typer.Option(help="folder of data sets and files to import, in name order")
    ],
    db: DbOption = None,
    as_of: Annotated[str | None, typer.Option(help="today for the run: YYYY-MM-DD")] = None,
    legacy: Annotated[
        list[Path] | None, typer.Option(help="legacy invoices to reconcile with")
    ] = None,
    tolerance: Annotated[int, typer.Option(min=0, help="whole units a total may differ by")] = 0,
    reports: Annotated[
        Path, typer.Option(help="a dated report folder is written under this one")
    ] = Path("data/reports"),
    wait: WaitOption = None,
    legacy_unit: LegacyUnitOption = LegacyUnit.minor,
) -> None:
    """The nightly batch: import what is new in the inbox, reconcile, write a dated report."""

    def action() -> int:
        done = services.nightly(
            inbox,
            legacy=legacy or [],
            tolerance=tolerance,
            legacy_unit=legacy_unit.value,
            reports=reports,
            settings=_settings(db=db, as_of=as_of, wait=wait),
        )
        for entry in done.entries:
            found = frames.rows_counted(entry.report.issues)
            out.print(
                f"{entry.entry}: {entry.report.status}"
                + (f" ({_count(found, 'problem')})" if entry.report.issues.height else "")
            )
        out.print(f"close: {_closed(done.closed.to_dict())}")
        if done.reconciled is not None:
            out.print(
                f"reconciliation: {_count(done.reconciled.result.differences, 'difference')}"
                f" beyond a tolerance of {tolerance}"
            )
        out.print(f"report: {done.report}", soft_wrap=True)  # a path, unbroken
        return int(done.exit_code)

    _guarded(action, as_json=False, debug=False)


@app.command("balances")
def balances_command(
    customer: Annotated[str, typer.Option(help="the customer's id")],
    db: DbOption = None,
    as_of: Annotated[
        str | None, typer.Option(help="the moment: YYYY-MM-DD or a timestamp (default now)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every commit and credit segment of a customer and the net balance per credit type."""

    def action() -> int:
        settings = _settings(db=db, as_of=as_of)
        document = services.customer_balances(customer, settings=settings).to_dict()
        if as_json:
            sys.stdout.write(dumps_exact(document) + "\n")
            return 0
        names = services.credit_type_names(settings=settings)

        def money(amount: Decimal, credit_type_id: str) -> str:
            return format_money(amount, credit_type_id, names.get(credit_type_id, credit_type_id))

        table = Table(title=f"balances of {customer}", box=box.SIMPLE_HEAD)
        for column in ("type", "id", "segment"):  # ids whole, folded when the terminal is narrow
            table.add_column(column, overflow="fold")
        for column in ("from", "until"):
            table.add_column(column, no_wrap=True)
        for column in ("amount", "remaining"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in document["data"]:
            table.add_row(
                row["type"],
                row["id"],
                row["segment_id"],
                row["starting_at"][:10],
                row["ending_before"][:10],
                money(row["amount"], row["credit_type_id"]),
                money(row["remaining"], row["credit_type_id"]),
            )
        out.print(table)
        for row in document["net_balance"]:
            out.print(f"net balance {money(row['balance'], row['credit_type_id'])}")
        return 0

    _guarded(action, as_json=as_json, debug=False)


@app.command("close")
def close_command(
    db: DbOption = None,
    as_of: Annotated[str | None, typer.Option(help="today: YYYY-MM-DD (default: today)")] = None,
    wait: WaitOption = None,
) -> None:
    """Finalize the drafts whose period has ended, make the next drafts, queue them for providers."""

    def action() -> int:
        done = services.close_periods(_settings(db=db, as_of=as_of, wait=wait))
        out.print(_closed(done.to_dict()))
        return 0

    _guarded(action, as_json=False, debug=False)


@app.command("export-provider")
def export_provider_command(
    provider: Annotated[str, typer.Option(help="billing provider: stripe, netsuite, ...")],
    to: Annotated[
        Path,
        typer.Option(
            "--out", help="JSON lines file: one invoice per line, with its idempotency key"
        ),
    ],
    db: DbOption = None,
) -> None:
    """Export the finalized generated invoices queued for a provider (never imported ones)."""

    def action() -> int:
        exported = services.export_invoices(provider, to, _settings(db=db))
        if exported.invoices:
            out.print(f"{_count(exported.invoices, 'invoice')} exported to {to}")
        else:
            out.print(f"no invoice is queued for {exported.provider}; {to} was not written")
        return 0

    _guarded(action, as_json=False, debug=False)


@app.command("serve")
def serve_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8080,
    as_of: Annotated[
        str | None, typer.Option(help="today for every request (default: the clock)")
    ] = None,
) -> None:
    """Serve Metronome's API on the store (tokens from BULK_RATING_API_TOKENS)."""

    def action() -> int:
        from bulk_rating import server

        settings = _settings(db=db, as_of=as_of)
        tokens = [t.strip() for t in settings.api_tokens.split(",") if t.strip()]
        server.serve(settings, tokens, host, port)
        return 0

    _guarded(action, as_json=False, debug=False)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


# Rows the table format shows; the rest are counted (every row: --format csv, json or parquet).
TABLE_ROWS_SHOWN = 1_000


@app.command("sql")
def sql_command(
    query: Annotated[str, typer.Argument(help="one read-only SQL statement (see docs/sql.md)")],
    db: DbOption = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help=f"how to write the rows (table: the first {TABLE_ROWS_SHOWN:,} and a count)",
        ),
    ] = OutputFormat.table,
    to: Annotated[Path | None, typer.Option("--out", help="write the rows to this file")] = None,
) -> None:
    """Run a read-only query on the store and stream its rows (writes are refused: the file is
    opened read-only)."""

    def action() -> int:
        if output is OutputFormat.parquet and to is None:
            raise UsageError("--format parquet needs --out FILE")
        _arrow_without_numpy()
        store = environment.database(db)  # all a query reads of the settings
        if to is not None:  # before the query runs; never over the store it reads
            check_writable(to, "--out")
            check_outside(to, [store, Path(f"{store}.wal")], "--out")
        with services.query_rows(query, db=store) as rows:
            if output is OutputFormat.table:
                text = _rows_table(rows.columns, *results.first_rows(rows, TABLE_ROWS_SHOWN))
                if to is None:
                    _to_stdout(lambda sink: sink.write(text.encode()))
                else:
                    write_atomically(to, lambda path: path.write_text(text))
            elif to is None:
                _to_stdout(lambda sink: results.STREAMED[output.value](rows, sink))
            else:  # whole or absent: a query failing part way leaves no file
                write_atomically(to, lambda path: results.write_file(rows, output.value, path))
        return 0

    _guarded(action, as_json=False, debug=False)


def _arrow_without_numpy() -> None:
    """pyarrow imports numpy when it is installed (the Spark extra brings it): about a tenth of
    a second of the `sql` command's start, for conversions a streamed result never makes. The
    command's process loads pyarrow without it."""
    if "pyarrow" in sys.modules or "numpy" in sys.modules:
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # Python's "not installed" mark
    try:
        import pyarrow  # noqa: F401
    finally:
        del sys.modules["numpy"]


def _rows_table(columns: list[str], shown: list[tuple[Any, ...]], total: int) -> str:
    """The rows shown as a table, then how many there are (on a line of its own: a caption
    would wrap to the width of a narrow table)."""
    table = Table(box=box.SIMPLE_HEAD)
    for name in columns:
        table.add_column(name)
    for row in shown:
        table.add_row(*(_cell(v) for v in row))
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(80, out.width), highlight=False)
    console.print(table)
    if total > len(shown):
        console.print(
            f"{_count(total, 'row')}, the first {len(shown):,} shown"
            " (--format csv, json or parquet writes them all)",
            soft_wrap=True,  # one line, however narrow the terminal
        )
    else:
        console.print(_count(total, "row"))
    return buffer.getvalue()


def _to_stdout(write: Callable[[BinaryIO], object]) -> None:
    """`write` the rows to stdout as they come. A reader that stops early (`| head`) ends the
    command quietly: the rows it read are what it asked for."""
    sys.stdout.flush()
    try:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # Python would fail again writing what is left in the buffer as it exits: drop it.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main() -> None:
    interrupts.install()  # again: harmless, and in place when called without __main__
    try:
        app()
    except KeyboardInterrupt:  # while the commands were being built, before any work
        _stop_interrupted()
    except SystemExit as done:  # the option parser's own "Aborted!" on an interrupt
        if done.code not in (0, None, ExitCode.INTERRUPTED) and interrupts.interrupted():
            _stop_interrupted()
        raise


def _stop_interrupted() -> None:
    interrupts.settle()
    err.print("interrupted: nothing was written")
    raise SystemExit(int(ExitCode.INTERRUPTED))
