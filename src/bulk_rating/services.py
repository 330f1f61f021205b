"""The use cases, one function each, for every front end: the command line, a notebook or an
orchestrator task (`from bulk_rating import import_history`), and the HTTP API to come.

Each takes plain values, files or documents already in memory, and returns a result with
`to_dict()` (the document the CLI's `--json` prints). Nothing here touches the terminal. Options
are the fields of `Settings` given as keywords (`db`, `as_of`, `preview`, `memory_limit`,
`threads`, `wait`), over the `BULK_RATING_*` environment, or a `Settings` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import TypeAdapter

from bulk_rating import documents, frames, interrupts, load, output, pipeline, reconcile, validate
from bulk_rating.errors import CatalogConflictError, ExitCode, NotFoundError, UsageError
from bulk_rating.models import (
    USD_CENTS_ID,
    USD_CENTS_NAME,
    Catalog,
    NewRates,
    Product,
    Rate,
    RateCard,
    RateSelector,
    RatesQuery,
)
from bulk_rating.money import dumps_exact
from bulk_rating.progress import NULL_PROGRESS, Progress
from bulk_rating.report import RunReport, invoice_document, timestamp
from bulk_rating.settings import Settings
from bulk_rating.store import Store, rate_card_in_use

ERRORS_SUFFIXES = (".csv", ".parquet")


def settings_of(settings: Settings | None = None, **options: Any) -> Settings:
    """`settings` with `options` over them (None values left out), or Settings from `options`."""
    given = {k: v for k, v in options.items() if v is not None}
    if settings is None:
        return Settings(**given)
    return settings.model_copy(update=given) if given else settings


# --- importing --------------------------------------------------------------------------------


def import_history(
    *paths: str | Path,
    settings: Settings | None = None,
    errors: Path | None = None,
    invoice_limit: int | None = None,
    progress: Progress = NULL_PROGRESS,
    **options: Any,
) -> RunReport:
    """Rate and store the history in `paths` (data set folders, invoices files, usage tables),
    or preview it with `preview=True`. `errors`: a .csv or .parquet file that also gets every
    problem, checked before the run (a failure to write it after a stored run is a warning on
    the report, never a failed run)."""
    chosen = settings_of(settings, **options)
    inputs = [Path(p) for p in paths]
    if errors is not None:
        if errors.suffix not in ERRORS_SUFFIXES:
            raise UsageError(f"--errors takes a .csv or .parquet file, not {errors.name}")
        output.check_writable(errors, "--errors")
        output.check_outside(errors, inputs, "--errors")
    report = pipeline.run_import(inputs, chosen, invoice_limit=invoice_limit, progress=progress)
    if errors is not None:
        # a stored run's list is written whole: an interrupt waits for it
        with interrupts.held() if report.run_id is not None else nullcontext():
            try:
                output.write_atomically(
                    errors, lambda path: _write_issues(report, path, errors.suffix)
                )
            except UsageError as failed:  # the run stands; only its list is missing
                report.warnings.append(failed.message)
    return report


def import_documents(
    *,
    catalog: Any = None,
    contracts: Any = None,
    invoices: Any = None,
    settings: Settings | None = None,
    invoice_limit: int | None = None,
    **options: Any,
) -> RunReport:
    """The same as `import_history` for documents already in memory: a catalog, a list of
    contracts and a createHistoricalInvoices body (dicts of parsed JSON, numbers as Decimal, or
    the models). Problems name the document (`catalog`, `contracts`, `invoices`) and the path in
    it."""
    return pipeline.run_import(
        lambda: load.documents_dataset(catalog, contracts, invoices),
        settings_of(settings, **options),
        invoice_limit=invoice_limit,
    )


def _write_issues(report: RunReport, path: Path, suffix: str) -> None:
    """The issues (and notices) of a run as a table file; written even when there are none."""
    rows = pl.concat([report.issues, report.notices])
    if suffix == ".parquet":
        rows.write_parquet(path)
    else:
        rows.write_csv(path)


# --- the contract's own invoices ----------------------------------------------------------------


@dataclass
class Closed:
    """What a close did: drafts finalized, invoices the schedule owed made."""

    finalized: int
    invoices_created: int

    def to_dict(self) -> dict[str, int]:
        return {"finalized": self.finalized, "invoices_created": self.invoices_created}


def close_periods(settings: Settings | None = None, **options: Any) -> Closed:
    """Finalize the drafts whose period has ended, make the drafts up to the as-of date, and
    queue the finalized invoices for their billing providers."""
    done = pipeline.run_close(settings_of(settings, **options))
    return Closed(done["finalized"], done["invoices_created"])


@dataclass
class Exported:
    provider: str
    out: Path
    invoices: int  # 0: nothing was queued, and no file written

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "out": str(self.out), "invoices": self.invoices}


def export_invoices(
    provider: str, out: Path, settings: Settings | None = None, **options: Any
) -> Exported:
    """Write the invoices queued for `provider` to `out`, then mark them exported."""
    count = pipeline.run_export(settings_of(settings, **options), provider, out)
    return Exported(provider.lower(), out, count)


# --- reading ------------------------------------------------------------------------------------


@dataclass
class Balances:
    """A customer's commit and credit segments, and the net balance per credit type."""

    customer_id: str
    segments: pl.DataFrame
    net: pl.DataFrame  # credit_type_id, balance

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": [
                {
                    **row,
                    "starting_at": timestamp(row["starting_at"]),
                    "ending_before": timestamp(row["ending_before"]),
                }
                for row in self.segments.drop("active").to_dicts()
            ],
            "net_balance": self.net.to_dicts(),
        }


