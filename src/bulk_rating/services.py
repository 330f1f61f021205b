"""The use cases, one function each, for every front end: the command line, a notebook or an
orchestrator task (`from bulk_rating import import_history`), and the HTTP API to come.

Each takes plain values, files or documents already in memory, and returns a result with
`to_dict()` (the document the CLI's `--json` prints). Nothing here touches the terminal. Options
are the fields of `Settings` given as keywords (`db`, `as_of`, `preview`, `memory_limit`,
`threads`, `wait`), over the `BULK_RATING_*` environment, or a `Settings` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulk_rating import environment, interrupts, lazy, output
from bulk_rating.errors import CatalogConflictError, ExitCode, NotFoundError, UsageError
from bulk_rating.money import dumps_exact
from bulk_rating.progress import NULL_PROGRESS, Progress
from bulk_rating.store import Store, rate_card_in_use

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    import pydantic

    from bulk_rating import (
        balances,
        documents,
        frames,
        load,
        models,
        pipeline,
        reconcile,
        results,
        validate,
    )
    from bulk_rating import report as reporting
    from bulk_rating.models import (
        BalanceFilter,
        Commit,
        Contract,
        Credit,
        Product,
        Rate,
        RateSelector,
        RatesQuery,
    )
    from bulk_rating.report import RunReport
    from bulk_rating.settings import Settings
else:
    # Imported when a use case first needs them, so that one needing none of them (an analyst's
    # query) starts without Polars, the models and the pipeline.
    pl = lazy.Module("polars")
    pa = lazy.Module("pyarrow")
    pydantic = lazy.Module("pydantic")
    balances = lazy.Module("bulk_rating.balances")
    documents = lazy.Module("bulk_rating.documents")
    frames = lazy.Module("bulk_rating.frames")
    load = lazy.Module("bulk_rating.load")
    models = lazy.Module("bulk_rating.models")
    pipeline = lazy.Module("bulk_rating.pipeline")
    reconcile = lazy.Module("bulk_rating.reconcile")
    reporting = lazy.Module("bulk_rating.report")
    results = lazy.Module("bulk_rating.results")
    validate = lazy.Module("bulk_rating.validate")

ERRORS_SUFFIXES = (".csv", ".parquet")


def settings_of(settings: Settings | None = None, **options: Any) -> Settings:
    """`settings` with `options` over them (None values left out), or Settings from `options`."""
    from bulk_rating.settings import Settings  # here: a query does without it (query_rows)

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
    return Closed(**done)


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
                    "starting_at": reporting.timestamp(row["starting_at"]),
                    "ending_before": reporting.timestamp(row["ending_before"]),
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


# Breakdowns per page when the request gives no limit: Metronome's 35 days, or 24 hours.
BREAKDOWNS_PER_PAGE = {"DAY": 35, "HOUR": 24}


def customer_invoice_breakdowns(
    customer_id: str,
    *,
    starting_on: datetime,
    ending_before: datetime,
    window_size: str = "DAY",
    limit: int | None = None,
    next_page: str | None = None,
    status: str | None = None,
    credit_type_id: str | None = None,
    sort: str = "date_asc",
    skip_zero_qty_line_items: bool = False,
    settings: Settings | None = None,
    **options: Any,
) -> InvoicePage:
    """A customer's invoices window by window (UTC hours or days, `window_size`), each window
    an Invoice with that window's lines and totals; the windows of all invoices, by issue date
    (`sort`), invoice and window start, `limit` a page. A window is listed when it lies wholly
    in [starting_on, ending_before); over an invoice's whole period its windows add up to it."""
    if starting_on >= ending_before:
        raise UsageError("starting_on must be before ending_before")
    page_size = limit or BREAKDOWNS_PER_PAGE[window_size]
    offset = _offset(next_page)
    with Store.open_read_only(settings_of(settings, **options).db) as store:
        if not store.has_customer(customer_id):
            raise NotFoundError(f"no customer `{customer_id}`")
        windows = store.breakdown_windows(
            customer_id,
            starting_on=starting_on,
            ending_before=ending_before,
            window_size=window_size,
            status=status,
            credit_type_id=credit_type_id,
            descending=sort == "date_desc",
            limit=page_size + 1,  # one more: is there a next page
            offset=offset,
        )
        more = windows.height > page_size
        windows = windows.head(page_size)
        if not windows.height:
            return InvoicePage([], None)
        ids = windows["invoice_id"].unique().to_list()
        invoices, lines = store.customer_invoices_by_id(customer_id, ids)
        starts: list[datetime] = windows["window_start"].to_list()
        amounts = store.breakdown_amounts(ids, window_size, min(starts), max(starts))
    by_invoice = {i["invoice_id"]: i for i in invoices.to_dicts()}
    lines_of: dict[str, list[dict[str, Any]]] = {}
    for line in lines.to_dicts():
        lines_of.setdefault(line["invoice_id"], []).append(line)
    in_window: dict[tuple[str, datetime], dict[str, tuple[Any, Any]]] = {}
    for row in amounts.to_dicts():
        key = (row["invoice_id"], row["window_start"])
        in_window.setdefault(key, {})[row["line_item_id"]] = (row["quantity"], row["total"])
    documents = [
        reporting.breakdown_document(
            by_invoice[w["invoice_id"]],
            lines_of.get(w["invoice_id"], []),
            in_window.get((w["invoice_id"], w["window_start"]), {}),
            w["breakdown_start"],
            w["breakdown_end"],
            skip_zero_quantity=skip_zero_qty_line_items,
        )
        for w in windows.to_dicts()
    ]
    return InvoicePage(documents, str(offset + page_size) if more else None)


