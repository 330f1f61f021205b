"""The DuckDB store: the only module that touches DuckDB.

A run is: schema first (DDL, outside any run), then one transaction that writes the catalog,
contracts, drafts and the priced history, then a checkpoint. A preview runs the very same
statements against a throwaway in-memory database seeded from the file (opened read-only), so
preview and import cannot drift apart and the file is never touched.
"""

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
from datetime import datetime
from decimal import Decimal, localcontext
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl
from pydantic import BaseModel

from bulk_rating import __version__, balances, rate, reconcile, validate
from bulk_rating.errors import (
    AmountOverflowError,
    BulkRatingError,
    CatalogConflictError,
    DatabaseLockedError,
    NotAStoreError,
    ResourceError,
    ScanError,
    UsageError,
)
from bulk_rating.models import USD_CENTS_ID, USD_CENTS_NAME, Contract
from bulk_rating.money import MAX_NUMBER, format_decimal
from bulk_rating.progress import NULL_PROGRESS, Progress

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")

# Bump when schema.sql or views.sql change: an older file is upgraded when next opened for writing.
SCHEMA_VERSION = 15

# Version 15 keeps daily rollups of the breakdown windows (`_priced_days`, read by
# breakdowns_daily; the views give UTC `day` columns): an older file's are made from its windows.
ROLLUPS_FROM = 15

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
# A usage table's rows, one partition of its contracts at a time (Store.each_partition): the
# variables are read when a statement is bound, so the filter is a constant of each statement.
PARTITIONED_ROWS = (
    "SELECT * FROM usage_rows_all"
    " WHERE hash(contract_id) % getvariable('usage_partitions') = getvariable('usage_partition')"
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


def _connect(
    path: str, *, read_only: bool = False, limits: Limits = Limits(), sandboxed: bool = False
) -> duckdb.DuckDBPyConnection:
    config: dict[str, Any] = {
        "memory_limit": limits.memory,
        # Row order of stored facts carries no meaning (every read orders), and keeping it would
        # hold rows in memory during large inserts.
        "preserve_insertion_order": False,
        "storage_compatibility_version": STORAGE_COMPATIBILITY,
        **(SANDBOX if sandboxed else {}),
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
        con.execute("SET lock_configuration = true")  # last: no SET works after it
    return con


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


class Store:
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

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, limits: Limits = Limits()) -> Store:
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
    def open_read_only(cls, path: Path, *, sandboxed: bool = False) -> Store:
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

    def query(self, sql: str) -> pl.DataFrame:
        """An analyst's query; a write, a file, an extension or a setting is refused with a clear
        error (a usage error: the query asked for it), not a traceback."""
        try:
            relation = self.con.sql(sql)
            rows: pl.DataFrame = pl.DataFrame() if relation is None else relation.pl()
            return rows
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            if "read-only" in first.lower() or "read only" in first.lower():
                raise UsageError(
                    f"the database is opened read-only; write statements are refused ({first})"
                ) from exc
            if isinstance(exc, duckdb.PermissionException):
                raise UsageError(
                    "refused: a query reads the database only; it reads and writes no other file"
                    f" and installs or loads no extension ({first})"
                ) from exc
            if "configuration has been locked" in first:
                raise UsageError(f"refused: a query cannot change settings ({first})") from exc
            raise UsageError(f"the query failed: {first}") from exc
        except pl.exceptions.PolarsError as exc:  # e.g. INTERVAL or UNION columns
            first = str(exc).splitlines()[0]
            raise UsageError(
                f"a result column has a type that cannot be shown; cast it, e.g. to VARCHAR ({first})"
            ) from exc

    @classmethod
    def scratch(cls) -> Store:
        """An empty in-memory database for computations over frames (a preview's reconciliation)."""
        return cls(_connect(":memory:"), ":memory:", throwaway=True)

    @classmethod
    def throwaway_copy(cls, path: Path, limits: Limits = Limits()) -> Store:
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

    def close(self) -> None:
        self.con.close()
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None

    def __enter__(self) -> Store:
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
                "SELECT count(*) FROM credit_types WHERE credit_type_id = ?", [USD_CENTS_ID]
            ):
                self.con.execute(
                    "INSERT INTO credit_types VALUES (?, ?, NULL, 0)",
                    [USD_CENTS_ID, USD_CENTS_NAME],
                )
            self.con.execute("CREATE TABLE IF NOT EXISTS _schema (version INTEGER)")
            self.con.execute("DELETE FROM _schema")
            self.con.execute("INSERT INTO _schema VALUES (?)", [SCHEMA_VERSION])

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: commit when the block ends normally, roll back on any exception. A
        full disk or the memory limit reached is said as such (ResourceError), never as a bug."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # a fatal error ended it already
                self.con.execute("ROLLBACK")
            shortage = _shortage(exc, self.limits)
            if shortage is None:
                raise
            code, said = shortage
            raise ResourceError(f"{said}; nothing was written", code=code) from exc
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

    # --- reads -----------------------------------------------------------------------------

    def tracked(self, stage: str, progress: Progress, run: Callable[[], T]) -> T:
        """Run one long statement while a thread reports DuckDB's progress through it."""
        if not progress.active:
            return run()
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.2):
                percent = self.con.query_progress()
                if percent >= 0:
                    progress.update(percent)

        progress.begin(stage)
        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            return run()
        finally:
            done.set()
            watcher.join()
            progress.update(100.0)
            progress.end()

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

    def stored_bodies(self, table: str, id_column: str) -> dict[str, str | None]:
        return dict(self.con.execute(f"SELECT {id_column}, body FROM {table}").fetchall())

    def contract_refs(self) -> pl.DataFrame:
        return self.frame(
            """SELECT contract_id, customer_id, rate_card_id, starting_at, ending_before,
                      coalesce(invoice_generation_starting_at, starting_at) AS generation_starts_at
               FROM contracts"""
        )

    def models(self, table: str, id_column: str, model: type[Model]) -> dict[str, Model]:
        """Stored catalog objects as models, from the bodies they were given as."""
        rows = self.con.execute(
            f"SELECT {id_column}, body FROM {table} WHERE body IS NOT NULL"
        ).fetchall()
        return {key: model.model_validate_json(body) for key, body in rows}

    def contract_models(self) -> list[Contract]:
        """The stored contracts as models (their schedules give the billing periods)."""
        return [
            Contract.model_validate_json(body)
            for (body,) in self.con.execute(
                "SELECT body FROM contracts ORDER BY contract_id"
            ).fetchall()
        ]

    def invoice_periods(self) -> pl.DataFrame:
        """Stored invoices that new ones must not overlap (voided ones excepted)."""
        return self.frame(
            """SELECT invoice_id, contract_id, credit_type_id, start_timestamp AS inclusive_start,
                      end_timestamp AS exclusive_end
               FROM invoices WHERE status <> 'VOID'"""
        )

    def fiat_credit_types(self) -> dict[str, str]:
        return dict(
            self.con.execute("SELECT rate_card_id, fiat_credit_type_id FROM rate_cards").fetchall()
        )

    def run_with_hash(self, input_hash: str) -> int | None:
        found = self.scalar(
            "SELECT min(run_id) FROM _runs WHERE input_hash = ? AND NOT preview AND status = 'imported'",
            [input_hash],
        )
        return None if found is None else int(found)

    def next_rate_key(self) -> int:
        return int(self.scalar("SELECT coalesce(max(rate_key), -1) + 1 FROM contract_rates"))

    def next_run_id(self) -> int:
        return int(self.scalar("SELECT coalesce(max(run_id), 0) + 1 FROM _runs"))

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

    def temp_view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def insert_drafts(self, drafts: pl.DataFrame, run_id: int) -> None:
        """D8: the contract's own draft invoice of the period containing the as-of date."""
        self.replace("_drafts", drafts)
        self.con.execute(
            """INSERT INTO invoices BY NAME
               SELECT invoice_id(contract_id, credit_type_id, inclusive_start, exclusive_end) AS invoice_id,
                      customer_id, contract_id, credit_type_id, inclusive_start AS start_timestamp,
                      exclusive_end AS end_timestamp, exclusive_end AS issued_at, 'DRAFT' AS status,
                      'USAGE' AS type, 'CONTRACT_SCHEDULE' AS origin, 0 AS total, 0 AS subtotal,
                      'billable' AS billable_status, '{}'::JSON AS custom_fields, $run_id AS run_id
               FROM _drafts""",
            {"run_id": run_id},
        )

    def check_rows(self, sql: str, partitions: int = 1) -> None:
        """Fill `_line_weeks` (validate.line_weeks_sql): the one scan that checks rows, once per
        partition. A failure to read the files is a ScanError (the pipeline then looks for a
        corrupt file)."""
        try:
            self.replace_with("_line_weeks", sql, partitions=partitions)
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error as exc:
            raise ScanError(f"reading the usage rows failed: {exc}") from exc

    def partitioned_rows(self) -> None:
        """`usage_rows` as the rows of one partition of contracts at a time (PARTITION_FILTER):
        a contract's rows all fall in one partition, so what is grouped by line is the same
        whether made at once or partition by partition. Before each_partition, it is all rows."""
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW usage_rows AS {PARTITIONED_ROWS}")
        self._partition(1, 0)

    def _partition(self, partitions: int, partition: int) -> None:
        self.con.execute(f"SET VARIABLE usage_partitions = {int(partitions)}")
        self.con.execute(f"SET VARIABLE usage_partition = {int(partition)}")

    def each_partition(self, partitions: int) -> Iterator[int]:
        """Each partition in turn as usage_rows (the caller runs its statements in each), then
        all rows again once the last is done (a failed run is rolled back and closed anyway)."""
        if partitions <= 1:
            yield 0
            return
        for partition in range(partitions):
            self._partition(partitions, partition)
            yield partition
        self._partition(1, 0)

    def parquet_rows(self, files: Sequence[str]) -> int:
        """The rows of Parquet files, from their footers (nothing else is read)."""
        try:
            found = self.scalar(
                "SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)", [list(files)]
            )
        except duckdb.Error:  # an unreadable footer: the check's scan names the file
            return 0
        return int(found or 0)

    @staticmethod
    def unreadable_parquet(files: Sequence[str]) -> dict[str, str]:
        """The Parquet files DuckDB cannot read whole on their own, with the reason (every
        column of every row is read: a corrupt page anywhere shows)."""
        found = {}
        with Store.scratch() as scratch:
            for file in files:
                try:
                    scratch.con.execute(
                        "SELECT bit_xor(hash(COLUMNS(*))) FROM read_parquet(?)", [file]
                    ).fetchall()
                except duckdb.Error as exc:
                    found[file] = str(exc).splitlines()[0]
        return found

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

    def price(
        self,
        run_id: int,
        *,
        table: bool,
        rows: str = "usage_rows",
        drafts: bool = False,
        progress: Progress = NULL_PROGRESS,
        partitions: int = 1,
    ) -> None:
        """Run the pricing kernel over `rows` (the rows `_line_weeks` counted), `_line_weeks`,
        `usage_lines` and `usage_invoices`. A usage table's windows in weeks with a tier edge are
        stored once without a tier and placed from there (reading the table once)."""
        params = {"run_id": run_id}
        keep_edges = table and not drafts  # a batch's ties follow its line order, not stored
        windows = "INSERT INTO _priced_windows " + rate.priced_windows_sql(
            table=table, rows=rows, drafts=drafts, keep_edges=keep_edges
        )
        try:
            self.replace_with("_week_tiers", rate.WEEK_TIERS, {"drafts": drafts})

            def store_windows() -> int:
                return sum(
                    self.con.execute(windows, params).fetchall()[0][0]
                    for _ in self.each_partition(partitions)
                )

            stored = self.tracked("pricing and storing rows", progress, store_windows)
            if keep_edges:
                expected = self.scalar(
                    "SELECT coalesce(sum(rows), 0) FROM _line_weeks WHERE NOT draft"
                )
                if stored != expected:  # every row checked is stored once, none twice
                    raise BulkRatingError(
                        f"internal error: {stored} windows priced for {expected} rows checked"
                    )
            self.replace_with(
                "_edge_parts",
                rate.edge_windows_sql(table=table, rows=rows, drafts=drafts, kept=keep_edges),
                params if keep_edges else None,  # kept windows are found by the run's keys
            )
            self.con.execute("INSERT INTO _priced_windows " + rate.EDGE_PARTS_STORED, params)
            self._refuse_large_amounts(drafts)
            items = rate.line_items_sql(drafts=drafts)
            self.tracked(
                "rating invoices",
                progress,
                lambda: self.con.execute(
                    f"INSERT INTO invoice_line_items ({rate.LINE_ITEM_COLUMNS}) " + items, params
                ),
            )
            if self.scalar(rate.SHARED_ITEM_KEYS, params):
                raise BulkRatingError("internal error: two line items share a breakdown key")
            self.tracked("rolling windows up by day", progress, lambda: self._roll_up_days(run_id))
        except duckdb.OutOfRangeException as exc:
            # Quantities and prices are bounded; only an amount of 10^15 units or more gets here
            # (one the check above, in doubles, missed by a rounding).
            raise AmountOverflowError(
                f"an amount or total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc

    def _roll_up_days(self, run_id: int) -> None:
        """The daily rollups of the line items just priced, from their windows (read within the
        items' periods only: on a store of other periods, most of its windows are skipped)."""
        first, last = self.con.execute(
            f"SELECT min(starting_at), max(ending_before) FROM ({rate.PRICED_ITEMS})",
            {"run_id": run_id},
        ).fetchall()[0]
        if first is None:  # no line by the hour or day
            return
        self.con.execute(
            "INSERT INTO _priced_days " + rate.priced_days_sql(rate.PRICED_ITEMS, bounded=True),
            {"run_id": run_id, "from": first, "until": last},
        )

    def _refuse_large_amounts(self, drafts: bool) -> None:
        """An AmountOverflowError naming the line items whose amount would be 10^15 units or
        more: found in doubles (with a margin), then checked exactly."""
        candidates = self.con.execute(
            rate.large_amounts_sql(drafts=drafts, at_least=float(MAX_NUMBER) * 0.999)
        ).fetchall()
        rows = []
        with localcontext() as exact:
            exact.prec = 100  # quantity x price, every digit
            for source, invoice_index, line_index, quantity, price in candidates:
                amount = Decimal(quantity) * Decimal(price)
                if abs(amount) >= MAX_NUMBER:
                    rows.append(
                        {
                            "source": source,
                            "invoice_index": invoice_index,
                            "line_index": line_index,
                            "message": f"invoice {invoice_index}, line {line_index}: the amount"
                            f" {format_decimal(quantity)} x {format_decimal(price)} ="
                            f" {format_decimal(amount)} units is 10^15 or more, more than an"
                            " invoice can hold",
                        }
                    )
        if rows:
            raise AmountOverflowError(f"{len(rows)} amounts reach 10^15 units", rows=rows)

    # --- drafts: the periods a contract bills itself -----------------------------------------

    def keep_draft_usage(self, run_id: int, rows: str = "usage_rows", partitions: int = 1) -> None:
        """The run's rows that fall in a DRAFT period join those kept before (validated already;
        `rows`: with exact duplicates collapsed when there were some; a row kept before is not
        kept again)."""
        for _ in self.each_partition(partitions):
            self._keep_draft_usage(run_id, rows)

    def _keep_draft_usage(self, run_id: int, rows: str) -> None:
        self.con.execute(
            f"""INSERT INTO _draft_usage BY NAME
                SELECT * EXCLUDE (quantity_raw, file_index, pricing_key, presentation_key), quantity_raw::VARCHAR AS quantity_raw,
                       $run AS run_id
                FROM {rows} u
                SEMI JOIN _draft_periods dp
                  ON dp.contract_id = u.contract_id AND dp.inclusive_start <= u.inclusive_start
                 AND u.inclusive_start < dp.exclusive_end
                ANTI JOIN _draft_usage k ON {validate.same_row("u", "k")}""",
            {"run": run_id},
        )

    def clear_drafts(self) -> list[str]:
        """Forget what the drafts with kept usage were rated at: they are rated again, whole."""
        ids = [
            i
            for (i,) in self.con.execute(
                """SELECT DISTINCT invoice_id(u.contract_id, i.credit_type_id, dp.inclusive_start, dp.exclusive_end)
                   FROM _draft_usage u
                   JOIN _draft_periods dp ON dp.contract_id = u.contract_id
                    AND dp.inclusive_start <= u.inclusive_start AND u.inclusive_start < dp.exclusive_end
                   JOIN invoices i ON i.contract_id = u.contract_id AND i.status = 'DRAFT'
                    AND i.start_timestamp = dp.inclusive_start"""
            ).fetchall()
        ]
        self.replace(
            "_shown", pl.DataFrame({"invoice_id": ids}, schema={"invoice_id": pl.String()})
        )
        for facts in ("_priced_windows", "_priced_days"):
            self.con.execute(
                f"""DELETE FROM {facts} WHERE item_key IN (
                       SELECT item_key FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown))"""
            )
        self.con.execute(
            "DELETE FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown)"
        )
        self.con.execute(
            """DELETE FROM balance_ledger_entries
               WHERE invoice_id IN (SELECT invoice_id FROM _shown) AND type LIKE '%DEDUCTION'"""
        )
        return ids

    def total_drafts(self, run_id: int) -> None:
        """A rated draft's totals from its lines; it now belongs to this run."""
        try:
            self.con.execute(
                """UPDATE invoices SET run_id = $run_id, total = t.total, subtotal = t.subtotal
                   FROM (
                       SELECT invoice_id,
                              coalesce(sum(total) FILTER (WHERE commit_kind IS DISTINCT FROM 'POSTPAID'), 0) AS total,
                              coalesce(sum(total) FILTER (WHERE type = 'usage'), 0) AS subtotal
                       FROM invoice_line_items WHERE invoice_id IN (SELECT invoice_id FROM _shown) GROUP BY ALL
                   ) t
                   WHERE invoices.invoice_id = t.invoice_id""",
                {"run_id": run_id},
            )
        except duckdb.OutOfRangeException as exc:
            raise AmountOverflowError(
                f"a draft's total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc

    def total_invoices(self, run_id: int) -> None:
        """The run's invoices, their totals from their lines (postpaid applications aside). An
        invoice whose lines sum to 10^15 units or more is an AmountOverflowError naming it."""
        large = self.con.execute(
            rate.LARGE_SUBTOTALS, {"run_id": run_id, "limit": int(MAX_NUMBER)}
        ).fetchall()
        if large:
            raise AmountOverflowError(
                f"{len(large)} invoice totals reach 10^15 units",
                rows=[
                    {
                        "source": source,
                        "invoice_index": index,
                        "message": f"invoice {index}: its lines add up to at least {units:,} units;"
                        " an invoice total must stay below 10^15",
                    }
                    for source, index, units in large
                ],
            )
        try:
            self.con.execute("INSERT INTO invoices " + rate.INVOICES, {"run_id": run_id})
        except duckdb.OutOfRangeException as exc:
            raise AmountOverflowError(
                f"an invoice total reaches 10^15 units, more than an invoice can hold: {exc}"
            ) from exc

    # --- commits and credits ---------------------------------------------------------------

    def commit_inputs(self, run_id: int) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, Any]]]:
        """What drawdown needs: the run's usage lines of contracts with segments, each line's
        amount per piece of time between segment boundaries, and the segments' balances."""
        lines = self.frame(balances.RUN_LINES, {"run_id": run_id})
        if not lines.height:
            return lines, pl.DataFrame(), []
        pieces = self.frame(balances.LINE_PIECES, {"run_id": run_id})
        segments = self.rows(balances.SEGMENTS)
        return lines, pieces, segments

    # --- the contract's own schedule: closing periods, the provider outbox ------------------

    def generated_invoices(self) -> pl.DataFrame:
        """The invoices the contracts' schedules made (drafts and finalized)."""
        return self.frame(
            """SELECT invoice_id, contract_id, customer_id, credit_type_id, start_timestamp, end_timestamp, status
               FROM invoices WHERE origin = 'CONTRACT_SCHEDULE'"""
        )

    def close_periods(self, as_of: datetime, new_invoices: pl.DataFrame, run_id: int) -> int:
        """Finalize every draft whose period has ended, add the given generated invoices, and
        queue every newly finalized one for its contract's billing provider (DML only)."""
        self.replace("_drafts", new_invoices)
        self.con.execute(
            """INSERT INTO invoices BY NAME
               SELECT invoice_id(d.contract_id, d.credit_type_id, d.inclusive_start, d.exclusive_end) AS invoice_id,
                      d.customer_id, d.contract_id, d.credit_type_id, d.inclusive_start AS start_timestamp,
                      d.exclusive_end AS end_timestamp, d.exclusive_end AS issued_at, 'DRAFT' AS status,
                      'USAGE' AS type, 'CONTRACT_SCHEDULE' AS origin, 0 AS total, 0 AS subtotal,
                      'billable' AS billable_status, '{}'::JSON AS custom_fields, $run AS run_id
               FROM _drafts d""",
            {"run": run_id},
        )
        closing = self.frame(
            """SELECT invoice_id FROM invoices
               WHERE origin = 'CONTRACT_SCHEDULE' AND status = 'DRAFT' AND end_timestamp <= $as_of""",
            {"as_of": as_of},
        )
        self.con.execute(
            """UPDATE invoices SET status = 'FINALIZED'
               WHERE origin = 'CONTRACT_SCHEDULE' AND status = 'DRAFT' AND end_timestamp <= $as_of""",
            {"as_of": as_of},
        )
        self.con.execute(
            """INSERT INTO provider_outbox
               SELECT i.invoice_id, i.contract_id, c.billing_provider, c.delivery_method,
                      stable_id('provider|' || i.invoice_id), 'QUEUED', $as_of, NULL
               FROM invoices i JOIN contracts c USING (contract_id)
               WHERE i.origin = 'CONTRACT_SCHEDULE' AND i.status = 'FINALIZED' AND c.billing_provider IS NOT NULL
                 AND i.invoice_id NOT IN (SELECT invoice_id FROM provider_outbox)""",
            {"as_of": as_of},
        )
        return closing.height

    def billing_providers(self) -> list[str]:
        """The billing providers the stored contracts name."""
        return [
            name
            for (name,) in self.con.execute(
                "SELECT DISTINCT billing_provider FROM contracts"
                " WHERE billing_provider IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]

    def queued_for(self, provider: str) -> pl.DataFrame:
        return self.frame(
            """SELECT o.invoice_id, o.idempotency_key FROM provider_outbox o
               JOIN invoices i USING (invoice_id)
               WHERE o.billing_provider = $provider AND o.status = 'QUEUED' AND i.origin = 'CONTRACT_SCHEDULE'
               ORDER BY i.start_timestamp, o.invoice_id""",
            {"provider": provider},
        )

    def invoices_by_id(self, invoice_ids: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        self.temp_table(
            "_shown", pl.DataFrame({"invoice_id": invoice_ids}, schema={"invoice_id": pl.String()})
        )
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               SEMI JOIN _shown USING (invoice_id)"""
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               SEMI JOIN _shown USING (invoice_id) ORDER BY l.invoice_index, l.position"""
        )
        return invoices, lines

    def api_answer(self, key: str) -> tuple[str, int, str] | None:
        """The request hash, status and body first given for an Idempotency-Key, if any."""
        found = self.con.execute(
            "SELECT request_hash, status, body FROM _api_answers WHERE idempotency_key = ?", [key]
        ).fetchall()
        return (str(found[0][0]), int(found[0][1]), str(found[0][2])) if found else None

    def keep_api_answer(
        self, key: str, request_hash: str, method: str, path: str, status: int, body: str
    ) -> None:
        """Keep the first answer to an Idempotency-Key (a key already kept is left as it was)."""
        with self.transaction():
            self.con.execute(
                """INSERT INTO _api_answers
                   SELECT ?, ?, ?, ?, ?, ?, now()
                   WHERE NOT EXISTS (SELECT 1 FROM _api_answers WHERE idempotency_key = ?)""",
                [key, request_hash, method, path, status, body, key],
            )

    def customer_invoices(
        self,
        customer_id: str,
        *,
        invoice_id: str | None = None,
        status: str | None = None,
        starting_on: datetime | None = None,
        ending_before: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """A customer's invoices (one page, by start and id) and their line items; a read with
        no temporary table, so it runs on a read-only connection."""
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.customer_id = $customer
                 AND ($invoice IS NULL OR i.invoice_id = $invoice)
                 AND ($status IS NULL OR i.status = upper($status))
                 AND ($starting_on IS NULL OR i.start_timestamp >= $starting_on)
                 AND ($ending_before IS NULL OR i.end_timestamp <= $ending_before)
               ORDER BY i.start_timestamp, i.invoice_id LIMIT $limit OFFSET $offset""",
            {
                "customer": customer_id,
                "invoice": invoice_id,
                "status": status,
                "starting_on": starting_on,
                "ending_before": ending_before,
                "limit": limit,
                "offset": offset,
            },
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               WHERE list_contains($ids, l.invoice_id) ORDER BY l.invoice_index, l.position""",
            {"ids": invoices["invoice_id"].to_list()},
        )
        return invoices, lines

    def mark_exported(self, invoice_ids: list[str], at: datetime) -> None:
        self.replace(
            "_shown", pl.DataFrame({"invoice_id": invoice_ids}, schema={"invoice_id": pl.String()})
        )
        self.con.execute(
            """UPDATE provider_outbox SET status = 'EXPORTED', exported_at = $at
               WHERE invoice_id IN (SELECT invoice_id FROM _shown)""",
            {"at": at},
        )

    def catalog_objects(
        self,
        table: str,
        *,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Stored catalog objects of one kind (`credit_types`, `customers`, `products`,
        `rate_cards`) in the order they were stored (their run, then id), each with its `id`,
        `body` (as given, canonical JSON; null for the built-in USD), `created_at` (when the run
        that stored it started) and `created_by` (what that run read). `ids`: only those."""
        id_column = CATALOG_ID_COLUMNS[table]  # a known table, never text from a request
        return self.rows(
            f"""SELECT o.{id_column} AS id, o.name, o.body, r.started_at AS created_at,
                       r.inputs[1] AS created_by
                FROM {table} o LEFT JOIN _runs r ON r.run_id = o.run_id
                WHERE $all OR list_contains($ids, o.{id_column})
                ORDER BY o.run_id NULLS FIRST, o.{id_column}
                LIMIT $limit OFFSET $offset""",
            {
                "all": ids is None,
                "ids": list(ids or []),
                "limit": limit if limit is not None else 2**62,
                "offset": offset,
            },
        )

    def rate_card_contracts(self, rate_card_id: str) -> list[str]:
        """The stored contracts on a rate card."""
        return [
            contract
            for (contract,) in self.con.execute(
                "SELECT contract_id FROM contracts WHERE rate_card_id = ? ORDER BY 1",
                [rate_card_id],
            ).fetchall()
        ]

    def replace_rate_card(
        self, rate_card_id: str, body: str, rates: pl.DataFrame, run_id: int
    ) -> None:
        """A new version of an unused rate card: its body and all its rates replaced (its other
        columns are those of the body and do not change; only rates are added). DML only, inside
        the run's transaction; refused when a stored contract uses the card, since the
        contract's effective rates were computed from it (a change would reprice history)."""
        users = self.rate_card_contracts(rate_card_id)
        if users:
            raise CatalogConflictError(rate_card_in_use(rate_card_id, users))
        self.con.execute(
            "UPDATE rate_cards SET body = ? WHERE rate_card_id = ?", [body, rate_card_id]
        )
        self.con.execute("DELETE FROM rates WHERE rate_card_id = ?", [rate_card_id])
        self.insert("rates", rates.with_columns(run_id=pl.lit(run_id)))

    def credit_type_names(self) -> dict[str, str]:
        rows = self.con.execute("SELECT credit_type_id, name FROM credit_types").fetchall()
        return {str(key): str(name) for key, name in rows}

    def has_customer(self, customer_id: str) -> bool:
        return bool(
            self.scalar("SELECT count(*) FROM customers WHERE customer_id = ?", [customer_id])
        )

    def customer_balances(
        self, customer_id: str, as_of: datetime, *, finalized_only: bool = False
    ) -> pl.DataFrame:
        """Each commit and credit segment of a customer, with what remained of it at `as_of`;
        `finalized_only`: deductions of DRAFT invoices left out."""
        return self.frame(
            """SELECT s.commit_or_credit_id AS id, s.kind AS type, s.segment_id, s.starting_at, s.ending_before,
                      s.credit_type_id, s.amount,
                      s.amount + coalesce(sum(e.amount) FILTER (WHERE e.type LIKE '%DEDUCTION'), 0) AS remaining,
                      s.starting_at <= $as_of AND $as_of < s.ending_before AS active
               FROM commit_segments s
               LEFT JOIN balance_ledger_entries e ON e.segment_id = s.segment_id AND e.timestamp <= $as_of
                 AND NOT ($finalized_only AND e.invoice_id IN (SELECT invoice_id FROM invoices WHERE status = 'DRAFT'))
               WHERE s.customer_id = $customer
               GROUP BY s.commit_or_credit_id, s.kind, s.segment_id, s.starting_at, s.ending_before,
                        s.credit_type_id, s.amount
               ORDER BY s.starting_at, s.segment_id""",
            {"customer": customer_id, "as_of": as_of, "finalized_only": finalized_only},
        )

    def customer_ledger(self, customer_id: str, as_of: datetime) -> pl.DataFrame:
        """A customer's ledger entries up to `as_of`, per segment in time order (a segment's
        start before what is deducted at the same moment)."""
        return self.frame(
            """SELECT commit_or_credit_id, kind, segment_id, type, amount, invoice_id, contract_id, timestamp
               FROM balance_ledger_entries
               WHERE customer_id = $customer AND timestamp <= $as_of
               ORDER BY commit_or_credit_id, timestamp, amount DESC, entry_id""",
            {"customer": customer_id, "as_of": as_of},
        )

    def customer_contracts(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's contracts by start and id: the body each was created with, and when it
        was stored (its run's start)."""
        return self.rows(
            """SELECT c.contract_id, c.body, r.started_at AS created_at
               FROM contracts c LEFT JOIN _runs r USING (run_id)
               WHERE c.customer_id = $customer ORDER BY c.starting_at, c.contract_id""",
            {"customer": customer_id},
        )

    def names(self, table: str) -> dict[str, str]:
        """Id to name of the products or the credit types."""
        id_column = {"products": "product_id", "credit_types": "credit_type_id"}[table]
        return dict(self.con.execute(f"SELECT {id_column}, name FROM {table}").fetchall())

    def breakdown_windows(
        self,
        customer_id: str,
        *,
        starting_on: datetime,
        ending_before: datetime,
        window_size: str,
        status: str | None = None,
        credit_type_id: str | None = None,
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> pl.DataFrame:
        """One page of a customer's invoice windows: every UTC hour or day (`window_size`) of each
        invoice's period, clipped to the period, wholly inside [starting_on, ending_before); by
        issue date, invoice and window."""
        unit, step = _WINDOW_SIZES[window_size]
        order = " DESC" if descending else ""
        return self.frame(
            f"""WITH shown AS (
                    SELECT invoice_id, issued_at, start_timestamp, end_timestamp FROM invoices
                    WHERE customer_id = $customer
                      AND ($status IS NULL OR status = upper($status))
                      AND ($credit_type IS NULL OR credit_type_id = $credit_type)
                      AND start_timestamp < $ending_before AND $starting_on < end_timestamp
                ),
                windows AS (
                    SELECT *, unnest(generate_series(
                        date_trunc('{unit}', greatest(start_timestamp, $starting_on)),
                        least(end_timestamp, $ending_before) - INTERVAL 1 MICROSECOND, {step}
                    )) AS window_start
                    FROM shown
                )
                SELECT invoice_id, window_start,
                       greatest(window_start, start_timestamp) AS breakdown_start,
                       least(window_start + {step}, end_timestamp) AS breakdown_end
                FROM windows
                WHERE greatest(window_start, start_timestamp) >= $starting_on
                  AND least(window_start + {step}, end_timestamp) <= $ending_before
                ORDER BY issued_at{order}, start_timestamp{order}, invoice_id{order}, window_start{order}
                LIMIT $limit OFFSET $offset""",
            {
                "customer": customer_id,
                "status": status,
                "credit_type": credit_type_id,
                "starting_on": starting_on,
                "ending_before": ending_before,
                "limit": limit,
                "offset": offset,
            },
        )

    def breakdown_amounts(
        self, invoice_ids: list[str], window_size: str, first: datetime, last: datetime
    ) -> pl.DataFrame:
        """Each line's quantity and exact total per UTC hour or day window from `first` to `last`
        (window starts). A breakdown row counts in the window holding its last instant: hours
        roll up into their day, a day's usage falls in its last hour; a line without breakdown
        rows (a plain quantity, an applied commit or credit) falls whole in the window holding
        its end, where the ledger dates a deduction."""
        unit, step = _WINDOW_SIZES[window_size]
        return self.frame(
            f"""WITH pieces AS (
                    SELECT invoice_id, line_item_id,
                           date_trunc('{unit}', window_end - INTERVAL 1 MICROSECOND) AS window_start,
                           quantity, amount AS total
                    FROM invoice_breakdowns
                    WHERE list_contains($ids, invoice_id)
                      -- no breakdown row is wider than a day: rows far from the page are skipped
                      AND window_start > $first - INTERVAL 1 DAY AND window_start < $last + {step}
                    UNION ALL
                    SELECT invoice_id, line_item_id,
                           date_trunc('{unit}', ending_before - INTERVAL 1 MICROSECOND) AS window_start,
                           quantity, total
                    FROM invoice_line_items
                    WHERE list_contains($ids, invoice_id) AND coalesce(granularity, 'NONE') NOT IN ('HOUR', 'DAY')
                )
                SELECT invoice_id, line_item_id, window_start, sum(quantity) AS quantity, sum(total) AS total
                FROM pieces WHERE window_start BETWEEN $first AND $last
                GROUP BY ALL""",
            {"ids": invoice_ids, "first": first, "last": last},
        )

    def customer_invoices_by_id(
        self, customer_id: str, invoice_ids: list[str]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Some invoices of a customer and their line items (no temporary table: read-only)."""
        invoices = self.frame(
            """SELECT i.*, c.name AS credit_type_name FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.customer_id = $customer AND list_contains($ids, i.invoice_id)""",
            {"customer": customer_id, "ids": invoice_ids},
        )
        lines = self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l JOIN credit_types c USING (credit_type_id)
               WHERE list_contains($ids, l.invoice_id) ORDER BY l.invoice_index, l.position""",
            {"ids": invoices["invoice_id"].to_list()},
        )
        return invoices, lines

    def has_credit_type(self, credit_type_id: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM credit_types WHERE credit_type_id = ?", [credit_type_id]
            )
        )

    def apply_commits(self, run_id: int, applications: pl.DataFrame) -> None:
        """Applied lines on the invoices and deductions in the ledger, for each application."""
        if not applications.height:
            return
        self.replace("_applications", applications)
        self.con.execute(balances.APPLIED_LINES, {"run_id": run_id})
        self.con.execute(balances.DEDUCTIONS, {"run_id": run_id})

    def record_run(self, row: dict[str, Any], contracts_created: int) -> None:
        """The run's row in `_runs`, its counts taken from what it stored, and what wrote it."""
        row = {**row, "duckdb_version": duckdb.__version__, "bulk_rating_version": __version__}
        self.insert("_runs", pl.DataFrame([row], schema_overrides=RUNS_SCHEMA))
        self.con.execute(
            """UPDATE _runs SET
                   invoices = (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'HISTORICAL_IMPORT'),
                   drafts = (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'CONTRACT_SCHEDULE'),
                   line_items = (SELECT count(*) FROM invoice_line_items WHERE run_id = $run),
                   windows = (SELECT coalesce(sum(windows), 0) FROM invoice_line_items WHERE run_id = $run),
                   contracts = $contracts
               WHERE run_id = $run""",
            {"run": row["run_id"], "contracts": contracts_created},
        )

    # --- results ---------------------------------------------------------------------------

    def run_invoices(self, run_id: int, limit: int | None) -> pl.DataFrame:
        """A run's invoices in input order (then its drafts), at most `limit` of each origin."""
        return self.frame(
            f"""SELECT * FROM (
                    SELECT i.*, c.name AS credit_type_name,
                           row_number() OVER (PARTITION BY i.origin ORDER BY i.invoice_index, i.contract_id) AS n
                    FROM invoices i JOIN credit_types c USING (credit_type_id) WHERE i.run_id = $run)
                {"" if limit is None else f"WHERE n <= {int(limit)}"}
                ORDER BY origin DESC, n""",
            {"run": run_id},
        )

    def run_line_items(self, run_id: int, invoices: pl.DataFrame) -> pl.DataFrame:
        self.temp_table("_shown", invoices.select("invoice_id"))
        return self.frame(
            """SELECT l.*, c.name AS credit_type_name FROM invoice_line_items l
               JOIN credit_types c USING (credit_type_id) SEMI JOIN _shown USING (invoice_id)
               WHERE l.run_id = $run ORDER BY l.invoice_index, l.position""",
            {"run": run_id},
        )

    # --- reconciliation --------------------------------------------------------------------

    def imported_invoices(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The stored historical invoices (not voided) and their usage lines, for reconciliation."""
        invoices = self.frame(
            """SELECT invoice_id, customer_id, contract_id, credit_type_id, start_timestamp, end_timestamp, total
               FROM invoices WHERE origin = 'HISTORICAL_IMPORT' AND status <> 'VOID'"""
        )
        lines = self.frame(
            """SELECT l.invoice_id, l.product_id, l.quantity, l.total FROM invoice_line_items l
               SEMI JOIN invoices i ON i.invoice_id = l.invoice_id AND i.origin = 'HISTORICAL_IMPORT'
               WHERE l.type = 'usage'"""
        )
        return invoices, lines

    def reconcile(
        self,
        legacy: tuple[pl.DataFrame, pl.DataFrame],
        imported: tuple[pl.DataFrame, pl.DataFrame],
        tolerance: int,
        legacy_unit: str = "minor",
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Run the reconciliation diffs; returns invoice diffs, line diffs and the totals per
        month and credit type. Legacy totals in `major` units are turned into minor ones first."""
        for name, frame in zip(
            ("legacy_invoices", "legacy_lines", "imported_invoices", "imported_lines"),
            (*legacy, *imported),
            strict=True,
        ):
            self.temp_table(name, frame)
        if legacy_unit == "major":
            for statement in reconcile.legacy_to_minor_sql():
                self.con.execute(statement)
        params = {"tolerance": tolerance}
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE invoice_diff AS " + reconcile.INVOICE_DIFF, params
        )
        invoices = self.frame("SELECT * FROM invoice_diff")
        lines = self.frame(reconcile.LINE_DIFF, params)
        periods = self.frame(reconcile.PERIOD_TOTALS)
        return invoices, lines, periods

    def record_reconciliation(self, run: dict[str, Any], results: pl.DataFrame) -> int:
        with self.transaction():
            reconciliation_id = int(
                self.scalar(
                    "SELECT coalesce(max(reconciliation_id), 0) + 1 FROM reconciliation_runs"
                )
            )
            self.insert(
                "reconciliation_runs",
                pl.DataFrame([{**run, "reconciliation_id": reconciliation_id}]),
            )
            self.insert(
                "reconciliation_results",
                results.with_columns(reconciliation_id=pl.lit(reconciliation_id)),
            )
        return reconciliation_id

    def run_summary(self, run_id: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """A run's counts and its imported totals per credit type."""
        counts = self.rows(
            """SELECT (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'HISTORICAL_IMPORT') AS invoices,
                      (SELECT count(*) FROM invoice_line_items WHERE run_id = $run) AS line_items,
                      (SELECT coalesce(sum(windows), 0) FROM invoice_line_items WHERE run_id = $run) AS windows,
                      (SELECT count(*) FROM invoices WHERE run_id = $run AND origin = 'CONTRACT_SCHEDULE') AS drafts""",
            {"run": run_id},
        )[0]
        totals = self.rows(
            """SELECT i.credit_type_id, c.name AS credit_type_name, sum(i.total) AS total
               FROM invoices i JOIN credit_types c USING (credit_type_id)
               WHERE i.run_id = $run AND i.origin = 'HISTORICAL_IMPORT' GROUP BY ALL ORDER BY 1""",
            {"run": run_id},
        )
        return counts, totals


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

RUNS_SCHEMA: dict[str, pl.DataType] = {
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
    "duckdb_version": pl.String(),
    "bulk_rating_version": pl.String(),
}


def _quote(text: str) -> str:
    return re.sub("'", "''", text)
