"""The store's connection: opening (and refusing what is no store), schema and migrations,
transactions, reads and writes of frames, a run's working tables and its partitions of
contracts, and an analyst's streamed query. The parts of what is stored add their statements to
it (see the package's docstring)."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import duckdb

from bulk_rating import lazy, resolve
from bulk_rating.errors import (
    DatabaseLockedError,
    NotAStoreError,
    ResourceError,
    ScanError,
    UsageError,
)
from bulk_rating.progress import Progress

if TYPE_CHECKING:
    import polars as pl
    from pydantic import BaseModel

    from bulk_rating import balances, frames, models, rate, reconcile, validate
else:
    # Imported when a method first needs them: the analysts' `sql` command never does, and
    # starts without Polars and the models.
    pl = lazy.Module("polars")
    balances = lazy.Module("bulk_rating.balances")
    frames = lazy.Module("bulk_rating.frames")
    models = lazy.Module("bulk_rating.models")
    rate = lazy.Module("bulk_rating.rate")
    reconcile = lazy.Module("bulk_rating.reconcile")
    validate = lazy.Module("bulk_rating.validate")

Model = TypeVar("Model", bound="BaseModel")
T = TypeVar("T")

# Bump when schema.sql or views.sql change: an older file is upgraded when next opened for writing.
SCHEMA_VERSION = 19

# Version 19 can keep a run's breakdown windows and daily rollups in Parquet files outside the
# store (`_breakdown_files`), read with the store's own through `breakdown_windows` and
# `breakdown_days`.

# Version 18 keeps daily rollups of the breakdown windows (`_priced_days`, read by
# breakdowns_daily; the views give UTC `day` columns): an older file's are made from its windows.
ROLLUPS_FROM = 18

# Version 17 keeps what a reconciliation's report shows (legacy unit, what it compared with, the
# totals per month, each difference's candidates), so a stored run reads as its report did.

# Version 16 records in `_runs` the fingerprint of a usage table run's files (`files_fingerprint`):
# the same files again are known before any row is read. Older runs keep nulls there (and are
# known by their rows' hash, as before).

# Version 14 keeps the HTTP API's answers to Idempotency-Key requests (`_api_answers`).

# Version 13 records in `_runs` the versions of DuckDB and bulk-rating that wrote each run (older
# runs keep nulls there: what wrote them is not known).

# Version 12 names a breakdown row's line item by one key (schema.sql item_key) instead of its
# run, line, rate piece and tier: older breakdown rows are rewritten so, and their line items keyed
# and given their counts of windows.
_KEY_PRICED_WINDOWS = """
UPDATE invoice_line_items SET item_key = item_key(run_id, line_key, rate_key, tier_key)
WHERE type = 'usage';
UPDATE invoice_line_items l SET windows = c.windows
FROM (SELECT run_id, line_key, rate_key, tier_key, count(*) AS windows FROM _priced_windows
      WHERE tier_key IS NOT NULL GROUP BY ALL) c
WHERE l.type = 'usage' AND l.run_id = c.run_id AND l.line_key = c.line_key
  AND l.rate_key = c.rate_key AND l.tier_key = c.tier_key;