# --- contracts, commits and credits ------------------------------------------------------------


@dataclass
class ContractPage:
    """One page of a customer's contracts (contracts/list answers `cursor`, not `next_page`)."""

    data: list[dict[str, Any]]
    cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "cursor": self.cursor}


@dataclass
class _Commitment:
    """One commit or credit of a contract, as `balances.commits_and_credits` names it."""

    contract: Contract
    created_at: datetime  # when its contract was stored
    kind: str  # PREPAID, POSTPAID or CREDIT
    id: str
    item: Commit | Credit

    @property
    def first_access(self) -> datetime:
        return min(s.starting_at for s in self.item.access_schedule.schedule_items)

    def has_access(
        self,
        covering: datetime | None = None,
        on_or_after: datetime | None = None,
        before: datetime | None = None,
    ) -> bool:
        """Whether a segment covers `covering`, one gives access on or after `on_or_after`,
        one before `before` (each test left out when None)."""
        segments = self.item.access_schedule.schedule_items
        return (
            (covering is None or any(s.starting_at <= covering < s.ending_before for s in segments))
            and (on_or_after is None or any(s.ending_before > on_or_after for s in segments))
            and (before is None or any(s.starting_at < before for s in segments))
        )


@dataclass
class _Commitments:
    """A customer's contracts and their commits and credits, read once from the store with
    what each segment held at the as-of moment, as the documents are built from them."""

    contracts: list[tuple[Contract, datetime]]
    segments: pl.DataFrame  # store.customer_balances
    ledger: pl.DataFrame  # store.customer_ledger
    products: dict[str, str]
    credit_types: dict[str, str]

    def items(self, contract: Contract | None = None) -> list[_Commitment]:
        return [
            _Commitment(c, created_at, kind, item_id, item)
            for c, created_at in self.contracts
            if contract is None or c.id == contract.id
            for kind, item_id, item in balances.commits_and_credits(c)
        ]

    def balance(self, item_id: str) -> Decimal:
        """Metronome's balance of one commit or credit: what remains of its segments usable at
        the as-of moment, a negative remainder counted as 0."""
        remaining = self.segments.filter((pl.col("id") == item_id) & pl.col("active"))["remaining"]
        return sum((max(r, Decimal(0)) for r in remaining.to_list()), Decimal(0))

    def document(self, one: _Commitment, *, balance: bool, ledger: bool) -> dict[str, Any]:
        return reporting.commit_document(
            one.contract,
            one.kind,
            one.id,
            one.item,
            created_at=one.created_at,
            products=self.products,
            credit_types=self.credit_types,
            balance=self.balance(one.id) if balance else None,
            ledger=self.ledger.filter(pl.col("commit_or_credit_id") == one.id).to_dicts()
            if ledger
            else None,
        )

    def contract(
        self, contract: Contract, created_at: datetime, *, balance: bool, ledger: bool
    ) -> dict[str, Any]:
        return reporting.contract_document(
            contract,
            created_at=created_at,
            commits=[
                self.document(one, balance=balance, ledger=ledger) for one in self.items(contract)
            ],
            products=self.products,
            credit_types=self.credit_types,
        )


