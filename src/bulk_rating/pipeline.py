"""Wiring: load -> validate -> rate -> store. Preview is the same pipeline on a throwaway store."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from bulk_rating import (
    buckets,
    catalog,
    frames,
    interrupts,
    kernel,
    load,
    output,
    reconcile,
    spark,
    validate,
)
from bulk_rating.errors import (
    AmountOverflowError,
    BulkRatingError,
    ResourceError,
    ScanError,
    UsageError,
)
from bulk_rating.models import USD_CENTS_ID, USD_CENTS_NAME, Product, RateCard
from bulk_rating.money import dumps_exact
from bulk_rating.progress import NULL_PROGRESS, Progress
from bulk_rating.report import RunReport
from bulk_rating.settings import MAX_PARTITIONS, MIN_BUCKETS, Settings, utc_now
from bulk_rating.store import Limits, Store


class Rejected(Exception):
    """Problems found inside the run's transaction: roll it back."""

    def __init__(self, issues: pl.DataFrame) -> None:
        super().__init__(f"{issues.height} problems")
        self.issues = issues


class AlreadyImported(Exception):
    """The rows read are a run already stored: roll back what this run began."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"already imported by run {run_id}")
        self.run_id = run_id


class Stages:
    """Wall time per stage, for the run report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def run_import(
    paths: Sequence[Path] | Callable[[], load.Dataset],
    settings: Settings,
    invoice_limit: int | None = None,
    progress: Progress = NULL_PROGRESS,
    replacing: Collection[str] = (),
) -> RunReport:
    """Import (or preview) `paths`, or the data set a function makes (documents in memory, say).
    The report holds at most `invoice_limit` invoice documents (all by default); its counts and
    totals always cover the whole run. A run that stores nothing in a database it created leaves
    no file behind. `replacing`: stored rate cards the run may store a new version of (refused,
    CatalogConflictError, when a stored contract uses one)."""
    new_file = not settings.db.exists()
    read = (
        paths
        if callable(paths)
        else lambda: load.load_dataset(paths, json_limit=settings.json_limit())
    )
    tried: list[int | None] = []  # each attempt's partitions (None: no usage table)
    while True:
        try:
            report = _import(read, settings, invoice_limit, progress, replacing, tried)
            break
        except BaseException as failed:
            if new_file and not getattr(failed, "committed", False):
                _remove_store(settings.db)
            retry = _more_partitions(failed, settings, tried)
            if retry is None:
                raise
            settings = retry
    if len(tried) > 1:
        report.warnings.append(
            f"the memory limit ({settings.memory_limit}) was reached in {tried[-2]} partitions of"
            f" contracts: the run was rolled back and done again in {tried[-1]}; a higher"
            " BULK_RATING_MEMORY_LIMIT needs fewer"
        )
    if new_file and (report.run_id is None or report.preview):
        _remove_store(settings.db)
    return report


# A run out of memory is done again in twice the partitions, at most this many times.
MEMORY_RETRIES = 3


def _more_partitions(
    failed: BaseException, settings: Settings, tried: list[int | None]
) -> Settings | None:
    """The settings to do a run again with after it reached the memory limit in partitions the
    run chose itself (nothing of it is stored: it was rolled back); None to give up."""
    if not (isinstance(failed, ResourceError) and failed.code == "OUT_OF_MEMORY"):
        return None
    if failed.committed or not tried or tried[-1] is None or len(tried) > MEMORY_RETRIES:
        return None
    if settings.partitions is not None and len(tried) == 1:  # the user's choice: say so, as is
        return None
    more = tried[-1] * 2
    if more > MAX_PARTITIONS:
        return None
    return settings.model_copy(update={"partitions": more})


def _remove_store(db: Path) -> None:
    for made in (db, Path(f"{db}.wal")):
        made.unlink(missing_ok=True)