CREATE TABLE _priced_windows_keyed AS
SELECT item_key(run_id, line_key, rate_key, tier_key) AS item_key, window_start, quantity
FROM _priced_windows;
DROP TABLE _priced_windows;
ALTER TABLE _priced_windows_keyed RENAME TO _priced_windows;
"""

# The storage format of a file this module creates: the one DuckDB 1.4 introduced, which every
# DuckDB client from 1.4 on reads (the command-line client on PyPI among them), instead of DuckDB
# 2's own, which no 1.x client opens. A file keeps the format it was created in.
STORAGE_COMPATIBILITY = "v1.4.0"
# A usage table's rows, one partition of its contracts at a time (Store.each_partition): the same
# filter as the contracts' own tables (resolve.of_partition), so a row meets its contract's.
PARTITIONED_ROWS = f"SELECT * FROM usage_rows_all WHERE {resolve.IN_PARTITION}"
# Rows a thread holds of one partition while splitting a table (split_rows). Measured on rows of
# the 1B-row benchmark (192,998 contracts, 11 partitions): DuckDB's default of 524,288 rows
# peaked at 2.3 GiB, 122,880 at 1.2 GiB, 30,000 at 0.65 GiB, in the same time.
SPLIT_FLUSH_ROWS = 30_000
# The same of a table split by partition (split_rows): the partition's own files only (the filter
# on the folders' `bucket` is a constant when the statement is bound, and DuckDB reads no other
# folder); all of them while usage_partitions is 1.
SPLIT_ROWS = (
    "SELECT * EXCLUDE (_bucket) FROM usage_rows_all"
    " WHERE getvariable('usage_partitions') = 1 OR _bucket = getvariable('usage_partition')"
)

# Tables a preview copies from the file: what validation and pricing read. Facts (line items and
# breakdown rows) are not needed to price a new batch, so a preview stays cheap on a big store.
REFERENCE_TABLES = (
    "_runs",
    "credit_types",
    "customers",
    "products",
    "rate_cards",
    "rates",
    "contracts",
    "contract_rates",
    "_contract_rate_tiers",
    "invoices",
    "commit_segments",
    "balance_ledger_entries",
    "_draft_usage",
)


def _sql(name: str) -> str:
    return resources.files("bulk_rating").joinpath("sql", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Limits:
    """How much of the machine a run may use. DuckDB spills what does not fit to `temp_directory`."""

    memory: str = "512MB"
    threads: int | None = None
    temp_directory: str | None = None
    # seconds to wait for a database another process holds before giving up (0: refuse at once)
    lock_wait: float = 0.0


# A sandboxed connection (analysts' queries) reaches nothing outside its database file: no file is
# read or written (COPY, EXPORT DATABASE, read_csv, ATTACH of another file), no extension is
# installed or loaded but those built in, and `lock_configuration` then keeps a query from setting
# any of this back (DuckDB also refuses to enable external access on a running database).
SANDBOX: dict[str, Any] = {
    "enable_external_access": False,
    "allow_community_extensions": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


# A catalog object whose name or id holds $search (lower case), or every one when it is null.
_SEARCHED = (
    "($search IS NULL OR contains(lower(o.name), $search) OR contains(lower(o.{0}), $search))"
)


def working_table_schema(name: str) -> dict[str, pl.DataType]:
    """The columns of a working table the store's own statements read (what they are given to
    write): `_drafts`, draft invoices to add (insert_drafts, close_periods); `_shown`, the
    invoices a statement is about. Made when needed: Polars loads on first use."""
    schemas: dict[str, dict[str, pl.DataType]] = {
        "_drafts": frames.DRAFTS,
        "_shown": {"invoice_id": pl.String()},
    }
    return schemas[name]


def _connect(
    path: str, *, read_only: bool = False, limits: Limits = Limits(), sandboxed: bool = False
) -> duckdb.DuckDBPyConnection:
    config: dict[str, Any] = {
        "memory_limit": limits.memory,
        # Row order of stored facts carries no meaning (every read orders), and keeping it would
        # hold rows in memory during large inserts.
        "preserve_insertion_order": False,
        "storage_compatibility_version": STORAGE_COMPATIBILITY,
    }
    if limits.threads:
        config["threads"] = limits.threads
    if limits.temp_directory:
        config["temp_directory"] = limits.temp_directory
    deadline = time.monotonic() + limits.lock_wait
    while True:
        try:
            con = duckdb.connect(path, read_only=read_only, config=config)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise UsageError(f"cannot open database {path}: {exc}", path=path) from exc
            if time.monotonic() < deadline:
                time.sleep(LOCK_POLL_SECONDS)
                continue
            holder = _LOCK_HOLDER.search(str(exc))
            waited = f" after waiting {limits.lock_wait:g} s" if limits.lock_wait else ""
            raise DatabaseLockedError(
                f"{path} is in use by another process"
                + (f" ({holder.group(1)})" if holder else "")
                + f"{waited}; try again when it ends, or wait for it with --wait SECONDS",
                path=path,
            ) from exc
        except duckdb.Error as exc:
            raise UsageError(f"cannot open database {path}: {exc}", path=path) from exc
    con.execute("SET TimeZone = 'UTC'")
    if sandboxed:
        _sandbox(con)
    return con


def _sandbox(con: duckdb.DuckDBPyConnection) -> None:
    """SANDBOX, but for the store's own breakdown files outside it (read only: the statements
    that write files are refused by `stream`), then the configuration locked."""
    known = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_breakdown_files'"
    ).fetchall()[0][0]
    if known:
        files = [path for (path,) in con.execute("SELECT path FROM _breakdown_files").fetchall()]
        if files:
            con.execute("SET allowed_paths = [" + ", ".join(f"'{_quote(f)}'" for f in files) + "]")
    for key, value in SANDBOX.items():
        con.execute(f"SET {key} = {str(value).lower()}")
    con.execute("SET lock_configuration = true")  # last: no SET works after it


LOCK_POLL_SECONDS = 0.25
# DuckDB names the lock's holder: "Conflicting lock is held in /usr/bin/python3 (PID 123) by user x"
_LOCK_HOLDER = re.compile(r"held in (.+? \(PID \d+\))")


def _shortage(exc: BaseException, limits: Limits) -> tuple[str, str] | None:
    """The code and a sentence for a full disk or DuckDB's memory limit behind `exc`, if that is
    what it is."""
    text = str(exc)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return (
            "DISK_FULL",
            "there is no space left on the device that holds the database or its spill folder",
        )
    if "Out of Memory Error" in text:
        return (
            "OUT_OF_MEMORY",
            f"DuckDB reached its memory limit ({limits.memory}): raise BULK_RATING_MEMORY_LIMIT,"
            " or import the data in parts",
        )
    return None


# Bytes 8-11 of every DuckDB database file.
DUCKDB_MAGIC = b"DUCK"


def _refuse_foreign_file(path: Path) -> None:
    """--db names a DuckDB file or a path where one can be made; anything else (a Parquet, CSV
    or JSON file given by mistake, a folder, a device) is refused before it is opened."""
    if not path.exists():
        return
    if not path.is_file():
        raise NotAStoreError(f"--db {path} is not a regular file", path=str(path))
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        raise UsageError(f"cannot read database {path}: {exc.strerror}", path=str(path)) from exc
    if head and head[8:12] != DUCKDB_MAGIC:
        kind = "a Parquet file" if head.startswith(b"PAR1") else "not a DuckDB database"
        raise NotAStoreError(
            f"--db {path} is {kind}; nothing was written to it. Give --db a new file or a"
            " bulk_rating store",
            path=str(path),
        )


@dataclass(frozen=True)
class Streamed:
    """An analyst's result as Store.stream gives it: its Arrow schema, and its record batches,
    each read from DuckDB when asked for."""

    schema: Any  # pyarrow.Schema
    batches: Iterator[Any]  # of pyarrow.RecordBatch


def _batches(reader: Any) -> Iterator[Any]:
    """The batches of DuckDB's Arrow reader; an error met while DuckDB computes them (a failed
    cast, error(), the memory limit) is said as the query's failure."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (duckdb.Error, OSError) as exc:  # DuckDB's errors reach Arrow's reader as OSError
            raise _refused(exc) from exc
        yield batch