def _commitments(
    store: Store, customer_id: str, as_of: datetime, *, finalized_only: bool = False
) -> _Commitments:
    if not store.has_customer(customer_id):
        raise NotFoundError(f"no customer `{customer_id}`")
    contracts = []
    for row in store.customer_contracts(customer_id):
        contract = models.Contract.model_validate_json(row["body"])
        contracts.append((contract, row["created_at"] or contract.starting_at))
    return _Commitments(
        contracts,
        store.customer_balances(customer_id, as_of, finalized_only=finalized_only),
        store.customer_ledger(customer_id, as_of),
        store.names("products"),
        store.names("credit_types"),
    )


def customer_contract(
    customer_id: str,
    contract_id: str,
    *,
    include_balance: bool = False,
    include_ledgers: bool = False,
    settings: Settings | None = None,
    **options: Any,
) -> dict[str, Any] | None:
    """One contract of a customer in Metronome's v1 Contract shape, or None; its commits and
    credits with their balance and ledger at the as-of moment when asked."""
    chosen = settings_of(settings, **options)
    with Store.open_read_only(chosen.db) as store:
        known = _commitments(store, customer_id, chosen.as_of_or_now())
    for contract, created_at in known.contracts:
        if contract.id == contract_id:
            return known.contract(
                contract, created_at, balance=include_balance, ledger=include_ledgers
            )
    return None


def invoice_generation_starts(
    customer_id: str, settings: Settings | None = None, **options: Any
) -> dict[str, str]:
    """When each contract of a customer generates its own invoices (its
    `invoice_generation_starting_at`, else its start), by contract id, as API timestamps."""
    with Store.open_read_only(settings_of(settings, **options).db) as store:
        if not store.has_customer(customer_id):
            raise NotFoundError(f"no customer `{customer_id}`")
        rows = store.customer_contracts(customer_id)
    contracts = [models.Contract.model_validate_json(row["body"]) for row in rows]
    return {c.id: str(reporting.timestamp(c.generation_starts_at)) for c in contracts}


def customer_contracts(
    customer_id: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
    covering_date: datetime | None = None,
    starting_at: datetime | None = None,
    include_balance: bool = False,
    include_ledgers: bool = False,
    settings: Settings | None = None,
    **options: Any,
) -> ContractPage:
    """A customer's contracts by start and id, `limit` a page: those in effect at
    `covering_date`, or starting on or after `starting_at` (one of the two at most)."""
    if covering_date is not None and starting_at is not None:
        raise UsageError("covering_date and starting_at cannot be given together")
    offset = _offset(cursor, "cursor")
    chosen = settings_of(settings, **options)
    with Store.open_read_only(chosen.db) as store:
        known = _commitments(store, customer_id, chosen.as_of_or_now())
    listed = [
        (contract, created_at)
        for contract, created_at in known.contracts
        if (
            covering_date is None
            or (
                contract.starting_at <= covering_date
                and (contract.ending_before is None or covering_date < contract.ending_before)
            )
        )
        and (starting_at is None or contract.starting_at >= starting_at)
    ]
    page = [
        known.contract(c, created_at, balance=include_balance, ledger=include_ledgers)
        for c, created_at in listed[offset : offset + limit]
    ]
    return ContractPage(page, str(offset + limit) if len(listed) > offset + limit else None)


@dataclass
class BalancePage:
    """One page of a customer's commits and credits (Metronome's Commit and Credit shapes)."""

    data: list[dict[str, Any]]
    next_page: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "next_page": self.next_page}