def _import(
    read: Callable[[], load.Dataset],
    settings: Settings,
    invoice_limit: int | None,
    progress: Progress,
    replacing: Collection[str] = (),
    tried: list[int | None] | None = None,
) -> RunReport:
    if settings.breakdowns is not None and settings.engine != "spark":
        raise UsageError(
            "--breakdowns keeps a Spark run's breakdowns outside the store: give --engine spark"
        )
    stages, as_of, started = Stages(), settings.as_of_or_now(), utc_now()
    with stages("load"):
        dataset = read()
    preview = settings.preview or dataset.preview_requested
    content_hash = dataset.content_hash()
    report = RunReport(
        status="rejected",
        preview=preview,
        inputs=dataset.sources,
        input_hash=content_hash,
        as_of=as_of,
        stage_seconds=stages.seconds,
    )
    limits = _limits(settings)
    try:
        store = (
            Store.throwaway_copy(settings.db, limits)
            if preview
            else Store.open(settings.db, limits)
        )
    except BaseException:
        dataset.close()
        raise
    # the signals held from the commit on (entered as the transaction's last step); before, a
    # signal interrupts the store's statement under way
    with (
        ExitStack() as after_commit,
        closing(dataset),
        store,
        interrupts.stopping(store.interrupt),
    ):
        with stages("load"):
            fingerprint = dataset.files_fingerprint(content_hash)
        # the same files as a stored run, or the same JSON content: known before any row is read
        same_files = store.run_with_fingerprint(fingerprint.digest) if fingerprint else None
        if same_files is not None:
            run_id, report.input_hash = same_files  # the stored run's hash: of its rows
            return report.already_imported(run_id, matched_by="files")
        previous = store.run_with_hash(report.input_hash or "")
        if previous is not None:
            return report.already_imported(previous, matched_by="content")
        with stages("validate"):
            plan, refs = _references(store, dataset, replacing)
            catalog_issues = _catalog_issues(dataset, plan, refs)
            issues = pl.concat([catalog_issues, _batch_issues(dataset, refs)])
            # unreadable input, or a catalog or contract that is wrong: rows cannot be checked
            # against it (their problems would follow from it, or not be found at all)
            if dataset.issues or catalog_issues.height:
                return report.reject(_sorted(issues))
            rating = _rating(store, dataset, settings, after_commit, plan, refs, as_of)
            try:
                table = rating.prepare(plan, refs, as_of, progress)
            except ScanError:  # a split of the table by partition reads it all
                return report.reject(_unreadable(dataset.tables[0] if dataset.tables else None))
            if tried is not None:
                # a local run out of memory is done again in more partitions; a Spark run says
                # how to give its buckets more room
                local = table is not None and not isinstance(rating, buckets.Bucketed)
                tried.append(rating.partitions if local else None)
        if isinstance(rating, buckets.Bucketed):  # its steps 1 and 2 were not validation
            own = rating.seconds
            stages.seconds["validate"] -= own["plan"] + own["engine start"] + own["rate in buckets"]
            stages.seconds.update(own)
        try:
            with store.transaction():
                run_id = store.next_run_id()
                rating.store_plan(plan, run_id)
                with stages("validate"):
                    checked = rating.check(refs, progress)
                    report.rows_read, report.notices = checked.rows_read, _sorted(checked.notices)
                    issues = pl.concat([issues, *(frames.issues(f) for f in checked.found)])
                if table is not None:  # stored rows overlap these when they are the same rows
                    report.input_hash = _table_hash(report.input_hash, checked.content_sum)
                    previous = store.run_with_hash(report.input_hash)
                    if previous is not None:
                        raise AlreadyImported(previous)
                if issues.height:
                    raise Rejected(issues)
                rating.add_drafts(run_id)
                with stages("rate"):
                    rating.rate(run_id, checked, progress)
                store.record_run(
                    {
                        "run_id": run_id,
                        "started_at": started,
                        "finished_at": utc_now(),
                        "inputs": dataset.sources,
                        "input_hash": report.input_hash,
                        "preview": preview,
                        "as_of": as_of,
                        "status": "imported",
                        "rows_read": report.rows_read,
                        "duplicates_collapsed": report.duplicates_collapsed,
                        # none for a preview, nor when a file changed while the run read it
                        # (the fingerprint would name bytes other than the rows stored)
                        "files_fingerprint": fingerprint.digest
                        if fingerprint and not preview and fingerprint.unchanged()
                        else None,
                    },
                    contracts_created=plan.contracts_created,
                )
                after_commit.enter_context(interrupts.held())
        except Rejected as rejected:
            return report.reject(_sorted(rejected.issues))
        except AlreadyImported as already:
            return report.already_imported(already.run_id, matched_by="content")
        except AmountOverflowError as overflow:
            return report.reject(_overflow_issues(overflow, dataset, table))
        except ScanError:
            return report.reject(_unreadable(table))
        with stages("report"):
            _fill(report, store, run_id, plan.contracts_created, invoice_limit)
    report.status = "previewed" if preview else "imported"
    return report


