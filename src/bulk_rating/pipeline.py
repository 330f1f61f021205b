"""Wiring: load -> validate -> rate -> store. Preview is the same pipeline on a throwaway store."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from bulk_rating import catalog, frames, load, validate
from bulk_rating.report import RunReport, invoice_document
from bulk_rating.settings import Settings, utc_now
from bulk_rating.store import Store


class Rejected(Exception):
    """Problems found inside the run's transaction: roll it back."""

    def __init__(self, issues: pl.DataFrame) -> None:
        super().__init__(f"{issues.height} problems")
        self.issues = issues


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


def run_import(paths: Sequence[Path], settings: Settings) -> RunReport:
    stages, as_of, started = Stages(), settings.as_of_or_now(), utc_now()
    with stages("load"):
        dataset = load.load_dataset(paths)
    preview = settings.preview or dataset.preview_requested
    report = RunReport(
        status="rejected",
        preview=preview,
        inputs=dataset.sources,
        input_hash=dataset.content_hash(),
        as_of=as_of,
        stage_seconds=stages.seconds,
    )
    with Store.throwaway_copy(settings.db) if preview else Store.open(settings.db) as store:
        report.previous_run_id = store.run_with_hash(report.input_hash or "")
        if report.previous_run_id is not None:
            report.status = "already_imported"
            return report
        with stages("validate"):
            plan, refs = _references(store, dataset)
            issues = _all_issues(dataset, plan, refs)
        if issues.height:
            return report.reject(issues)
        try:
            with store.transaction():
                run_id = store.next_run_id()
                for table, rows in plan.rows.items():
                    store.insert(table, rows.with_columns(run_id=pl.lit(run_id)))
                fiat = store.fiat_credit_types()
                store.insert_drafts(catalog.drafts(plan.new_contracts, fiat, as_of), run_id)
                with stages("rate"):
                    windows = validate.kernel_windows(
                        dataset.invoices, dataset.lines, dataset.windows, refs.contracts
                    )
                    issues = store.price(run_id, windows, _store_lines(dataset), dataset.invoices)
                if issues.height:
                    raise Rejected(_with_sources(issues, dataset.invoices))
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
                    },
                    contracts_created=len(plan.new_contracts),
                )
        except Rejected as rejected:
            return report.reject(rejected.issues)
        with stages("report"):
            _fill(report, store, run_id, len(plan.new_contracts))
    report.status = "previewed" if preview else "imported"
    return report


def _references(
    store: Store, dataset: load.Dataset
) -> tuple[catalog.CatalogPlan, validate.References]:
    stored = {t: store.stored_bodies(t, id_column) for t, (id_column, *_) in catalog.KINDS.items()}
    plan = catalog.plan(dataset.catalog, dataset.contracts, stored, _source_dir(dataset))

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
    invoices = store.invoice_periods()
    refs = validate.References(
        ids("customers"), ids("credit_types"), ids("products"), contracts, invoices
    )
    return plan, refs


def _all_issues(
    dataset: load.Dataset, plan: catalog.CatalogPlan, refs: validate.References
) -> pl.DataFrame:
    found = [validate.issue_frame(dataset.issues), validate.issue_frame(plan.issues)]
    if not dataset.issues:
        found.append(
            validate.validate_catalog(
                dataset.catalog,
                dataset.contracts,
                known_products=set(refs.product_ids["product_id"]),
                known_customers=set(refs.customer_ids["customer_id"]),
                known_credit_types=set(refs.credit_type_ids["credit_type_id"]),
                known_rate_cards=set(refs.contracts["rate_card_id"]) | plan.ids("rate_cards"),
                source_dir=_source_dir(dataset),
            )
        )
        found.append(
            validate.validate_usage(dataset.invoices, dataset.lines, dataset.windows, refs)
        )
    return pl.concat(found)


def _source_dir(dataset: load.Dataset) -> str:
    return str(Path(dataset.sources[0]).parent) if dataset.sources else "."


def _store_lines(dataset: load.Dataset) -> pl.DataFrame:
    """Lines as the store keeps them: a plain quantity is granularity NONE."""
    return dataset.lines.join(
        dataset.invoices.select("invoice_index", "granularity"), on="invoice_index"
    ).select(
        "invoice_index",
        "line_index",
        "product_id",
        "inclusive_start",
        "exclusive_end",
        pl.when(pl.col("quantity").is_not_null())
        .then(pl.lit("NONE"))
        .otherwise(pl.col("granularity"))
        .alias("granularity"),
        "pricing_group_values",
        "presentation_group_values",
    )


def _with_sources(issues: pl.DataFrame, invoices: pl.DataFrame) -> pl.DataFrame:
    joined = issues.join(invoices.select("invoice_index", "source"), on="invoice_index", how="left")
    return frames.conform(joined.with_columns(row=pl.lit(None, pl.Int64)), frames.ISSUES)


def _fill(report: RunReport, store: Store, run_id: int, contracts_created: int) -> None:
    lines_by_invoice: dict[str, list[dict[str, object]]] = {}
    for line in store.run_line_items(run_id):
        lines_by_invoice.setdefault(str(line["invoice_id"]), []).append(line)
    for invoice in store.run_invoices(run_id):
        document = invoice_document(invoice, lines_by_invoice.get(invoice["invoice_id"], []))
        (report.drafts if invoice["origin"] == "CONTRACT_SCHEDULE" else report.invoices).append(
            document
        )
    report.run_id = run_id
    report.windows = store.run_window_count(run_id)
    report.contracts_created = contracts_created