def customer_commits(
    customer_id: str,
    *,
    commit_id: str | None = None,
    access_type: str | None = None,
    covering_date: datetime | None = None,
    effective_before: datetime | None = None,
    starting_at: datetime | None = None,
    exclude_zero_balances: bool = False,
    include_balance: bool = False,
    include_contract_balances: bool = False,
    include_ledgers: bool = False,
    limit: int = 25,
    next_page: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> BalancePage:
    """A customer's commits and credits (customerBalances/list), by first access and id.

    As Metronome does, the commits and credits of a contract are listed only with
    `include_contract_balances` (every one bulk_rating holds belongs to a contract), their
    balance only with `include_balance`, their ledger only with `include_ledgers`. Every one
    is drawn down by spend, so `access_type` QUANTITY lists none. `commit_id` (Metronome's
    `id`) names one; an unknown one is a NotFoundError."""
    offset = _offset(next_page)
    chosen = settings_of(settings, **options)
    with Store.open_read_only(chosen.db) as store:
        known = _commitments(store, customer_id, chosen.as_of_or_now())
    every = known.items()
    if commit_id is not None and all(one.id != commit_id for one in every):
        raise NotFoundError(f"no commit or credit `{commit_id}` of customer `{customer_id}`")
    listed = sorted(
        (
            one
            for one in every
            if include_contract_balances
            and access_type != "QUANTITY"
            and commit_id in (None, one.id)
            and one.has_access(covering_date, starting_at, effective_before)
            and not (exclude_zero_balances and known.balance(one.id) == 0)
        ),
        key=lambda one: (one.first_access, one.id),
    )
    page = [
        known.document(one, balance=include_balance, ledger=include_ledgers)
        for one in listed[offset : offset + limit]
    ]
    return BalancePage(page, str(offset + limit) if len(listed) > offset + limit else None)


@dataclass
class NetBalance:
    """getNetBalance's answer."""

    balance: Decimal
    credit_type_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"balance": self.balance, "credit_type_id": self.credit_type_id}


# getNetBalance's balance_types, by the kind a commit or credit is stored as.
BALANCE_TYPES = {"PREPAID": "PREPAID_COMMIT", "POSTPAID": "POSTPAID_COMMIT", "CREDIT": "CREDIT"}
# Metronome's credit type of quantity-based balances.
NULL_CREDIT_TYPE_ID = "00000000-0000-0000-0000-000000000000"


def net_balance(
    customer_id: str,
    *,
    credit_type_id: str | None = None,
    filters: Sequence[BalanceFilter] | None = None,
    invoice_inclusion_mode: str = "FINALIZED_AND_DRAFT",
    access_type: str = "SPEND",
    settings: Settings | None = None,
    **options: Any,
) -> NetBalance:
    """getNetBalance: the `bulk-rating balances` rule (what remains of the segments usable at
    the as-of moment, a negative remainder counted as 0) over the commits and credits in the
    credit type (default USD cents) that match any of `filters` (all when none);
    `invoice_inclusion_mode` FINALIZED leaves out what DRAFT invoices deducted. Nothing is
    drawn down by quantity: `access_type` QUANTITY is 0 in Metronome's null credit type."""
    if access_type == "QUANTITY" and credit_type_id is not None:
        raise UsageError("credit_type_id cannot be given with access_type QUANTITY")
    credit_type = credit_type_id or models.USD_CENTS_ID
    chosen = settings_of(settings, **options)
    with Store.open_read_only(chosen.db) as store:
        known = _commitments(
            store,
            customer_id,
            chosen.as_of_or_now(),
            finalized_only=invoice_inclusion_mode == "FINALIZED",
        )
        if not store.has_credit_type(credit_type):
            raise NotFoundError(f"no credit type `{credit_type}`")
    if access_type == "QUANTITY":
        return NetBalance(Decimal(0), NULL_CREDIT_TYPE_ID)

    def matches(one: _Commitment, given: BalanceFilter) -> bool:
        return (
            (given.balance_types is None or BALANCE_TYPES[one.kind] in given.balance_types)
            and (given.ids is None or one.id in given.ids)
            and all(
                one.item.custom_fields.get(k) == v for k, v in (given.custom_fields or {}).items()
            )
        )

    counted = {
        one.id
        for one in known.items()
        if one.item.access_schedule.credit_type_id == credit_type
        and (not filters or any(matches(one, f) for f in filters))
    }
    return NetBalance(sum((known.balance(i) for i in counted), Decimal(0)), credit_type)