def customer_balances(
    customer_id: str, settings: Settings | None = None, **options: Any
) -> Balances:
    """Every commit and credit segment of a customer with what remained of it at the as-of
    moment; the net balance counts, as Metronome's getNetBalance does, only the segments usable
    then, a negative remainder as 0."""
    chosen = settings_of(settings, **options)
    with Store.open_read_only(chosen.db) as store:
        if not store.has_customer(customer_id):
            raise NotFoundError(f"no customer `{customer_id}` in {chosen.db}")
        segments = store.customer_balances(customer_id, chosen.as_of_or_now())
    net = (
        segments.filter(pl.col("active"))
        .group_by("credit_type_id")
        .agg(balance=pl.when(pl.col("remaining") > 0).then(pl.col("remaining")).otherwise(0).sum())
        .sort("credit_type_id")
        if segments.height
        else pl.DataFrame(
            {"credit_type_id": [], "balance": []},
            schema={"credit_type_id": pl.String(), "balance": pl.Decimal(38, 10)},
        )
    )
    return Balances(customer_id, segments, net)


@dataclass
class Page:
    """One page of a list in Metronome's shapes; `next_page` is the cursor of the next (None on
    the last): the offset of its first item, as text."""

    data: list[dict[str, Any]]
    next_page: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "next_page": self.next_page}


InvoicePage = Page  # a customer's invoices, in Metronome's Invoice shape, by start and id