# Statements that write files: refused before they run (the sandbox refuses every other file, but
# the store's breakdown files outside it must be readable, and DuckDB's permission to read a file
# is a permission to write it too).
FILE_WRITES = {"COPY", "EXPORT"}


def _refused(exc: Exception) -> UsageError:
    """What an analyst's query that DuckDB refused or could not finish asked for, said plainly."""
    first = str(exc).splitlines()[0]
    if "read-only" in first.lower() or "read only" in first.lower():
        return UsageError(
            f"the database is opened read-only; write statements are refused ({first})"
        )
    if isinstance(exc, duckdb.PermissionException) or first.startswith("Permission Error"):
        return UsageError(
            "refused: a query reads the database only; it reads and writes no other file"
            f" and installs or loads no extension ({first})"
        )
    if "configuration has been locked" in first:
        return UsageError(f"refused: a query cannot change settings ({first})")
    return UsageError(f"the query failed: {first}")


# How often a tracked stage asks DuckDB how far its statement is.
PROGRESS_POLL_SECONDS = 0.2


class _Tracking:
    """A tracked stage's progress over its partitions: partition k of n covers k/n to (k+1)/n
    of the stage, DuckDB's percent of the statement under way placing it inside that span. What
    is reported never goes back (a statement's end and the next one's start can be sampled out
    of order), and partition boundaries are reported as each_partition passes them."""

    def __init__(self, progress: Progress, partitions: int | None) -> None:
        self.progress = progress
        self.partitions = partitions or 1
        # None until each_partition enters the first partition: what runs before (clearing the
        # stage's table) is not part of its progress.
        self.partition: int | None = None if partitions else 0
        self.shown = 0.0
        self.part: tuple[int, int] | None = None  # the last reported
        self.lock = threading.Lock()

    def enter(self, partition: int, partitions: int) -> None:
        with self.lock:
            self.partition, self.partitions = partition, partitions
            self._show(100.0 * partition / partitions)

    def statement(self, percent: float) -> None:
        """DuckDB's percent of the statement under way (-1: none is, or it cannot tell)."""
        with self.lock:
            if percent < 0 or self.partition is None:
                return
            self._show(100.0 * (self.partition + min(percent, 100.0) / 100) / self.partitions)

    def finish(self) -> None:
        with self.lock:
            self.partition = self.partitions - 1
            self._show(100.0)

    def _show(self, percent: float) -> None:
        part = ((self.partition or 0) + 1, self.partitions)
        if percent > self.shown or part != self.part:
            self.shown, self.part = max(percent, self.shown), part
            self.progress.update(self.shown, part)