def _documents(invoices: pl.DataFrame, lines: pl.DataFrame) -> list[dict[str, Any]]:
    by_invoice: dict[str, list[dict[str, Any]]] = {}
    for line in lines.to_dicts():
        by_invoice.setdefault(line["invoice_id"], []).append(line)
    return [
        reporting.invoice_document(i, by_invoice.get(i["invoice_id"], []))
        for i in invoices.to_dicts()
    ]


def _offset(next_page: str | None, name: str = "next_page") -> int:
    if next_page is None or next_page == "":
        return 0
    if not next_page.isdigit() or len(next_page) > 18:
        raise UsageError(f"{name} `{next_page[:40]}` is not a cursor this API gave")
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
    search: str | None = None,
) -> list[dict[str, Any]]:
    with _reading(settings) as store:
        if store is not None:
            return store.catalog_objects(table, ids=ids, limit=limit, offset=offset, search=search)
    if table == "credit_types" and offset == 0 and (ids is None or models.USD_CENTS_ID in ids):
        built_in = {"id": models.USD_CENTS_ID, "name": models.USD_CENTS_NAME, "body": None}
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
    search: str | None = None,
) -> Page:
    offset = _offset(next_page)
    # one more than asked for: is there a next page?
    rows = _stored(settings, table, ids=ids, limit=limit + 1, offset=offset, search=search)
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
    search: str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Page:
    """The customers in the order they were stored (CustomerDetail), `customer_ids` only when
    given, those whose name or id holds `search` (any case) when given. No customer here is
    archived, has an ingest alias or a Salesforce account: those filters match none."""
    chosen = settings_of(settings, **options)
    if archived or ingest_alias is not None or salesforce_account_ids is not None:
        return Page([], None)
    return _page(
        chosen, "customers", documents.customer_detail, limit, next_page, customer_ids, search
    )


def customer_count(
    search: str | None = None, settings: Settings | None = None, **options: Any
) -> int:
    """How many customers are stored (with `search`: whose name or id holds it)."""
    with _reading(settings_of(settings, **options)) as store:
        return 0 if store is None else store.count_catalog_objects("customers", search)


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
    card = models.RateCard.model_validate_json(found["body"])
    of = {
        row["id"]: models.Product.model_validate_json(row["body"])
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
    request, problems = load.parse_document(
        "body", pydantic.TypeAdapter(models.RatesQuery), document
    )
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
    request, problems = load.parse_document(
        "body", pydantic.TypeAdapter(models.NewRates), {"rates": list(rates)}
    )
    if request is None:
        return RatesAdded("rejected", [], validate.issue_frame(problems))
    given = request.rates
    names = _credit_type_names(chosen)
    shaped = [documents.rate(r, names) for r in given]
    card = models.RateCard.model_validate_json(found["body"])
    new = [r for r in given if r not in card.rates]
    if not new:
        return RatesAdded("unchanged", shaped, validate.issue_frame([]))
    version = models.Catalog(rate_cards=[card.model_copy(update={"rates": [*card.rates, *new]})])
    report = pipeline.run_import(
        lambda: load.documents_dataset(catalog=version), chosen, replacing={rate_card_id}
    )
    if report.status == "rejected":
        return RatesAdded("rejected", [], report.issues)
    return RatesAdded("added", shaped, report.issues)


def credit_type_names(settings: Settings | None = None, **options: Any) -> dict[str, str]:
    """Each stored credit type's name by its id (USD (cents) alone for a store not made yet)."""
    chosen = settings_of(settings, **options)
    if not chosen.db.exists():
        return {models.USD_CENTS_ID: models.USD_CENTS_NAME}
    with Store.open_read_only(chosen.db) as store:
        return store.credit_type_names()


@contextmanager
def query_rows(
    sql: str, settings: Settings | None = None, **options: Any
) -> Iterator[results.Rows]:
    """An analyst's query on the store, in a sandbox (read-only, no files, no extensions), as
    DuckDB streams it: read the rows, batch by batch, inside the block (`results` writes them as
    CSV, JSON or Parquet in bounded memory)."""
    if settings is None and set(options) <= {"db"}:
        # The store's path is all a query reads of the settings: it is found without building
        # the settings model, which would take a tenth of `sql`'s start.
        db = environment.database(options.get("db"))
    else:
        db = settings_of(settings, **options).db
    with Store.open_read_only(db, sandboxed=True) as store:
        yield results.Rows(store.stream(sql, results.BATCH_ROWS))


def query(sql: str, settings: Settings | None = None, **options: Any) -> pl.DataFrame:
    """An analyst's query on the store, in a sandbox, whole as a Polars frame (for a notebook;
    `query_rows` for results of any size)."""
    with query_rows(sql, settings, **options) as rows:
        frame = pl.from_arrow(pa.Table.from_batches(list(rows), rows.schema))
    assert isinstance(frame, pl.DataFrame)
    return frame


# --- reconciliation and the nightly batch -------------------------------------------------------


@dataclass
class Reconciled:
    """A reconciliation and the totals per month (and credit type) its report charts."""

    result: reconcile.Reconciliation
    periods: pl.DataFrame

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
            reconcile.html_report(self.result, self.periods, title), encoding="utf-8"
        )