def customer_invoices(
    customer_id: str,
    *,
    limit: int = 25,
    next_page: str | None = None,
    status: str | None = None,
    starting_on: datetime | None = None,
    ending_before: datetime | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> InvoicePage:
    """A customer's invoices, imported and generated, `limit` a page; `next_page` is the
    cursor the previous page gave (None on the last)."""
    offset = _offset(next_page)
    with Store.open_read_only(settings_of(settings, **options).db) as store:
        if not store.has_customer(customer_id):
            raise NotFoundError(f"no customer `{customer_id}`")
        invoices, lines = store.customer_invoices(
            customer_id,
            status=status,
            starting_on=starting_on,
            ending_before=ending_before,
            limit=limit + 1,  # one more: is there a next page
            offset=offset,
        )
    more = invoices.height > limit
    documents = _documents(invoices.head(limit), lines)
    return InvoicePage(documents, str(offset + limit) if more else None)


def customer_invoice(
    customer_id: str, invoice_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, Any] | None:
    """One invoice of a customer in Metronome's Invoice shape, or None."""
    with Store.open_read_only(settings_of(settings, **options).db) as store:
        invoices, lines = store.customer_invoices(customer_id, invoice_id=invoice_id, limit=1)
    documents = _documents(invoices, lines)
    return documents[0] if documents else None


def run_invoices(
    run_id: int, settings: Settings | None = None, **options: Any
) -> list[dict[str, Any]]:
    """The historical invoices a stored run imported (what replaying its request answers)."""
    with Store.open(settings_of(settings, **options).db) as store:
        invoices = store.run_invoices(run_id, None).filter(pl.col("origin") == "HISTORICAL_IMPORT")
        lines = store.run_line_items(run_id, invoices)
    return _documents(invoices, lines)


def api_answer(
    key: str, settings: Settings | None = None, **options: Any
) -> tuple[str, int, str] | None:
    """The answer the HTTP API first gave to an Idempotency-Key: request hash, status, body."""
    with Store.open(settings_of(settings, **options).db) as store:
        return store.api_answer(key)


def keep_api_answer(
    key: str,
    request_hash: str,
    method: str,
    path: str,
    status: int,
    body: str,
    settings: Settings | None = None,
    **options: Any,
) -> None:
    """Keep the HTTP API's first answer to an Idempotency-Key, once the work it reports is done."""
    with Store.open(settings_of(settings, **options).db) as store:
        store.keep_api_answer(key, request_hash, method, path, status, body)


def _documents(invoices: pl.DataFrame, lines: pl.DataFrame) -> list[dict[str, Any]]:
    by_invoice: dict[str, list[dict[str, Any]]] = {}
    for line in lines.to_dicts():
        by_invoice.setdefault(line["invoice_id"], []).append(line)
    return [invoice_document(i, by_invoice.get(i["invoice_id"], [])) for i in invoices.to_dicts()]


def _offset(next_page: str | None) -> int:
    if next_page is None or next_page == "":
        return 0
    if not next_page.isdigit() or len(next_page) > 18:
        raise UsageError(f"next_page `{next_page[:40]}` is not a cursor this API gave")
    return int(next_page)


# --- the catalog: customers, products, rate cards and rates, credit types -----------------------


@contextmanager
def _reading(settings: Settings) -> Iterator[Store | None]:
    """The store opened read-only, or None when there is no file yet: an empty store, which
    holds only the built-in USD (cents)."""
    if not settings.db.exists():
        yield None
        return
    with Store.open_read_only(settings.db) as store:
        yield store


def _stored(
    settings: Settings,
    table: str,
    *,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    with _reading(settings) as store:
        if store is not None:
            return store.catalog_objects(table, ids=ids, limit=limit, offset=offset)
    if table == "credit_types" and offset == 0 and (ids is None or USD_CENTS_ID in ids):
        built_in = {"id": USD_CENTS_ID, "name": USD_CENTS_NAME, "body": None}
        return [{**built_in, "created_at": None, "created_by": None}][:limit]
    return []


def _credit_type_names(settings: Settings) -> dict[str, str]:
    return {row["id"]: row["name"] for row in _stored(settings, "credit_types")}


def _page(
    settings: Settings,
    table: str,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
    limit: int,
    next_page: str | None,
    ids: Sequence[str] | None = None,
) -> Page:
    offset = _offset(next_page)
    rows = _stored(settings, table, ids=ids, limit=limit + 1, offset=offset)  # one more: next?
    return Page(
        [shape(row) for row in rows[:limit]], str(offset + limit) if len(rows) > limit else None
    )


def _one(settings: Settings, table: str, object_id: str) -> dict[str, Any] | None:
    found = _stored(settings, table, ids=[object_id])
    return found[0] if found else None


def customers(
    *,
    limit: int = 25,
    next_page: str | None = None,
    customer_ids: Sequence[str] | None = None,
    archived: bool = False,
    ingest_alias: str | None = None,
    salesforce_account_ids: Sequence[str] | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """The customers in the order they were stored (CustomerDetail), `customer_ids` only when
    given. No customer here is archived, has an ingest alias or a Salesforce account: those
    filters match none."""
    chosen = settings_of(settings, **options)
    if archived or ingest_alias is not None or salesforce_account_ids is not None:
        return Page([], None)
    return _page(chosen, "customers", documents.customer_detail, limit, next_page, customer_ids)


def customer(
    customer_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, Any] | None:
    """One customer (CustomerDetail), or None."""
    found = _one(settings_of(settings, **options), "customers", customer_id)
    return None if found is None else documents.customer_detail(found)


def created_customer(
    customer_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, Any]:
    """A stored customer as customers/create answers it."""
    found = _one(settings_of(settings, **options), "customers", customer_id)
    if found is None:
        raise NotFoundError(f"no customer `{customer_id}`")
    return documents.created_customer(found)


def products(
    *,
    limit: int = 25,
    next_page: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """The products in the order they were stored, in Metronome's product shape."""
    return _page(settings_of(settings, **options), "products", documents.product, limit, next_page)


def product(
    product_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, Any] | None:
    found = _one(settings_of(settings, **options), "products", product_id)
    return None if found is None else documents.product(found)


def rate_cards(
    *,
    limit: int = 25,
    next_page: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """The rate cards in the order they were stored (without their rates: see `rate_card_rates`)."""
    chosen = settings_of(settings, **options)
    names = _credit_type_names(chosen)
    return _page(
        chosen, "rate_cards", lambda row: documents.rate_card(row, names), limit, next_page
    )


def rate_card(
    rate_card_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, Any] | None:
    chosen = settings_of(settings, **options)
    found = _one(chosen, "rate_cards", rate_card_id)
    return None if found is None else documents.rate_card(found, _credit_type_names(chosen))


def credit_types(
    *,
    limit: int = 25,
    next_page: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """The pricing units: USD (cents) first, then the custom ones in the order they were stored."""
    return _page(
        settings_of(settings, **options), "credit_types", documents.credit_type, limit, next_page
    )


def _selected(given: Rate, of: Product, selectors: Sequence[RateSelector] | None) -> bool:
    """A rate matches when no selector is given, or when it meets every condition of one."""
    if not selectors:
        return True
    values = given.pricing_group_values or {}
    return any(
        (s.product_id is None or s.product_id == given.product_id)
        and (s.product_tags is None or bool(set(s.product_tags) & set(of.tags)))
        and (s.pricing_group_values is None or s.pricing_group_values == values)
        and (
            s.partial_pricing_group_values is None
            or s.partial_pricing_group_values.items() <= values.items()
        )
        and s.billing_frequency is None
        for s in selectors
    )


def rate_card_rates(
    request: RatesQuery,
    *,
    limit: int = 25,
    next_page: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """getRates: a rate card's rates in effect at `request.at` or later, in the card's order,
    those matching any of the selectors when some are given."""
    chosen = settings_of(settings, **options)
    offset = _offset(next_page)
    found = _one(chosen, "rate_cards", request.rate_card_id)
    if found is None:
        raise NotFoundError(f"no rate card `{request.rate_card_id}`")
    card = RateCard.model_validate_json(found["body"])
    of = {
        row["id"]: Product.model_validate_json(row["body"])
        for row in _stored(chosen, "products", ids=sorted({r.product_id for r in card.rates}))
    }
    names = _credit_type_names(chosen)
    rows = [
        documents.scheduled_rate(r, of[r.product_id], names)
        for r in card.rates
        if (r.ending_before is None or r.ending_before > request.at)
        and _selected(r, of[r.product_id], request.selectors)
    ]
    more = len(rows) > offset + limit
    return Page(rows[offset : offset + limit], str(offset + limit) if more else None)


def read_rates_query(document: Any) -> tuple[RatesQuery | None, pl.DataFrame]:
    """A getRates body read into its shape, or None and its problems."""
    request, problems = load.parse_document("body", TypeAdapter(RatesQuery), document)
    return request, validate.issue_frame(problems)


@dataclass
class RatesAdded:
    """What adding rates to a rate card did: `added`, `unchanged` (every rate was on the card
    already: the same request sent again) or `rejected` (the problems in `issues`)."""

    status: str
    rates: list[dict[str, Any]]  # the rates given, in Metronome's Rate shape
    issues: pl.DataFrame


def add_rates(
    rate_card_id: str, rates: Sequence[Any], settings: Settings | None = None, **options: Any
) -> RatesAdded:
    """Add rates (addRate bodies without `rate_card_id`) to a stored rate card that no contract
    uses: its new version (its rates, then the new ones) is checked as a whole, as an import
    checks a rate card, and stored in one transaction. A rate already on the card is not added
    again. A card a stored contract uses is immutable: CatalogConflictError (its contracts'
    effective rates were computed from it; a change would silently reprice their history)."""
    chosen = settings_of(settings, **options)
    with _reading(chosen) as store:
        stored = [] if store is None else store.catalog_objects("rate_cards", ids=[rate_card_id])
        users = store.rate_card_contracts(rate_card_id) if store and stored else []
    if not stored:
        raise NotFoundError(f"no rate card `{rate_card_id}`")
    found = stored[0]
    if users:
        raise CatalogConflictError(rate_card_in_use(rate_card_id, users))
    request, problems = load.parse_document("body", TypeAdapter(NewRates), {"rates": list(rates)})
    if request is None:
        return RatesAdded("rejected", [], validate.issue_frame(problems))
    given = request.rates
    names = _credit_type_names(chosen)
    shaped = [documents.rate(r, names) for r in given]
    card = RateCard.model_validate_json(found["body"])
    new = [r for r in given if r not in card.rates]
    if not new:
        return RatesAdded("unchanged", shaped, validate.issue_frame([]))
    version = Catalog(rate_cards=[card.model_copy(update={"rates": [*card.rates, *new]})])
    report = pipeline.run_import(
        lambda: load.documents_dataset(catalog=version), chosen, replacing={rate_card_id}
    )
    if report.status == "rejected":
        return RatesAdded("rejected", [], report.issues)
    return RatesAdded("added", shaped, report.issues)


def query(sql: str, settings: Settings | None = None, **options: Any) -> pl.DataFrame:
    """An analyst's query on the store, in a sandbox: read-only, no files, no extensions."""
    with Store.open_read_only(settings_of(settings, **options).db) as store:
        return store.query(sql)


# --- reconciliation and the nightly batch -------------------------------------------------------


@dataclass
class Reconciled:
    """A reconciliation and the daily totals its report charts."""

    result: reconcile.Reconciliation
    daily: pl.DataFrame

    @property
    def exit_code(self) -> ExitCode:
        problems = self.result.issues.height or self.result.differences
        return ExitCode.DATA_PROBLEMS if problems else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.result.summary(),
            "invoices": self.result.invoices.to_dicts(),
            "lines": self.result.lines.to_dicts(),
            "issues": self.result.issues.to_dicts(),
        }

    def write(self, directory: Path) -> None:
        """The full diff as CSV and Parquet, and `report.html`, into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in (("invoices", self.result.invoices), ("lines", self.result.lines)):
            frame.write_csv(directory / f"{name}.csv")
            frame.write_parquet(directory / f"{name}.parquet")
        title = "Reconciliation: legacy against " + (
            "a preview" if self.result.preview else "the imported invoices"
        )
        (directory / "report.html").write_text(
            reconcile.html_report(self.result, self.daily, title), encoding="utf-8"
        )


def reconcile_invoices(
    legacy: Sequence[Path],
    data: Sequence[Path] = (),
    *,
    tolerance: int = 0,
    out: Path | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Reconciled:
    """Legacy invoices against the store (results kept), or against a preview of `data`
    (nothing saved); the diff and report written to `out` when given and readable."""
    result, daily = pipeline.run_reconcile(
        legacy, data, settings_of(settings, **options), tolerance
    )
    reconciled = Reconciled(result, daily)
    if out is not None and not result.issues.height:
        reconciled.write(out)
    return reconciled


@dataclass
class NightlyEntry:
    entry: str
    report: RunReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "status": self.report.status,
            "run_id": self.report.run_id,
            "invoices": self.report.summary().get("invoices", 0),
            "issues": frames.rows_counted(self.report.issues),
        }


@dataclass
class Nightly:
    """What a nightly batch did, and where its report is."""

    as_of: str
    entries: list[NightlyEntry]
    closed: Closed
    reconciled: Reconciled | None
    report: Path
    tolerance: int
    files: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        if any(e.report.status == "failed" for e in self.entries):
            return ExitCode.INTERNAL
        failed = any(e.report.status in ("rejected", "failed") for e in self.entries)
        differs = self.reconciled is not None and bool(self.reconciled.exit_code)
        return ExitCode.DATA_PROBLEMS if failed or differs else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "as_of": self.as_of,
            "imports": [e.to_dict() for e in self.entries],
            "close": self.closed.to_dict(),
        }
        if self.reconciled is not None:
            document["reconciliation"] = self.reconciled.result.summary()
        return document


def nightly(
    inbox: Path,
    *,
    legacy: Sequence[Path] = (),
    tolerance: int = 0,
    reports: Path = Path("data/reports"),
    settings: Settings | None = None,
    **options: Any,
) -> Nightly:
    """Import every entry of the inbox on its own, close the periods that ended, reconcile with
    the legacy files if given, and write the dated report (`nightly.json`, each failed entry's
    issues, the reconciliation); a later run of the same day writes `-2`, `-3`, ... beside."""
    chosen = settings_of(settings, **options)
    imported, closed, reconciled = pipeline.run_nightly(inbox, chosen, legacy, tolerance)
    folder = reports / chosen.as_of_or_now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    run = _nightly_suffix(folder)
    result = Nightly(
        as_of=chosen.as_of_or_now().isoformat(),
        entries=[NightlyEntry(name, report) for name, report in imported],
        closed=Closed(closed["finalized"], closed["invoices_created"]),
        reconciled=None if reconciled is None else Reconciled(*reconciled),
        report=folder / f"nightly{run}.json",
        tolerance=tolerance,
    )
    for entry in result.entries:
        if entry.report.issues.height:
            issues = folder / f"{entry.entry}.issues{run}.csv"
            entry.report.issues.write_csv(issues)
            result.files.append(issues)
    if result.reconciled is not None:
        result.reconciled.write(folder / f"reconciliation{run}")
    document = dumps_exact(result.to_dict()) + "\n"
    output.write_atomically(result.report, lambda path: path.write_text(document))
    return result


def _nightly_suffix(folder: Path) -> str:
    """The suffix of this run's report files: none for the day's first run, then `-2`, `-3`, ...,
    so that a later run of the same day never overwrites an earlier run's report."""
    number = 1
    while (folder / f"nightly{'' if number == 1 else f'-{number}'}.json").exists():
        number += 1
    return "" if number == 1 else f"-{number}"