def _rating(
    store: Store,
    dataset: load.Dataset,
    settings: Settings,
    cleanup: ExitStack,
    plan: catalog.CatalogPlan,
    refs: validate.References,
    as_of: datetime,
) -> kernel.Kernel:
    """The run's rating: the kernel here, or a usage table's buckets of contracts rated on
    Spark (buckets.py), in a folder removed when the run ends."""
    if settings.engine != "spark" or len(dataset.tables) != 1:
        count = kernel.partitions(store, dataset, settings, plan, refs.contracts, as_of)
        return kernel.Kernel(store, dataset, count)
    if settings.stage is not None:
        settings.stage.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bulk-rating-run-", dir=settings.stage))
    cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    count = settings.buckets or max(
        MIN_BUCKETS, -(-store.parquet_rows(dataset.tables[0].files) // settings.rows_per_bucket())
    )
    engine = spark.SparkEngine(settings.spark_master, settings.spark_remote)
    # a preview writes nowhere: its breakdowns stay in its throwaway store
    outside = None if store.throwaway or settings.breakdowns is None else settings.breakdowns
    return buckets.Bucketed(store, dataset, count, engine, folder, settings.memory_limit, outside)


def _unreadable(table: load.UsageTable | None) -> pl.DataFrame:
    """CORRUPT_FILE for each file of the table DuckDB cannot read whole, once reading the rows
    failed (reraised when each file reads whole on its own: then the failure is not theirs)."""
    unreadable = Store.unreadable_parquet(table.files) if table and not table.staged else {}
    if not unreadable:
        raise  # the ScanError being handled
    return validate.issue_frame(
        {
            "source": file,
            "code": "CORRUPT_FILE",
            "message": f"{Path(file).name} cannot be read whole: {reason}",
        }
        for file, reason in unreadable.items()
    )


def _overflow_issues(
    overflow: AmountOverflowError, dataset: load.Dataset, table: load.UsageTable | None
) -> pl.DataFrame:
    """NUMBER_TOO_LARGE for each line or invoice an amount overflowed in; when pricing could not
    say which (a rounding at the edge), one entry per usage file of the run."""
    rows = overflow.rows or [
        {"source": source, "message": overflow.message}
        for source in (
            table.sources if table else dataset.invoices["source"].unique(maintain_order=True)
        )
    ]
    return validate.issue_frame({"code": overflow.code, "field": "quantity", **row} for row in rows)


def _references(
    store: Store, dataset: load.Dataset, replacing: Collection[str] = ()
) -> tuple[catalog.CatalogPlan, validate.References]:
    stored = {t: store.stored_bodies(t, id_column) for t, (id_column, *_) in catalog.KINDS.items()}
    stored_products = store.models("products", "product_id", Product)
    plan = catalog.plan(
        dataset.catalog,
        dataset.contracts,
        stored,
        _source_dir(dataset),
        stored_cards=store.models("rate_cards", "rate_card_id", RateCard),
        stored_products=stored_products,
        next_rate_key=store.next_rate_key(),
        replacing=replacing,
    )

    def ids(table: str) -> pl.DataFrame:
        column = catalog.KINDS[table][0]
        known = sorted(set(stored[table]) | plan.ids(table))
        return pl.DataFrame({column: known}, schema={column: pl.String()})

    contracts = pl.concat(
        [
            frames.conform(store.contract_refs(), frames.CONTRACT_REFS),
            catalog.contract_refs(plan.new_contracts),
        ]
    )
    refs = validate.References(
        ids("customers"),
        ids("credit_types"),
        ids("products"),
        contracts,
        store.invoice_periods(),
        ids("rate_cards"),
        {
            tag
            for product in [
                *stored_products.values(),
                *(dataset.catalog.products if dataset.catalog else []),
            ]
            for tag in product.tags
        },
    )
    return plan, refs


def _catalog_issues(
    dataset: load.Dataset, plan: catalog.CatalogPlan, refs: validate.References
) -> pl.DataFrame:
    """The files', catalog's and contracts' problems: what must hold before any row is read."""
    found = [validate.issue_frame(dataset.issues), validate.issue_frame(plan.issues)]
    if not dataset.issues:
        found.append(
            validate.validate_catalog(
                dataset.catalog,
                dataset.contracts,
                known_products=set(refs.product_ids["product_id"]),
                known_customers=set(refs.customer_ids["customer_id"]),
                known_credit_types=set(refs.credit_type_ids["credit_type_id"]),
                known_rate_cards=set(refs.rate_card_ids["rate_card_id"]),
                source_dir=_source_dir(dataset),
                origins=dataset.origins,
                known_tags=refs.product_tags,
            )
        )
    return pl.concat(found)


def _batch_issues(dataset: load.Dataset, refs: validate.References) -> pl.DataFrame:
    """A JSON batch's structure, checked before any row is read."""
    if dataset.issues:
        return validate.issue_frame([])
    return validate.validate_batch(dataset.invoices, dataset.lines, dataset.windows, refs)


def _table_hash(base: str | None, content_sum: int) -> str:
    """A usage table's content hash: the rows' own hashes summed (order- and split-free)."""
    return hashlib.sha256(f"{base}|{content_sum}".encode()).hexdigest()


def _sorted(issues: pl.DataFrame) -> pl.DataFrame:
    # every column: problems alike in place and code (an invoice overlapping two) keep one order
    return frames.issues(issues).sort(
        "source",
        "row",
        "invoice_index",
        "line_index",
        "window_index",
        "code",
        "field",
        "message",
        nulls_last=False,
    )


def _limits(settings: Settings) -> Limits:
    return Limits(memory=settings.memory_limit, threads=settings.threads, lock_wait=settings.wait)


def _source_dir(dataset: load.Dataset) -> str:
    return str(Path(dataset.sources[0]).parent) if dataset.sources else "."


def _fill(
    report: RunReport, store: Store, run_id: int, contracts_created: int, limit: int | None
) -> None:
    if limit is None:  # every invoice: kept in files, read a page at a time (any size)
        folder = Path(tempfile.mkdtemp(prefix="bulk-rating-report-"))
        weakref.finalize(report, shutil.rmtree, folder, ignore_errors=True)
        report.row_files = store.export_run_rows(run_id, folder)
    else:
        report.invoice_rows = store.run_invoices(run_id, limit)
        report.line_rows = store.run_line_items(run_id, report.invoice_rows)
    report.run_id = run_id
    report.counts, report.totals = store.run_summary(run_id)
    report.contracts_created = contracts_created


def run_reconcile(
    legacy_paths: Sequence[Path],
    data_paths: Sequence[Path],
    settings: Settings,
    tolerance: int,
    legacy_unit: str = "minor",
) -> tuple[reconcile.Reconciliation, pl.DataFrame]:
    """Legacy invoices against the stored import, or against a preview of `data_paths` (then
    nothing is saved). Legacy totals are in the credit type's smallest unit (`minor`, cents) or
    in whole units (`major`, dollars). Returns the result and the totals per month for the chart."""
    if legacy_unit not in reconcile.LEGACY_UNITS:
        raise UsageError(f"--legacy-unit must be one of {', '.join(reconcile.LEGACY_UNITS)}")
    legacy_invoices, legacy_lines, problems = load.read_legacy(legacy_paths)
    preview = bool(data_paths)
    run_at = utc_now()
    names = {USD_CENTS_ID: USD_CENTS_NAME}

    def described(invoices: pl.DataFrame, lines: pl.DataFrame) -> reconcile.Reconciliation:
        return reconcile.Reconciliation(
            invoices,
            lines,
            Decimal(tolerance),
            preview,
            credit_types=names,
            run_at=run_at,
            compared_with=(
                "a preview of " + ", ".join(str(p) for p in data_paths)
                if preview
                else f"the database {settings.db}"
            ),
            legacy_files=[str(p) for p in legacy_paths],
            legacy_unit=legacy_unit,
        )

    empty = described(pl.DataFrame(), pl.DataFrame())
    if problems:
        empty.issues = _sorted(validate.issue_frame(problems))
        return empty, pl.DataFrame()
    legacy = (
        frames.conform(legacy_invoices, reconcile.LEGACY_COLUMNS),
        frames.conform(legacy_lines, reconcile.LEGACY_LINE_COLUMNS),
    )
    if preview:
        report = run_import(data_paths, settings.model_copy(update={"preview": True}))
        if report.status == "rejected":
            empty.issues = report.issues
            return empty, pl.DataFrame()
        invoice_rows, line_rows = report.all_rows()
        historical = invoice_rows.filter(pl.col("origin") == "HISTORICAL_IMPORT")
        imported = historical.select(
            "invoice_id",
            "customer_id",
            "contract_id",
            "credit_type_id",
            "start_timestamp",
            "end_timestamp",
            "total",
        )
        names.update(historical.select("credit_type_id", "credit_type_name").unique().iter_rows())
        lines = line_rows.filter(pl.col("type") == "usage").select(
            "invoice_id", "product_id", "quantity", "total"
        )
        with Store.scratch() as scratch:
            invoices, line_diffs, periods = scratch.reconcile(
                legacy, (imported, lines), tolerance, legacy_unit
            )
        return described(invoices, line_diffs), periods
    limits = _limits(settings)
    with Store.open(settings.db, limits) as store:
        invoices, line_diffs, periods = store.reconcile(
            legacy, store.imported_invoices(), tolerance, legacy_unit
        )
        names.update(store.credit_type_names())
        result = described(invoices, line_diffs)
        store.record_reconciliation(
            {
                "run_at": run_at,
                "legacy_files": [str(p) for p in legacy_paths],
                "tolerance": tolerance,
                "invoices_compared": invoices.height,
                "differences": result.differences,
                "summary": json.dumps(result.counts()),
                "legacy_unit": legacy_unit,
                "compared_with": result.compared_with,
                "periods": dumps_exact(periods.to_dicts(), indent=False),
            },
            reconcile.results_table(result),
        )
    return result, periods


def inbox_entries(inbox: Path) -> list[Path]:
    """What a nightly run imports: each data set folder or input file of the inbox, by name."""
    if not inbox.is_dir():
        raise UsageError(f"no inbox folder at {inbox}", path=str(inbox))
    suffixes = {".json", ".ndjson", *load.TABLE_SUFFIXES}
    return sorted(p for p in inbox.iterdir() if p.is_dir() or p.suffix in suffixes)


def run_nightly(
    inbox: Path,
    settings: Settings,
    legacy: Sequence[Path],
    tolerance: int,
    legacy_unit: str = "minor",
) -> tuple[
    list[tuple[str, RunReport]],
    dict[str, int],
    tuple[reconcile.Reconciliation, pl.DataFrame] | None,
]:
    """Import every entry of the inbox in name order (each on its own: one that fails leaves the
    others, and nothing of itself), close the periods that ended, then reconcile the store with
    the legacy files if given."""
    imported = []
    for entry in inbox_entries(inbox):
        try:
            report = run_import([entry], settings, invoice_limit=0)
        except Exception as problem:  # one entry's failure never stops the batch
            if isinstance(problem, BulkRatingError):
                status, code, message = "rejected", problem.code, problem.message
            else:  # a bug: the entry is reported as failed, the others still import
                status, code, message = "failed", "INTERNAL_ERROR", f"internal error: {problem}"
            report = RunReport(status=status, preview=False, inputs=[str(entry)])
            report.issues = validate.issue_frame(
                [{"source": str(entry), "code": code, "message": message}]
            )
        imported.append((entry.name, report))
    closed = (
        run_close(settings) if settings.db.exists() else {"finalized": 0, "invoices_created": 0}
    )
    reconciled = run_reconcile(legacy, [], settings, tolerance, legacy_unit) if legacy else None
    return imported, closed, reconciled


def run_close(settings: Settings) -> dict[str, int]:
    """The nightly step: finalize every draft whose period has ended, make the drafts (and any
    missed periods) up to the as-of date, and queue the finalized ones for billing providers."""
    as_of = settings.as_of_or_now()
    limits = _limits(settings)
    with Store.open(settings.db, limits) as store:
        owed = catalog.periods_to_generate(
            store.contract_models(), store.generated_invoices(), store.fiat_credit_types(), as_of
        )
        store.working_tables("_drafts", "_shown")
        with store.transaction():
            finalized = store.close_periods(as_of, owed, store.next_run_id())
    return {"finalized": finalized, "invoices_created": owed.height}


def run_export(settings: Settings, provider: str, out: Path) -> int:
    """Write the invoices queued for `provider` to `out` (JSON lines: each document with its
    idempotency key), then mark them exported: the file is durably in place before any invoice
    counts as exported, so a failed write leaves them queued for the next export. An existing
    file is never replaced (it may hold an export not yet delivered). Imported invoices are never
    among them (D1). Returns how many were exported."""
    provider = provider.lower()
    if not settings.db.exists():
        raise UsageError(f"no database at {settings.db}", path=str(settings.db))
    if out.exists():
        raise UsageError(
            f"--out {out} exists already: it may hold an export not yet delivered; move it away"
            " or give a new file",
            path=str(out),
        )
    output.check_writable(out, "--out")
    with Store.open(settings.db, _limits(settings)) as store:
        known = store.billing_providers()
        if provider not in known:
            raise UsageError(
                f"no contract is billed through `{provider}`"
                + (f" (the contracts name: {', '.join(known)})" if known else "")
            )
        queued = store.queued_for(provider)
        if not queued.height:
            return 0
        ids = queued["invoice_id"].to_list()
        invoice_rows, line_rows = store.invoices_by_id(ids)
        report = RunReport(
            status="exported",
            preview=False,
            inputs=[],
            invoice_rows=invoice_rows,
            line_rows=line_rows,
        )
        documents = {d["id"]: d for d in report.documents("CONTRACT_SCHEDULE")}
        keys = dict(queued.select("invoice_id", "idempotency_key").iter_rows())

        def write(path: Path) -> None:
            with path.open("w", encoding="utf-8") as handle:
                for invoice_id in ids:
                    item = {"idempotency_key": keys[invoice_id], "invoice": documents[invoice_id]}
                    handle.write(dumps_exact(item, indent=False) + "\n")

        output.write_atomically(out, write, replace=False)
        store.working_tables("_shown")
        with store.transaction():
            store.mark_exported(ids, utc_now())
    return len(ids)