class StoreBase:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: str,
        *,
        throwaway: bool,
        limits: Limits = Limits(),
        scratch_dir: str | None = None,
    ) -> None:
        self.con = con
        self.path = path
        self.throwaway = throwaway
        self.limits = limits
        self._scratch_dir = scratch_dir  # made for this store alone: removed when it closes
        self._tracking: _Tracking | None = None  # the stage `tracked` is running, if any

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, limits: Limits = Limits()) -> Self:
        _refuse_foreign_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the database's folder {path.parent}: {exc.strerror}",
                path=str(path.parent),
            ) from exc
        store = cls(_connect(str(path), limits=limits), str(path), throwaway=False, limits=limits)
        try:
            store._refuse_foreign_database()
            store._create_schema()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_read_only(cls, path: Path, *, sandboxed: bool = False) -> Self:
        """For reads: DuckDB itself refuses every write on this connection. `sandboxed` (for
        analysts' own SQL) also refuses every file, extension and setting beyond the database
        (see SANDBOX); it locks the configuration of the process's DuckDB instance for that file,
        so it is not for reads that run beside others in one process (the HTTP API's)."""
        if not path.exists():
            raise UsageError(f"no database at {path}", path=str(path))
        _refuse_foreign_file(path)
        store = cls(
            _connect(str(path), read_only=True, sandboxed=sandboxed), str(path), throwaway=True
        )
        if store._schema_version() is None:
            store.close()
            raise NotAStoreError(f"{path} is not a bulk_rating store", path=str(path))
        if store._schema_version() != SCHEMA_VERSION:
            store.close()
            raise UsageError(
                f"{path} was written by another version of bulk-rating; open it for writing once"
                " (any import, or `bulk-rating close`) to bring its tables up to date",
                path=str(path),
            )
        return store

    def stream(self, sql: str, batch_rows: int) -> Streamed:
        """An analyst's query as DuckDB streams it: Arrow record batches of about `batch_rows`
        rows, each computed when the one before has been read, so the result is never whole in
        memory. A write, a file, an extension or a setting is refused with a clear error (a usage
        error: the query asked for it), not a traceback, and so is a failure part way through."""
        try:
            writes = {
                statement.type.name
                for statement in self.con.extract_statements(sql)
                if statement.type.name in FILE_WRITES
            }
            if writes:
                raise UsageError(
                    f"refused: a query reads the database only; it writes no file ({', '.join(sorted(writes))})."
                    " Write a result with --format and --out"
                )
            relation = self.con.sql(sql)
            if relation is None:  # only comments, or nothing
                raise UsageError("the query holds no SQL statement")
            reader = relation.to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise _refused(exc) from exc
        return Streamed(reader.schema, _batches(reader))

    @classmethod
    def scratch(cls) -> Self:
        """An empty in-memory database for computations over frames (a preview's reconciliation)."""
        return cls(_connect(":memory:"), ":memory:", throwaway=True)

    @classmethod
    def throwaway_copy(cls, path: Path, limits: Limits = Limits()) -> Self:
        """An in-memory store holding the file's reference tables; the file is only read."""
        _refuse_foreign_file(path)
        own = None if limits.temp_directory else tempfile.mkdtemp(prefix="bulk-rating-preview-")
        spill = limits.temp_directory or own
        try:
            con = _connect(":memory:", limits=replace(limits, temp_directory=spill))
        except BaseException:
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)
            raise
        store = cls(con, str(path), throwaway=True, limits=limits, scratch_dir=own)
        store._create_schema()
        if path.exists():
            try:
                store.con.execute(f"ATTACH '{_quote(str(path))}' AS stored (READ_ONLY)")
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    raise DatabaseLockedError(
                        f"{path} is in use by another process (the file is locked)", path=str(path)
                    ) from exc
                raise
            stored = {
                name
                for (name,) in store.con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'stored'"
                ).fetchall()
            }
            if stored and "_schema" not in stored:
                store.close()
                raise NotAStoreError(
                    f"{path} is a DuckDB database of another program (no bulk_rating tables)",
                    path=str(path),
                )
            for table in REFERENCE_TABLES:
                if table in stored:
                    store.con.execute(f"DELETE FROM main.{table}")
                    store.con.execute(
                        f"INSERT INTO main.{table} BY NAME SELECT * FROM stored.{table}"
                    )
            store.con.execute("DETACH stored")
        return store

    def interrupt(self) -> None:
        """Stop the statement under way, from another thread (it raises in its own); harmless
        when none is."""
        self.con.interrupt()

    def close(self) -> None:
        self.con.close()
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _refuse_foreign_database(self) -> None:
        """A DuckDB database that another program made is never written into: nothing of ours
        (no `_schema` table) but objects of its own means it is someone else's."""
        if self._schema_version() is not None:
            return
        theirs = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            " UNION ALL SELECT view_name FROM duckdb_views()"
            " WHERE database_name = current_database() AND NOT internal ORDER BY 1 LIMIT 4"
        ).fetchall()
        if theirs:
            names = ", ".join(f"`{name}`" for (name,) in theirs[:3])
            raise NotAStoreError(
                f"{self.path} is a DuckDB database of another program (it holds {names}"
                f"{' and more' if len(theirs) > 3 else ''}, and no bulk_rating tables); nothing was"
                " written to it. Give --db a new file or a bulk_rating store",
                path=self.path,
            )

    def _schema_version(self) -> int | None:
        exists = self.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
            " AND table_name = '_schema'"
        )
        return int(self.scalar("SELECT max(version) FROM _schema")) if exists else None

    def _create_schema(self) -> None:
        """Create or upgrade tables, views and macros, all or nothing; a current schema is left
        untouched."""
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            self.con.execute(_sql("schema.sql"))
            if self.scalar(
                "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database()"
                " AND table_name = '_priced_windows' AND column_name = 'line_key'"
            ):
                self.con.execute(_KEY_PRICED_WINDOWS)
            self.con.execute(_sql("views.sql"))
            if version is not None and version < ROLLUPS_FROM:
                self.con.execute(
                    "INSERT INTO _priced_days "
                    + rate.priced_days_sql(rate.ITEMS_WITH_WINDOWS, bounded=False)
                )
            if not self.scalar(
                "SELECT count(*) FROM credit_types WHERE credit_type_id = ?", [models.USD_CENTS_ID]
            ):
                self.con.execute(
                    "INSERT INTO credit_types VALUES (?, ?, NULL, 0)",
                    [models.USD_CENTS_ID, models.USD_CENTS_NAME],
                )
            self.define_breakdown_views()
            self.con.execute("CREATE TABLE IF NOT EXISTS _schema (version INTEGER)")
            self.con.execute("DELETE FROM _schema")
            self.con.execute("INSERT INTO _schema VALUES (?)", [SCHEMA_VERSION])

    def breakdown_files(self) -> list[str]:
        """The Parquet files outside the store that hold breakdowns (none before version 19)."""
        if not self.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
            " AND table_name = '_breakdown_files'"
        ):
            return []
        return [
            path
            for (path,) in self.con.execute(
                "SELECT path FROM _breakdown_files ORDER BY path"
            ).fetchall()
        ]

    def define_breakdown_views(self) -> None:
        """`breakdown_windows` and `breakdown_days`: the store's rows and those of the files named
        in `_breakdown_files` (views.sql defines them with the store's alone)."""
        for kind, table, columns in (
            ("windows", "_priced_windows", "item_key, window_start, quantity"),
            ("days", "_priced_days", "item_key, day, window_start, quantity, windows"),
        ):
            files = [
                path
                for (path,) in self.con.execute(
                    "SELECT path FROM _breakdown_files WHERE kind = ? ORDER BY path", [kind]
                ).fetchall()
            ]
            outside = (
                f" UNION ALL SELECT {columns} FROM read_parquet("
                + "["
                + ", ".join(f"'{_quote(f)}'" for f in files)
                + "], hive_partitioning = false)"
                if files
                else ""
            )
            self.con.execute(
                f"CREATE OR REPLACE VIEW breakdown_{kind} AS SELECT {columns} FROM {table}{outside}"
            )

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: commit when the block ends normally, roll back on any exception. A
        full disk or the memory limit reached is said as such (ResourceError), never as a bug."""
        self.con.execute("BEGIN TRANSACTION")
        with self.short_of_room("nothing was written"):
            try:
                yield
                self.con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # a fatal error ended it already
                    self.con.execute("ROLLBACK")
                raise
        if self.throwaway:
            return
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            shortage = _shortage(exc, self.limits)
            if shortage is None:
                raise
            code, said = shortage
            raise ResourceError(
                f"the work is committed to {self.path}.wal, but {said}. It is applied to the"
                " file the next time the store is opened, once there is room",
                code=code,
                committed=True,
            ) from exc

    @contextmanager
    def short_of_room(self, outcome: str, *, committed: bool = False) -> Iterator[None]:
        """A full disk or DuckDB's memory limit met inside (said by DuckDB's error, or by an
        error that carries its text, such as a ScanError) is a ResourceError that says so, then
        what became of the work (`outcome`)."""
        try:
            yield
        except Exception as exc:
            shortage = _shortage(exc, self.limits)
            if shortage is None:
                raise
            code, said = shortage
            raise ResourceError(f"{said}; {outcome}", code=code, committed=committed) from exc

    # --- reads -----------------------------------------------------------------------------

    def tracked(
        self,
        stage: str,
        progress: Progress,
        run: Callable[[], T],
        *,
        rows: int | None = None,
        partitions: int | None = None,
    ) -> T:
        """Run a long stage while a thread reports DuckDB's progress through it. `partitions`:
        the stage runs its statement once per partition of contracts (each_partition), and each
        partition counts for its share; otherwise `run` is one statement. `rows`: how many rows
        the stage reads, for rows per second."""
        if not progress.active:
            return run()
        # DuckDB measures a query's progress only while its progress bar is on (it draws none:
        # printing is off); query_progress() says -1 otherwise.
        self.con.execute("SET enable_progress_bar = true")
        self.con.execute("SET enable_progress_bar_print = false")
        tracking = _Tracking(progress, partitions)
        done = threading.Event()

        def poll() -> None:
            while not done.wait(PROGRESS_POLL_SECONDS):
                tracking.statement(self.con.query_progress())

        progress.begin(stage, rows)
        self._tracking = tracking
        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            try:
                result = run()
            finally:
                done.set()
                watcher.join()
                self._tracking = None
            tracking.finish()  # 100 for a stage that ended well only
        finally:
            progress.end()
        return result

    def frame(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        relation = self.con.sql(sql, params=params)
        assert relation is not None
        frame: pl.DataFrame = relation.pl()
        return frame

    def scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        """The single value of a one-row query (fetched to the end, as DuckDB requires)."""
        return self.con.execute(sql, params or []).fetchall()[0][0]

    def rows(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql, params or [])
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def run_with_fingerprint(self, fingerprint: str) -> tuple[int, str] | None:
        """The imported run that recorded these files' fingerprint, and its input hash."""
        found = self.con.execute(
            "SELECT run_id, input_hash FROM _runs WHERE files_fingerprint = ? AND NOT preview"
            " AND status = 'imported' ORDER BY run_id LIMIT 1",
            [fingerprint],
        ).fetchone()
        return None if found is None else (int(found[0]), str(found[1]))

    # --- writes (inside a transaction) -----------------------------------------------------

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        """Append a frame's rows by column name (absent columns stay null). DML only: safe inside
        a run's transaction."""
        if not frame.height:
            return
        names = [
            name
            for (name,) in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
        ]
        ordered = frame.select(
            [pl.col(n) if n in frame.columns else pl.lit(None).alias(n) for n in names]
        )
        self.con.from_arrow(ordered.to_arrow()).insert_into(table)

    def replace(self, table: str, frame: pl.DataFrame) -> None:
        self.con.execute(f"DELETE FROM {table}")
        self.insert(table, frame)

    # --- a run's working relations (temporary: created before its transaction) -------------

    def temp_table(self, name: str, frame: pl.DataFrame) -> None:
        self.con.register("_frame", frame.to_arrow())
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _frame")
        finally:
            self.con.unregister("_frame")

    def temp_table_like(self, name: str, sql: str) -> None:
        """An empty temp table with the columns `sql` gives (filled inside the run's transaction)."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM ({sql}) LIMIT 0")

    def working_tables(self, *names: str) -> None:
        """Empty working tables the store's own writes fill (working_table_schema), made before the
        transaction that uses them (which then holds no DDL)."""
        for name in names:
            self.temp_table(name, frames.empty(working_table_schema(name)))

    def temp_view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def partitioned_rows(self, split: bool = False) -> None:
        """`usage_rows` as the rows of one partition of contracts at a time (PARTITIONED_ROWS,
        SPLIT_ROWS when the table was split): a contract's rows all fall in one partition, so
        what is grouped by line is the same whether made at once or partition by partition.
        Before each_partition, it is all rows."""
        rows = SPLIT_ROWS if split else PARTITIONED_ROWS
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW usage_rows AS {rows}")
        self._partition(1, 0)

    def split_rows(self, files_sql: str, partitions: int, folder: Path) -> list[str]:
        """One pass over a usage table (`files_sql`: its rows, each with `_file_index`
        and `_row` naming where it was read) into Parquet folders `bucket=<k>/`
        of `folder`, one per partition of contracts (the partitions PARTITIONED_ROWS makes). Each
        partition then reads its own rows only, where a filter would read the whole table again:
        at many partitions, one write of the rows costs less than that many reads. Returns the
        files written. A failure to read the table is a ScanError; a full disk or the memory
        limit reached, a ResourceError."""
        # each thread holds this many rows of each partition before writing them (by default
        # 524,288: gigabytes of wide rows at a dozen partitions, where this keeps a few hundred
        # MB); zstd, as exports are: with DuckDB's snappy the copy was twice the table's size
        self.con.execute(f"SET partitioned_write_flush_threshold = {SPLIT_FLUSH_ROWS}")
        try:
            self.con.execute(
                f"COPY (SELECT *, hash(contract_id) % {int(partitions)} AS bucket FROM ({files_sql}))"
                f" TO '{_quote(str(folder))}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (bucket))"
            )
        except duckdb.Error as exc:
            shortage = _shortage(exc, self.limits)
            if shortage is None:
                raise ScanError(f"reading the usage rows failed: {exc}") from exc
            code, said = shortage
            if code == "DISK_FULL":  # not the store's device: the staging folder's
                said = (
                    f"there is no space left in {folder.parent} for a copy of the usage table"
                    " split by partition; set TMPDIR to a disk with room for one"
                )
            raise ResourceError(f"{said}; nothing was written", code=code) from exc
        finally:
            self.con.execute("RESET partitioned_write_flush_threshold")
        return sorted(str(f) for f in folder.rglob("*.parquet"))

    def _partition(self, partitions: int, partition: int) -> None:
        self.con.execute(f"SET VARIABLE usage_partitions = {int(partitions)}")
        self.con.execute(f"SET VARIABLE usage_partition = {int(partition)}")

    def each_partition(self, partitions: int) -> Iterator[int]:
        """Each partition in turn as usage_rows (the caller runs its statements in each), then
        all rows again once the last is done (a failed run is rolled back and closed anyway)."""
        if partitions <= 1:
            self._entered(0, 1)
            yield 0
            return
        for partition in range(partitions):
            self._partition(partitions, partition)
            self._entered(partition, partitions)
            yield partition
        self._partition(1, 0)

    def _entered(self, partition: int, partitions: int) -> None:
        if self._tracking is not None:
            self._tracking.enter(partition, partitions)

    def parquet_rows(self, files: Sequence[str]) -> int:
        """The rows of Parquet files, from their footers (nothing else is read)."""
        try:
            found = self.scalar(
                "SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)", [list(files)]
            )
        except duckdb.Error:  # an unreadable footer: the check's scan names the file
            return 0
        return int(found or 0)

    def replace_with(
        self,
        table: str,
        sql: str,
        params: dict[str, Any] | None = None,
        *,
        partitions: int = 1,
    ) -> int:
        """A working table's rows replaced, inside the run's transaction (no DDL); with
        `partitions`, `sql` (which reads usage_rows) runs once per partition. Returns how many
        rows were inserted."""
        self.con.execute(f"DELETE FROM {table}")
        inserted = 0
        for _ in self.each_partition(partitions):
            done = self.con.execute(f"INSERT INTO {table} BY NAME {sql}", params).fetchone()
            inserted += int(done[0]) if done else 0
        return inserted

    def _rows_checked(self) -> int:
        """The rows the check counted into `_line_weeks`: what pricing reads."""
        return int(self.scalar("SELECT coalesce(sum(rows), 0) FROM _line_weeks"))

    # --- commits and credits ---------------------------------------------------------------

    # --- results ---------------------------------------------------------------------------

    # --- reconciliation --------------------------------------------------------------------


# The catalog tables the API reads, and their id columns.
CATALOG_ID_COLUMNS = {
    "credit_types": "credit_type_id",
    "customers": "customer_id",
    "products": "product_id",
    "rate_cards": "rate_card_id",
}


def rate_card_in_use(rate_card_id: str, contracts: Sequence[str]) -> str:
    """Why a rate card that contracts use cannot change."""
    named = ", ".join(f"`{c}`" for c in contracts[:3]) + (" and more" if len(contracts) > 3 else "")
    return (
        f"rate card `{rate_card_id}` is used by {len(contracts)} stored"
        f" contract{'s' if len(contracts) != 1 else ''} ({named}): their effective rates were"
        " computed from it when they were stored, and a change would silently reprice their"
        " history. Stored rate cards that contracts use are immutable; create a new rate card"
    )


# A breakdown window size: DuckDB's date_trunc unit and the window's width.
_WINDOW_SIZES = {"HOUR": ("hour", "INTERVAL 1 HOUR"), "DAY": ("day", "INTERVAL 1 DAY")}


def runs_schema() -> dict[str, pl.DataType]:
    """The Polars types of a `_runs` row (made when needed: Polars loads on first use)."""
    return {
        "run_id": pl.Int64(),
        "started_at": pl.Datetime("us", "UTC"),
        "finished_at": pl.Datetime("us", "UTC"),
        "inputs": pl.List(pl.String()),
        "input_hash": pl.String(),
        "preview": pl.Boolean(),
        "as_of": pl.Datetime("us", "UTC"),
        "status": pl.String(),
        "rows_read": pl.Int64(),
        "duplicates_collapsed": pl.Int64(),
        "files_fingerprint": pl.String(),
        "duckdb_version": pl.String(),
        "bulk_rating_version": pl.String(),
    }


def _quote(text: str) -> str:
    return re.sub("'", "''", text)
