"""A run rated in buckets of contracts by other processes (a Spark cluster: spark.py), in three
steps, the middle one partitioned:

1. plan (this process): the run's catalog and contracts checked, its id chosen, and a snapshot
   written to the run's folder: the store's reference tables (`snapshot.duckdb`) and what the
   rating needs to know (`plan.pickle`: the catalog plan, references, as-of, the usage table).
2. rate (one call of `rate_bucket` per bucket, anywhere the folder can be read and written): the
   rows of one bucket of contracts, rated by the kernel (the same `Kernel.check` and
   `Kernel.rate` a local import calls) on a copy of the snapshot, in a transaction never
   committed; what it found and what it changed are written to the bucket's own folder, and one
   manifest row says so.
3. commit (this process, `Bucketed`): the manifest checked (every bucket once, every row read
   once), the problems merged (all or nothing, as a local run), the effects applied to the store
   in the run's transaction.

Every contract is independent of every other (tiers add up per invoice, balances per contract),
so the buckets can be any split of the contracts: the result is the same, byte for byte.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bulk_rating import __version__, catalog, frames, load, validate
from bulk_rating.errors import (
    AmountOverflowError,
    BulkRatingError,
    ResourceError,
    ScanError,
    UsageError,
)
from bulk_rating.kernel import Checked, Kernel, new_drafts
from bulk_rating.progress import NULL_PROGRESS, Progress
from bulk_rating.store import Limits, Store
from bulk_rating.store.buckets import BREAKDOWNS, history_files

# Columns a bucket's rows come with besides the table's own: the file each row was read from
# (a path or a file: URI of one of the table's files) and its 1-based row in that file (a staged
# CSV's rows carry their own `_row`, the CSV's line numbers).
FILE_COLUMN, ROW_COLUMN = "_bulk_file", "_bulk_row"

# One row per bucket rated (rate_bucket's answer).
MANIFEST = pa.schema(
    [
        ("bucket", pa.int64()),
        ("folder", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_read", pa.int64()),
        ("content_sum", pa.string()),  # a sum of 64-bit hashes: more than 64 bits
        ("copies_in_run", pa.int64()),
        ("has_drafts", pa.bool_()),
        ("invoices_checked", pa.bool_()),
        ("problems", pa.int64()),
        ("outcome", pa.string()),  # rated | rejected | overflow | unreadable | failed
        # overflow: its rows (JSON); unreadable: the reason; failed: the error (JSON)
        ("detail", pa.string()),
        ("seconds", pa.float64()),
    ]
)


@dataclass(frozen=True)
class RunPlan:
    """What every bucket of a run needs besides its rows (plan.pickle)."""

    run_id: int
    as_of: datetime
    catalog: catalog.CatalogPlan
    refs: validate.References
    table: load.UsageTable
    buckets: int
    memory_limit: str
    version: str = __version__


def write_plan(
    store: Store,
    folder: Path,
    run_id: int,
    as_of: datetime,
    plan: catalog.CatalogPlan,
    refs: validate.References,
    table: load.UsageTable,
    buckets: int,
    memory_limit: str,
) -> RunPlan:
    """Step 1: the run's snapshot in `folder` (made by the caller, read by every bucket)."""
    store.write_snapshot(folder / "snapshot.duckdb")
    run = RunPlan(run_id, as_of, plan, refs, table, buckets, memory_limit)
    with (folder / "plan.pickle").open("wb") as handle:
        pickle.dump(run, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return run


def read_plan(folder: Path) -> RunPlan:
    with (folder / "plan.pickle").open("rb") as handle:
        run: RunPlan = pickle.load(handle)
    if run.version != __version__:
        raise BulkRatingError(
            f"this worker runs bulk-rating {__version__}, the run was planned by {run.version}:"
            " install the same version on every node"
        )
    return run


class _Discard(Exception):
    """Ends a bucket's transaction: its effects are written, the copy is never committed."""


def rate_bucket(folder: str, bucket: int, rows: pa.Table) -> pa.Table:
    """Step 2: rate one bucket's rows (every row of its contracts, in any order) and write what
    it found and changed to a folder of its own inside the run's `folder`; returns its manifest
    row. Runs in a worker process: only files are shared."""
    started = time.perf_counter()
    run_folder = Path(folder)
    run = read_plan(run_folder)
    own = run_folder / f"bucket-{bucket:05d}-{uuid.uuid4().hex[:12]}"  # a retried task: another
    own.mkdir()
    work = Path(tempfile.mkdtemp(prefix="bulk-rating-bucket-"))
    answer: dict[str, Any] = {
        "bucket": bucket,
        "folder": str(own),
        "rows_in": rows.num_rows,
        "rows_read": 0,
        "content_sum": "0",
        "copies_in_run": 0,
        "has_drafts": False,
        "invoices_checked": False,
        "problems": 0,
        "outcome": "rated",
        "detail": "",
    }
    try:
        table = _bucket_table(run.table, rows, work / "rows.parquet")
        shutil.copyfile(run_folder / "snapshot.duckdb", work / "store.duckdb")
        limits = Limits(memory=run.memory_limit, threads=1, temp_directory=str(work / "spill"))
        with Store.open(work / "store.duckdb", limits) as store:
            _rate(store, run, table, own, answer)
    except BulkRatingError as failed:  # said to the run as it would be said locally
        answer["outcome"] = "failed"
        answer["detail"] = json.dumps(
            {"type": type(failed).__name__, "code": failed.code, "message": failed.message}
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    answer["seconds"] = time.perf_counter() - started
    return pa.Table.from_pylist([answer], schema=MANIFEST)


def _rate(
    store: Store, run: RunPlan, table: load.UsageTable, own: Path, answer: dict[str, Any]
) -> None:
    rating = Kernel(store, load.Dataset(tables=[table], sources=list(table.sources)), 1)
    rating.prepare(run.catalog, run.refs, run.as_of)
    try:
        with store.transaction():
            rating.store_plan(run.catalog, run.run_id)
            checked = rating.check(run.refs, NULL_PROGRESS)
            issues = pl.concat([frames.issues(f) for f in checked.found])
            issues.write_parquet(own / "issues.parquet")
            frames.issues(checked.notices).write_parquet(own / "notices.parquet")
            answer.update(
                rows_read=checked.rows_read,
                content_sum=str(checked.content_sum),
                copies_in_run=checked.copies_in_run,
                has_drafts=checked.has_drafts,
                invoices_checked=checked.invoices_checked,
                problems=issues.height,
            )
            if checked.invoices_checked:  # numbered in the bucket: renumbered for the run
                store.frame(
                    "SELECT invoice_index, contract_id, credit_type_id, inclusive_start,"
                    " exclusive_end FROM usage_invoices"
                ).write_parquet(own / "invoice_keys.parquet")
            if issues.height:
                answer["outcome"] = "rejected"
                raise _Discard
            rating.add_drafts(run.run_id)
            store.keep_before(run.run_id)
            try:
                rating.rate(run.run_id, checked, NULL_PROGRESS)
            except AmountOverflowError as overflow:
                answer["outcome"] = "overflow"
                answer["detail"] = json.dumps({"message": overflow.message, "rows": overflow.rows})
                raise _Discard from None
            store.write_effects(run.run_id, own)
            raise _Discard
    except _Discard:
        pass
    except ScanError as failed:
        answer["outcome"], answer["detail"] = "unreadable", failed.message


def _bucket_table(table: load.UsageTable, rows: pa.Table, target: Path) -> load.UsageTable:
    """The bucket's rows as one Parquet file that names, for each row, the file and row it was
    read from (load.rows_sql reads them so: problems name the same file and row as a local
    run's)."""
    files = rows.column(FILE_COLUMN)
    read = pc.unique(files)
    known = {_normal(f): i for i, f in enumerate(table.files)}
    unknown = [f for f in read.to_pylist() if _normal(f) not in known]
    if unknown:
        raise BulkRatingError(f"rows came from files the run did not plan: {unknown[:3]}")
    index = pc.take(
        pa.array([known[_normal(f)] for f in read.to_pylist()], pa.int64()),
        pc.index_in(files, value_set=read),
    )
    row = rows.column("_row") if table.staged else rows.column(ROW_COLUMN)
    own = [c for c in rows.column_names if c not in (FILE_COLUMN, ROW_COLUMN, "_row", "_source")]
    given = rows.select(own)
    for name, kind in table.kinds.items():
        found = load.arrow_kind(given.schema.field(name).type)
        if found != kind:
            raise UsageError(
                f"the cluster read column `{name}` as {found}, not {kind} as the file holds"
            )
    given = (
        given.append_column("_source", pc.take(pa.array(table.sources, pa.string()), index))
        .append_column("_file_index", index)
        .append_column("_row", pc.cast(row, pa.int64()))
    )
    pq.write_table(given, target, row_group_size=1 << 20)
    return load.UsageTable(
        files=(str(target),),
        kinds=table.kinds,
        staged=table.staged,
        sources=table.sources,
        positions_given=True,
    )


def _normal(file: str) -> str:
    """A file as a plain absolute path (a file: URI, as Spark names what it read, decoded)."""
    parsed = urlparse(file)
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve())
    if parsed.scheme and len(parsed.scheme) > 1:  # another store's URI (s3:, dbfs:): as given
        return file
    return str(Path(file).resolve())


class Engine(Protocol):
    """What runs step 2 (spark.SparkEngine): started once, then every bucket of the run planned
    in a folder rated, one manifest row per bucket that had rows."""

    def start(self) -> None: ...

    def rate(self, folder: str, table: load.UsageTable, count: int) -> pa.Table: ...


class Bucketed(Kernel):
    """Step 3: a run whose rows were rated in buckets elsewhere, as the pipeline's rating: its
    check is the buckets' problems merged, its rating their effects applied."""

    def __init__(
        self,
        store: Store,
        dataset: load.Dataset,
        buckets: int,
        engine: Engine,
        folder: Path,
        memory_limit: str,
        breakdowns: Path | None = None,
    ) -> None:
        super().__init__(store, dataset, buckets)
        self.engine, self.folder, self.memory_limit = engine, folder, memory_limit
        self.breakdowns = breakdowns  # where the history's breakdowns are kept, if not the store
        self.manifest: list[dict[str, Any]] = []
        self.run_id = 0
        self.seconds: dict[str, float] = {}  # where the time of steps 1 and 2 went

    def prepare(
        self,
        plan: catalog.CatalogPlan,
        refs: validate.References,
        as_of: datetime,
        progress: Progress = NULL_PROGRESS,
    ) -> load.UsageTable | None:
        """Steps 1 and 2: the snapshot, then every bucket rated by the engine."""
        started = time.perf_counter()
        table = self.dataset.tables[0]
        self.table = table
        store = self.store
        self.run_id = store.next_run_id()
        write_plan(
            store,
            self.folder,
            self.run_id,
            as_of,
            plan,
            refs,
            table,
            self.partitions,
            self.memory_limit,
        )
        store.working_tables("_drafts", "_shown")
        self.new_drafts = new_drafts(store, plan, as_of)
        self.seconds["plan"] = time.perf_counter() - started
        started = time.perf_counter()
        self.engine.start()
        self.seconds["engine start"] = time.perf_counter() - started
        started = time.perf_counter()
        answered = self.engine.rate(str(self.folder), table, self.partitions)
        self.seconds["rate in buckets"] = time.perf_counter() - started
        # the buckets' own time (each in its worker, side by side): the rest is the engine's
        self.seconds["buckets, summed"] = sum(answered.column("seconds").to_pylist())
        self.manifest = sorted(answered.to_pylist(), key=lambda r: r["bucket"])
        self._check_manifest(store.parquet_rows(table.files))
        return table

    def _check_manifest(self, rows: int) -> None:
        buckets = [r["bucket"] for r in self.manifest]
        if buckets != sorted(set(buckets)) or any(b >= self.partitions for b in buckets):
            raise BulkRatingError(f"internal error: buckets answered {buckets}")
        rows_in = sum(r["rows_in"] for r in self.manifest)
        if rows_in != rows:
            raise BulkRatingError(
                f"internal error: the buckets were given {rows_in} rows of the {rows} read"
            )
        for r in self.manifest:
            if r["outcome"] != "unreadable" and r["rows_read"] != r["rows_in"]:
                raise BulkRatingError(
                    f"internal error: bucket {r['bucket']} read {r['rows_read']} of its"
                    f" {r['rows_in']} rows"
                )

    def check(self, refs: validate.References, progress: Progress) -> Checked:
        """The buckets' findings as one run's: problems of rows when any bucket found some (a
        local run then checks no invoice), else the invoices' problems."""
        answers = self.manifest
        failed = [json.loads(r["detail"]) for r in answers if r["outcome"] == "failed"]
        if failed:
            raise _said_again(failed[0], self.memory_limit)
        unreadable = [r for r in answers if r["outcome"] == "unreadable"]
        if unreadable:
            raise ScanError(unreadable[0]["detail"])
        of_rows = any(r["problems"] and not r["invoices_checked"] for r in answers)
        kept = [r for r in answers if r["problems"] and (not of_rows or not r["invoices_checked"])]
        found = _read_issues([r["folder"] for r in kept], "issues.parquet", keep_folder=True)
        if not of_rows:
            found = _numbered_for_the_run(found, [r["folder"] for r in answers])
        return Checked(
            found=[found.drop("folder")],
            rows_read=sum(r["rows_read"] for r in answers),
            content_sum=sum(int(r["content_sum"]) for r in answers),
            has_drafts=any(r["has_drafts"] for r in answers),
            copies_in_run=sum(r["copies_in_run"] for r in answers),
            notices=_read_issues([r["folder"] for r in answers], "notices.parquet"),
            invoices_checked=not of_rows,
        )

    def rate(self, run_id: int, checked: Checked, progress: Progress) -> None:
        if run_id != self.run_id:  # another process wrote a run since the plan
            raise BulkRatingError(f"internal error: run {self.run_id} was planned, {run_id} began")
        overflowed = [json.loads(r["detail"]) for r in self.manifest if r["outcome"] == "overflow"]
        if overflowed:
            rows = [
                {**row, "folder": r["folder"]}
                for r in self.manifest
                if r["outcome"] == "overflow"
                for row in json.loads(r["detail"])["rows"]
            ]
            if rows:
                numbered = _numbered_for_the_run(
                    pl.DataFrame(rows, infer_schema_length=None),
                    [r["folder"] for r in self.manifest],
                )
                rows = numbered.drop("folder").to_dicts()
            raise AmountOverflowError(overflowed[0]["message"], rows=rows or None)
        folders = [r["folder"] for r in self.manifest]
        self.store.apply_effects(folders, history_in_store=self.breakdowns is None)
        self.store.renumber_invoices(run_id)
        twice = self.store.keys_twice(run_id)
        if twice:
            raise BulkRatingError(f"internal error: keys stored twice: {', '.join(twice)}")
        if self.breakdowns is not None:
            self.store.add_breakdown_files(run_id, _placed(folders, self.breakdowns, run_id))


def _placed(folders: Sequence[str], breakdowns: Path, run_id: int) -> list[tuple[str, str, str]]:
    """The buckets' files of the history's breakdowns moved to `breakdowns/<kind>/month=M/`, one
    name per run and bucket (a run that is not committed after this leaves its files there, named
    nowhere: never read)."""
    placed = []
    for kind in BREAKDOWNS:
        for number, file in enumerate(history_files(folders, kind)):
            month = file.parent.name  # month=YYYY-MM
            target = (
                breakdowns / kind / month / f"run-{run_id}-{file.parents[2].name}-{number}.parquet"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(file, target)
            placed.append((kind, month.removeprefix("month="), str(target.resolve())))
    return placed


def _said_again(failed: dict[str, str], memory_limit: str) -> BulkRatingError:
    """A bucket's error as this process raises it."""
    if failed["type"] == "ResourceError":
        message = failed["message"]
        if failed["code"] == "OUT_OF_MEMORY":
            message = (
                f"a bucket of contracts reached its memory limit ({memory_limit}): give more"
                " buckets (--buckets) or a higher BULK_RATING_MEMORY_LIMIT; nothing was written"
            )
        return ResourceError(message, code=failed["code"])
    if failed["type"] == "UsageError":
        return UsageError(failed["message"])
    return BulkRatingError(failed["message"], code=failed["code"])


def _read_issues(folders: Sequence[str], name: str, keep_folder: bool = False) -> pl.DataFrame:
    """The issues the buckets wrote (with the folder of each, when asked)."""
    paths = [Path(f) / name for f in folders if (Path(f) / name).exists()]
    found = [
        frames.issues(pl.read_parquet(p)).with_columns(folder=pl.lit(str(p.parent))) for p in paths
    ]
    if not found:
        found = [frames.empty(frames.ISSUES).with_columns(folder=pl.lit(None, pl.String))]
    issues = pl.concat(found, how="diagonal_relaxed")
    return issues if keep_folder else frames.issues(issues)


# How a message names an invoice of the run by its number (batch._where, assemble._issue,
# store.rating's overflow messages): at its start, and as the invoice another one overlaps.
_NAMED_INVOICE = r"^invoice (\d+)"
_OVERLAPPED_INVOICE = r"overlaps invoice (\d+) "


def _numbered_for_the_run(rows: pl.DataFrame, folders: Sequence[str]) -> pl.DataFrame:
    """Rows a bucket numbered invoices in (`invoice_index`, messages naming "invoice N"; a
    `folder` column says which bucket), numbered as one local run numbers the run's invoices:
    by contract, credit type and period over every bucket's (assemble)."""
    if not rows.height or rows["invoice_index"].null_count() == rows.height:
        return rows
    keys = ["contract_id", "credit_type_id", "inclusive_start", "exclusive_end"]
    numbers = (
        pl.concat(
            [
                pl.read_parquet(Path(f) / "invoice_keys.parquet").with_columns(folder=pl.lit(f))
                for f in folders
                if (Path(f) / "invoice_keys.parquet").exists()
            ]
        )
        .sort(keys, nulls_last=False)
        .with_columns(number=pl.struct(keys).rank("dense").cast(pl.Int64) - 1)
        .select("folder", "invoice_index", "number")
    )

    def renumbered(column: str) -> pl.Series:
        found = rows.select("folder", pl.col(column).alias("invoice_index")).join(
            numbers, on=["folder", "invoice_index"], how="left", maintain_order="left"
        )
        return found["number"]

    named = rows["message"].str.extract(_NAMED_INVOICE).cast(pl.Int64)
    overlapped = rows["message"].str.extract(_OVERLAPPED_INVOICE).cast(pl.Int64)
    rows = rows.with_columns(_named=named, _overlapped=overlapped)
    rows = rows.with_columns(
        invoice_index=renumbered("invoice_index"),
        _named=renumbered("_named"),
        _overlapped=renumbered("_overlapped"),
    )
    message = pl.col("message")
    message = (
        pl.when(pl.col("_named").is_not_null())
        .then(message.str.replace(_NAMED_INVOICE, "invoice " + pl.col("_named").cast(pl.String)))
        .otherwise(message)
    )
    message = (
        pl.when(pl.col("_overlapped").is_not_null())
        .then(
            message.str.replace(
                _OVERLAPPED_INVOICE,
                "overlaps invoice " + pl.col("_overlapped").cast(pl.String) + " ",
            )
        )
        .otherwise(message)
    )
    return rows.with_columns(message=message).drop("_named", "_overlapped")