def reconciliations(settings: Settings | None = None, **options: Any) -> list[dict[str, Any]]:
    """The reconciliations kept in the store (not previews'), the latest first."""
    with _reading(settings_of(settings, **options)) as store:
        return [] if store is None else store.reconciliation_runs()


def stored_reconciliation(
    reconciliation_id: int, settings: Settings | None = None, **options: Any
) -> Reconciled | None:
    """A kept reconciliation as its report showed it; None when there is no such run."""
    settings = settings_of(settings, **options)
    with _reading(settings) as store:
        found = None if store is None else store.reconciliation(reconciliation_id)
        if store is None or found is None:
            return None
        run, invoices, lines = found
        names = {models.USD_CENTS_ID: models.USD_CENTS_NAME, **store.credit_type_names()}
    result = reconcile.Reconciliation(
        invoices,
        lines,
        # whole units, as given (the stored DECIMAL keeps nine places)
        Decimal(run["tolerance"]).to_integral_value(),
        preview=False,
        credit_types=names,
        run_at=run["run_at"],
        compared_with=run["compared_with"] or f"the database {settings.db}",
        legacy_files=run["legacy_files"],
        legacy_unit=run["legacy_unit"] or "minor",
    )
    periods = json.loads(run["periods"] or "[]", parse_float=Decimal)
    return Reconciled(result, pl.DataFrame(periods, schema=reconcile.PERIOD_COLUMNS, strict=False))


def reconcile_invoices(
    legacy: Sequence[Path],
    data: Sequence[Path] = (),
    *,
    tolerance: int = 0,
    legacy_unit: str = "minor",
    out: Path | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Reconciled:
    """Legacy invoices against the store (results kept), or against a preview of `data`
    (nothing saved); the diff and report written to `out` when given and readable. Legacy
    totals are in the credit type's smallest unit (`minor`: cents) or whole units (`major`)."""
    result, periods = pipeline.run_reconcile(
        legacy, data, settings_of(settings, **options), tolerance, legacy_unit
    )
    reconciled = Reconciled(result, periods)
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
    legacy_unit: str = "minor",
    reports: Path = Path("data/reports"),
    settings: Settings | None = None,
    **options: Any,
) -> Nightly:
    """Import every entry of the inbox on its own, close the periods that ended, reconcile with
    the legacy files if given, and write the dated report (`nightly.json`, each failed entry's
    issues, the reconciliation); a later run of the same day writes `-2`, `-3`, ... beside."""
    chosen = settings_of(settings, **options)
    imported, closed, reconciled = pipeline.run_nightly(
        inbox, chosen, legacy, tolerance, legacy_unit
    )
    folder = reports / chosen.as_of_or_now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    run = _nightly_suffix(folder)
    result = Nightly(
        as_of=chosen.as_of_or_now().isoformat(),
        entries=[NightlyEntry(name, report) for name, report in imported],
        closed=Closed(**closed),
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
