"""The HTTP API: Metronome's endpoints, served on the same services and store as the command line
(`bulk-rating serve`), so a migration script written against Metronome's SDK runs unchanged with
`base_url` pointed here.

One process is the database's single writer: every request that opens the store holds one lock
(DuckDB allows one writer, and a read-only and a read-write connection to one file cannot be open
in one process at once). Request bodies are read as raw JSON with every number a Decimal (never
through a float); responses write money as exact number text. Errors take Metronome's shape,
`{"message": ...}`, with the project's problem list beside it (`issues`), and a deterministic 4xx
carries `x-should-retry: false` so the SDK does not send it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from bulk_rating import load, pages, pricing, reconcile, services
from bulk_rating.errors import (
    BulkRatingError,
    CatalogConflictError,
    DatabaseLockedError,
    NotFoundError,
    ResourceError,
    UsageError,
)
from bulk_rating.models import (
    BalancesListRequest,
    ContractListRequest,
    ContractRetrieveRequest,
    NetBalanceRequest,
)
from bulk_rating.money import dumps_exact
from bulk_rating.settings import Settings

# Fields of Metronome's request shapes that bulk_rating does not model yet: answered "not
# supported yet" (never "unknown field", never ignored).
NOT_SUPPORTED_YET = {
    "recurring_commits",
    "recurring_credits",
    "transition",
    "rollover_fraction",
    "specifiers",
    "override_specifiers",
    "is_commit_specific",
    "target",
    "subscriptions",
    "hierarchy_configuration",
    "package_id",
    "rate_card_alias",
    "scheduled_charges",
    "discounts",
    "quantity_conversion",
    "quantity_rounding",
    # customers
    "external_id",
    "ingest_aliases",
    "billing_config",
    "customer_billing_provider_configurations",
    "customer_revenue_system_configurations",
    # products
    "billable_metric_id",
    "composite_product_ids",
    "composite_tags",
    "exclude_free_usage",
    "include_composite_spend",
    "is_refundable",
    "netsuite_internal_item_id",
    "netsuite_overage_item_id",
    "sql_breakdown_granularity",
    # rate cards and rates
    "aliases",
    "commit_rate",
    "billing_frequency",
    "is_prorated",
    "custom_rate",
}
# Metronome's rate types that bulk_rating does not price yet (it prices FLAT and TIERED).
RATE_TYPES_NOT_SUPPORTED_YET = {"PERCENTAGE", "TIERED_PERCENTAGE", "CUSTOM", "SUBSCRIPTION"}
MAX_LIMIT = 100
# The Contracts page's cookie: the API token itself, sent back by the browser (HttpOnly: no
# script reads it; SameSite=Strict: no other site's page sends it) and only under /ui/.
UI_COOKIE = "bulk_rating_token"
# Breakdown windows the page reads at a time: a 31-day month's hours in one read.
UI_WINDOWS = 31 * 24
# customers a page of the list shows (a store may hold hundreds of thousands)
UI_CUSTOMERS = 100
TIMESTAMP = TypeAdapter(AwareDatetime)
Asked = TypeVar("Asked", bound=BaseModel)


class ReadersWriter:
    """Reads side by side, each write alone; a waiting write goes before new reads (so a steady
    stream of reads never starves an import)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers_waiting += 1
            self._changed.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._changed:
                self._writing = False
                self._changed.notify_all()


class ApiError(Exception):
    """An answer other than 200, with Metronome's body."""

    def __init__(
        self, status: int, message: str, issues: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.issues = issues or []


def _json(status: int, document: Any) -> Response:
    headers = {"x-should-retry": "false"} if 400 <= status < 500 else {}
    return Response(
        dumps_exact(document, indent=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(
    status: int, message: str, issues: list[dict[str, Any]] | None = None, *, final: bool = True
) -> Response:
    """Metronome's error body. A 4xx is final (`x-should-retry: false`) unless `final=False`:
    a database another process holds is released in time, so trying again may work."""
    response = _json(status, {"message": message, "issues": issues or []})
    if not final and "x-should-retry" in response.headers:
        del response.headers["x-should-retry"]
    return response


def _status(error: BulkRatingError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, DatabaseLockedError | CatalogConflictError):
        return 409
    if isinstance(error, ResourceError):
        return 503
    if isinstance(error, UsageError) or int(error.exit_code) == 1:
        return 400
    return 500


def _issues(frame: Any, within: str | None = None) -> list[dict[str, Any]]:
    """The problem list of a run as the API gives it: code, path, field, message (and where).
    `within`: where the request's body sits in the document it was imported as (`products[0]`),
    left out of the messages."""
    listed = []
    for issue in frame.to_dicts():
        field = issue.get("field") or ""
        message = issue["message"]
        if within is not None and message.startswith(f"{within}."):
            message = message[len(within) + 1 :]
        elif within is not None and message.startswith(f"{within}:"):
            message = "body" + message[len(within) :]
        if issue["code"] == "UNKNOWN_FIELD" and field.rsplit(".", 1)[-1] in NOT_SUPPORTED_YET:
            message = f"`{field}` is not supported yet"
        listed.append(
            {
                "code": issue["code"],
                "path": issue["source"],
                "field": field or None,
                "message": message,
                "invoice_index": issue.get("invoice_index"),
                "line_index": issue.get("line_index"),
                "count": issue.get("count", 1),
            }
        )
    return listed


async def _body(request: Request) -> Any:
    """The request's JSON, numbers as Decimal; a body that is not JSON is a 400."""
    raw = await request.body()
    try:
        return load.parse_json(raw.decode("utf-8") if raw else "{}")
    except load.DuplicateKeyError as exc:
        raise ApiError(400, str(exc), [{"code": "DUPLICATE_KEY", "field": exc.key}]) from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc


def _object(document: Any, what: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ApiError(400, f"the body must be a JSON object ({what})")
    return document


def _timestamp(value: str | None, name: str) -> datetime | None:
    return None if value is None else _moment(value, name)


def _moment(value: str, name: str) -> datetime:
    try:
        return TIMESTAMP.validate_python(value)
    except ValidationError as exc:
        raise ApiError(
            400, f"{name}: not an RFC 3339 timestamp with an offset ({value!r})"
        ) from exc


def _rejected(issues: Any, what: str, within: str | None = None) -> ApiError:
    """A request whose content has problems: 400 listing them all, or 409 when one is a
    conflict with what is stored (CATALOG_CONFLICT)."""
    listed = _issues(issues, within)
    count = sum(i["count"] or 1 for i in listed)
    status = 409 if any(i["code"] == "CATALOG_CONFLICT" for i in listed) else 400
    return ApiError(
        status,
        f"{what}: {count} problem{'s' if count != 1 else ''} found; nothing was written",
        listed,
    )


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _only(body: dict[str, Any], allowed: set[str], what: str) -> None:
    """A body with no field beyond `allowed` (a typo is never ignored)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"{what}: unknown field{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"`{name}`" for name in unknown),
            [{"code": "UNKNOWN_FIELD", "field": name} for name in unknown],
        )


def _text(body: dict[str, Any], name: str, what: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(
            400,
            f"{what}: `{name}` is required (text)",
            [{"code": "MISSING_FIELD" if value is None else "INVALID_VALUE", "field": name}],
        )
    return value


def _rate_types_supported(rates: list[Any], where: Callable[[int], str]) -> None:
    """Metronome's rate types bulk_rating cannot price yet are named, not called unknown."""
    issues = [
        {
            "code": "INVALID_VALUE",
            "field": "rate_type",
            "message": f"{where(n)}rate_type `{r['rate_type']}` is not supported yet"
            f" ({' and '.join(sorted(pricing.MODELS))} are)",
        }
        for n, r in enumerate(rates)
        if isinstance(r, dict)
        and isinstance(r.get("rate_type"), str)
        and r["rate_type"].upper() in RATE_TYPES_NOT_SUPPORTED_YET
    ]
    if issues:
        raise ApiError(400, "the rates have problems; nothing was written", issues)


def _request(model: type[Asked], body: Any) -> Asked:
    """A read request's body as its model; every problem with it is a 400 listing them all."""
    try:
        return model.model_validate(_object(body, f"a {model.__name__} body"))
    except ValidationError as exc:
        issues = [
            {
                "code": "UNKNOWN_FIELD" if e["type"] == "extra_forbidden" else "INVALID_VALUE",
                "field": ".".join(str(part) for part in e["loc"]),
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        raise ApiError(400, "the request is not valid", issues) from exc


def _one_of(value: str, name: str, allowed: Sequence[str]) -> str:
    """An enum query parameter, in any casing; anything else is a 400."""
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise ApiError(400, f"{name} must be one of {', '.join(allowed)} (not {value!r})")


def content_id(body: dict[str, Any], kind: str | None = None) -> str:
    """An object's id from its content (and its kind: a product and a rate card given the same
    body differ): the same body sent again (the SDK retries a POST that timed out) names the
    same object, which is then already stored (a no-op)."""
    keyed = body if kind is None else {"object": kind, "body": body}
    canonical = json.dumps(keyed, sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.UUID(hashlib.sha256(canonical.encode()).hexdigest()[:32]))


def contract_id(body: dict[str, Any]) -> str:
    """A contract's id from its content (contracts/create)."""
    return content_id(body)


def create_app(settings: Settings, tokens: Sequence[str]) -> FastAPI:
    """The API over the store `settings.db`, accepting the bearer `tokens`."""
    if not any(tokens):
        raise UsageError(
            "no API token configured: set BULK_RATING_API_TOKENS to one or more tokens,"
            " separated by commas (e.g. BULK_RATING_API_TOKENS=$(openssl rand -hex 24))"
        )
    accepted = [t.encode() for t in tokens if t]

    def valid(given: str) -> bool:
        """Whether `given` is an accepted token, compared in constant time with each."""
        encoded = given.encode()
        return any(hmac.compare_digest(encoded, t) for t in accepted)

    store_access = ReadersWriter()
    app = FastAPI(
        title="bulk_rating",
        summary="Metronome's catalog, contract, invoice and historical-import endpoints over a DuckDB ledger",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
    )

    def reading(work: Callable[[], Any]) -> Awaitable[Any]:
        """Run a read beside other reads (read-only connections share one DuckDB instance)."""

        def run() -> Any:
            with store_access.reading():
                return work()

        return run_in_threadpool(run)

    def writing(work: Callable[[], Any]) -> Awaitable[Any]:
        """Run a request that writes alone: no read or other write meanwhile (one writer; and a
        read-only and a writing connection to one file cannot be open in one process at once)."""

        def run() -> Any:
            with store_access.writing():
                return work()

        return run_in_threadpool(run)

    @app.middleware("http")
    async def idempotent(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """A request with an Idempotency-Key: the first answer (once its work is done) is kept
        and replayed for the same key and request; the same key with another request is 409."""
        key = request.headers.get("idempotency-key")
        if key is None or request.method in ("GET", "HEAD", "OPTIONS"):
            return await call_next(request)
        body = await request.body()
        digest = hashlib.sha256()
        for part in (request.method, request.url.path, request.url.query):
            digest.update(part.encode() + b"\0")
        digest.update(body)
        request_hash = digest.hexdigest()
        kept = await writing(lambda: services.api_answer(key, settings=settings))
        if kept is not None:
            kept_hash, status, text = kept
            if kept_hash != request_hash:
                return _error(409, "this Idempotency-Key was used for another request")
            replayed = Response(text, status_code=status, media_type="application/json")
            replayed.headers["idempotent-replayed"] = "true"
            return replayed
        response = await call_next(request)
        chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
        text = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks).decode()
        if response.status_code < 500:  # a failure of ours may succeed when tried again
            await writing(
                lambda: services.keep_api_answer(
                    key,
                    request_hash,
                    request.method,
                    request.url.path,
                    response.status_code,
                    text,
                    settings=settings,
                )
            )
        return Response(
            text,
            status_code=response.status_code,
            headers={k: v for k, v in response.headers.items() if k != "content-length"},
        )

    # added last, so it runs first: nothing is read or replayed for a caller without a token
    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path == "/openapi.json" or path == "/ui/login":  # the interface, not data
            return await call_next(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if path == "/ui" or path.startswith("/ui/"):  # the pages: the cookie, or the header
            cookie = request.cookies.get(UI_COOKIE)
            if not (
                (cookie is not None and valid(cookie))
                or (scheme.lower() == "bearer" and valid(token.strip()))
            ):
                wanted = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(wanted, safe='')}", 303)
            return await call_next(request)
        if scheme.lower() != "bearer" or not valid(token.strip()):
            return _error(401, "a valid bearer token is required (Authorization: Bearer <token>)")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> Response:
        return _error(error.status, error.message, error.issues)

    @app.exception_handler(BulkRatingError)
    async def known_error(_request: Request, error: BulkRatingError) -> Response:
        return _error(
            _status(error),
            error.message,
            [{"code": error.code, "path": error.path}],
            final=not isinstance(error, DatabaseLockedError),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> Response:
        issues = [
            {
                "code": "INVALID_VALUE",
                "field": ".".join(str(part) for part in e["loc"]),
                "message": e["msg"],
            }
            for e in error.errors()
        ]
        return _error(400, "the request is not valid", issues)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 404:
            return _error(404, f"no such endpoint: {request.method} {request.url.path}")
        if error.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}")
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def internal(_request: Request, _failure: Exception) -> Response:
        return _error(500, "internal error")

    # --- contracts --------------------------------------------------------------------------

    @app.post("/v1/contracts/createHistoricalInvoices")
    async def create_historical_invoices(request: Request) -> Response:
        """Price the batch's quantities with each contract's rate card and store the invoices
        (with `preview: true`, compute the same and store nothing). The same batch again answers
        with the invoices stored the first time, never a second import."""
        body = _object(await _body(request), "a createHistoricalInvoices body")

        def run() -> list[dict[str, Any]]:
            report = services.import_documents(invoices=body, settings=settings)
            if report.status == "rejected":
                count = sum(i["count"] for i in _issues(report.issues))
                raise ApiError(
                    400,
                    f"{count} problem{'s' if count != 1 else ''} found; nothing was written",
                    _issues(report.issues),
                )
            if report.status == "already_imported" and report.previous_run_id is not None:
                return services.run_invoices(report.previous_run_id, settings=settings)
            return list(report.documents())

        return _json(200, {"data": await writing(run)})

    @app.post("/v1/contracts/create")
    async def create_contract(request: Request) -> Response:
        """Store a contract (its rate card and customer already stored); its id comes from its
        content, so the same body sent again is the same contract."""
        body = _object(await _body(request), "a contracts/create body")
        if "id" in body:
            raise ApiError(400, "`id` is given by the API, not in the body")
        made = contract_id(body)

        def run() -> None:
            report = services.import_documents(contracts=[{"id": made, **body}], settings=settings)
            if report.status == "rejected":
                raise ApiError(
                    400, "the contract has problems; nothing was written", _issues(report.issues)
                )

        await writing(run)
        return _json(200, {"data": {"id": made}})

    # --- the catalog ------------------------------------------------------------------------
    # Metronome makes the ids: here they come from the content (content_id), so a create sent
    # again names the same object, already stored (a no-op). Stored objects are immutable.

    async def create(request: Request, kind: str, what: str, refused: dict[str, str]) -> str:
        """Store one catalog object of `kind` from the body, checked as an import checks
        catalog.json; its id."""
        body = _object(await _body(request), f"a {what} body")
        for name, why in {"id": "`id` is given by the API, not in the body", **refused}.items():
            if name in body:
                raise ApiError(400, why, [{"code": "INVALID_VALUE", "field": name}])
        made = content_id(body, kind)

        def run() -> None:
            report = services.import_documents(
                catalog={kind: [{"id": made, **body}]}, settings=settings
            )
            if report.status == "rejected":
                raise _rejected(report.issues, f"the {what} body", within=f"{kind}[0]")

        await writing(run)
        return made

    def found(document: dict[str, Any] | None, what: str, object_id: str) -> Response:
        if document is None:
            raise ApiError(404, f"no {what} `{object_id}`")
        return _json(200, {"data": document})

    async def asked_id(request: Request, what: str) -> str:
        body = _object(await _body(request), f"a {what} body")
        _only(body, {"id"}, what)
        return _text(body, "id", what)

    @app.post("/v1/customers")
    async def create_customer(request: Request) -> Response:
        made = await create(request, "customers", "customers/create", {})
        created = await writing(lambda: services.created_customer(made, settings=settings))
        return _json(200, {"data": created})

    @app.get("/v1/customers")
    async def list_customers(
        limit: int = 25,
        next_page: str | None = None,
        customer_ids: str | None = None,
        only_archived: bool = False,
        ingest_alias: str | None = None,
        salesforce_account_ids: str | None = None,
    ) -> Response:
        page = await reading(
            lambda: services.customers(
                limit=_limit(limit),
                next_page=next_page,
                customer_ids=None if customer_ids is None else customer_ids.split(","),
                archived=only_archived,
                ingest_alias=ingest_alias,
                salesforce_account_ids=(
                    None if salesforce_account_ids is None else salesforce_account_ids.split(",")
                ),
                settings=settings,
            )
        )
        return _json(200, page.to_dict())

    @app.get("/v1/customers/{customer_id}")
    async def retrieve_customer(customer_id: str) -> Response:
        detail = await reading(lambda: services.customer(customer_id, settings=settings))
        return found(detail, "customer", customer_id)

    @app.post("/v1/contract-pricing/products/create")
    async def create_product(request: Request) -> Response:
        made = await create(request, "products", "products/create", {})
        return _json(200, {"data": {"id": made}})

    @app.post("/v1/contract-pricing/products/get")
    async def retrieve_product(request: Request) -> Response:
        asked = await asked_id(request, "products/get")
        return found(
            await reading(lambda: services.product(asked, settings=settings)), "product", asked
        )

    @app.post("/v1/contract-pricing/products/list")
    async def list_products(
        request: Request, limit: int = 25, next_page: str | None = None
    ) -> Response:
        body = _object(await _body(request), "a products/list body")
        _only(body, {"archive_filter"}, "products/list")
        archive_filter = str(body.get("archive_filter", "NOT_ARCHIVED")).upper()
        if archive_filter not in ("NOT_ARCHIVED", "ARCHIVED", "ALL"):
            raise ApiError(400, "archive_filter is ARCHIVED, NOT_ARCHIVED or ALL")
        if archive_filter == "ARCHIVED":  # no product is archived here
            return _json(200, {"data": [], "next_page": None})
        page = await reading(
            lambda: services.products(limit=_limit(limit), next_page=next_page, settings=settings)
        )
        return _json(200, page.to_dict())

    @app.post("/v1/contract-pricing/rate-cards/create")
    async def create_rate_card(request: Request) -> Response:
        made = await create(
            request,
            "rate_cards",
            "rate-cards/create",
            {
                "rates": "`rates` are not part of rate-cards/create: add them with addRate or addRates"
            },
        )
        return _json(200, {"data": {"id": made}})

    @app.post("/v1/contract-pricing/rate-cards/get")
    async def retrieve_rate_card(request: Request) -> Response:
        asked = await asked_id(request, "rate-cards/get")
        return found(
            await reading(lambda: services.rate_card(asked, settings=settings)), "rate card", asked
        )

    @app.post("/v1/contract-pricing/rate-cards/list")
    async def list_rate_cards(
        request: Request, limit: int = 25, next_page: str | None = None
    ) -> Response:
        _only(_object(await _body(request), "a rate-cards/list body"), set(), "rate-cards/list")
        page = await reading(
            lambda: services.rate_cards(limit=_limit(limit), next_page=next_page, settings=settings)
        )
        return _json(200, page.to_dict())

    async def add_rates(
        rate_card_id: str, rates: list[Any], within: str | None = None
    ) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            added = services.add_rates(rate_card_id, rates, settings=settings)
            if added.status == "rejected":
                raise _rejected(added.issues, "the rates", within)
            return added.rates

        result: list[dict[str, Any]] = await writing(run)
        return result

    @app.post("/v1/contract-pricing/rate-cards/addRate")
    async def add_rate(request: Request) -> Response:
        """Add a rate to a rate card that no stored contract uses (409 when one does: its
        effective rates were computed from the card, and a change would reprice history)."""
        body = _object(await _body(request), "an addRate body")
        rate_card_id = _text(body, "rate_card_id", "addRate")
        rate = {k: v for k, v in body.items() if k != "rate_card_id"}
        _rate_types_supported([rate], lambda _n: "")
        added = await add_rates(rate_card_id, [rate], within="rates[0]")
        return _json(200, {"data": added[0]})

    @app.post("/v1/contract-pricing/rate-cards/addRates")
    async def add_many_rates(request: Request) -> Response:
        body = _object(await _body(request), "an addRates body")
        _only(body, {"rate_card_id", "rates"}, "addRates")
        rate_card_id = _text(body, "rate_card_id", "addRates")
        rates = body.get("rates")
        if not isinstance(rates, list) or not rates:
            raise ApiError(400, "addRates: `rates` is required (a list of rates)")
        _rate_types_supported(rates, lambda n: f"rates[{n}]: ")
        await add_rates(rate_card_id, rates)
        return _json(200, {"data": {"id": rate_card_id}})

    @app.post("/v1/contract-pricing/rate-cards/getRates")
    async def list_rates(
        request: Request, limit: int = 25, next_page: str | None = None
    ) -> Response:
        """A rate card's rates in effect at `at` or later, those matching any selector."""
        asked, problems = services.read_rates_query(await _body(request))
        if asked is None:
            raise _rejected(problems, "the getRates body", within="body")
        page = await reading(
            lambda: services.rate_card_rates(
                asked, limit=_limit(limit), next_page=next_page, settings=settings
            )
        )
        return _json(200, page.to_dict())

    @app.post("/v1/contracts/get")
    async def retrieve_contract(request: Request) -> Response:
        """One contract of a customer in Metronome's v1 Contract shape."""
        asked = _request(ContractRetrieveRequest, await _body(request))
        found = await reading(
            lambda: services.customer_contract(
                asked.customer_id,
                asked.contract_id,
                include_balance=asked.include_balance,
                include_ledgers=asked.include_ledgers,
                settings=settings,
            )
        )
        if found is None:
            raise ApiError(
                404, f"no contract `{asked.contract_id}` of customer `{asked.customer_id}`"
            )
        return _json(200, {"data": found})

    @app.post("/v1/contracts/list")
    async def list_contracts(request: Request) -> Response:
        """A customer's contracts, a page at a time (`cursor` in the body and the answer)."""
        asked = _request(ContractListRequest, await _body(request))
        page = await reading(
            lambda: services.customer_contracts(
                asked.customer_id,
                limit=asked.limit,
                cursor=asked.cursor,
                covering_date=asked.covering_date,
                starting_at=asked.starting_at,
                include_balance=asked.include_balance,
                include_ledgers=asked.include_ledgers,
                settings=settings,
            )
        )
        return _json(200, page.to_dict())

    # --- balances ---------------------------------------------------------------------------

    @app.post("/v1/contracts/customerBalances/list")
    async def list_balances(request: Request) -> Response:
        """A customer's commits and credits (Metronome's Commit and Credit), a page at a time."""
        asked = _request(BalancesListRequest, await _body(request))
        page = await reading(
            lambda: services.customer_commits(
                asked.customer_id,
                commit_id=asked.id,
                access_type=asked.access_type,
                covering_date=asked.covering_date,
                effective_before=asked.effective_before,
                starting_at=asked.starting_at,
                exclude_zero_balances=asked.exclude_zero_balances,
                include_balance=asked.include_balance,
                include_contract_balances=asked.include_contract_balances,
                include_ledgers=asked.include_ledgers,
                limit=asked.limit,
                next_page=asked.next_page,
                settings=settings,
            )
        )
        return _json(200, page.to_dict())

    @app.post("/v1/contracts/customerBalances/getNetBalance")
    async def get_net_balance(request: Request) -> Response:
        """What a customer can still draw in one credit type: the `bulk-rating balances` rule."""
        asked = _request(NetBalanceRequest, await _body(request))
        found = await reading(
            lambda: services.net_balance(
                asked.customer_id,
                credit_type_id=asked.credit_type_id,
                filters=asked.filters,
                invoice_inclusion_mode=asked.invoice_inclusion_mode,
                access_type=asked.access_type,
                settings=settings,
            )
        )
        return _json(200, {"data": found.to_dict()})

    @app.get("/v1/credit-types/list")
    async def list_credit_types(limit: int = 25, next_page: str | None = None) -> Response:
        page = await reading(
            lambda: services.credit_types(
                limit=_limit(limit), next_page=next_page, settings=settings
            )
        )
        return _json(200, page.to_dict())

    @app.post("/v1/credit-types/create")
    async def create_credit_type(request: Request) -> Response:
        made = await create(request, "credit_types", "credit-types/create", {})
        return _json(200, {"data": {"id": made}})

    # --- invoices ---------------------------------------------------------------------------

    @app.get("/v1/customers/{customer_id}/invoices")
    async def list_invoices(
        customer_id: str,
        limit: int = 25,
        next_page: str | None = None,
        status: str | None = None,
        starting_on: str | None = None,
        ending_before: str | None = None,
    ) -> Response:
        if not 1 <= limit <= 100:
            raise ApiError(400, "limit must be between 1 and 100")
        page = await reading(
            lambda: services.customer_invoices(
                customer_id,
                limit=limit,
                next_page=next_page,
                status=status,
                starting_on=_timestamp(starting_on, "starting_on"),
                ending_before=_timestamp(ending_before, "ending_before"),
                settings=settings,
            )
        )
        return _json(200, page.to_dict())

    # before /invoices/{invoice_id}, which would take "breakdowns" for an invoice id
    @app.get("/v1/customers/{customer_id}/invoices/breakdowns")
    async def list_invoice_breakdowns(
        customer_id: str,
        starting_on: str,
        ending_before: str,
        window_size: str = "DAY",
        limit: int | None = None,
        next_page: str | None = None,
        status: str | None = None,
        credit_type_id: str | None = None,
        sort: str = "date_asc",
        skip_zero_qty_line_items: bool = False,
    ) -> Response:
        """Each invoice window by window (UTC hours or days): an Invoice per window with that
        window's lines and totals, and its `breakdown_start_timestamp`/`_end_timestamp`."""
        if limit is not None and not 1 <= limit <= 100:
            raise ApiError(400, "limit must be between 1 and 100")
        start = _moment(starting_on, "starting_on")
        end = _moment(ending_before, "ending_before")
        page = await reading(
            lambda: services.customer_invoice_breakdowns(
                customer_id,
                starting_on=start,
                ending_before=end,
                window_size=_one_of(window_size, "window_size", ("HOUR", "DAY")),
                limit=limit,
                next_page=next_page,
                status=status,
                credit_type_id=credit_type_id,
                sort=_one_of(sort, "sort", ("date_asc", "date_desc")),
                skip_zero_qty_line_items=skip_zero_qty_line_items,
                settings=settings,
            )
        )
        return _json(200, page.to_dict())

    @app.get("/v1/customers/{customer_id}/invoices/{invoice_id}")
    async def retrieve_invoice(customer_id: str, invoice_id: str) -> Response:
        found = await reading(
            lambda: services.customer_invoice(customer_id, invoice_id, settings=settings)
        )
        if found is None:
            raise ApiError(404, f"no invoice `{invoice_id}` of customer `{customer_id}`")
        return _json(200, {"data": found})

    _pages(app, settings, reading, valid)
    return app


def _ui_next(given: str | None) -> str:
    """Where a login goes on: a page of this site under /ui/, never elsewhere."""
    if given and given.startswith("/ui/") and not given.startswith("//") and "\\" not in given:
        return given
    return "/ui/"


def _pages(
    app: FastAPI,
    settings: Settings,
    reading: Callable[[Callable[[], Any]], Awaitable[Any]],
    valid: Callable[[str], bool],
) -> None:
    """The Contracts page (`/ui/`): HTML over the same services as the API, each page read in
    one go (one store access) and rendered by `pages`."""

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers={"cache-control": "no-store"})

    def all_of(page: Callable[[str | None], Any]) -> list[dict[str, Any]]:
        """Every item of a paged service, pages followed."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            one = page(cursor)
            found.extend(one.data)
            cursor = getattr(one, "next_page", None) or getattr(one, "cursor", None)
            if cursor is None:
                return found

    async def shown(render: Callable[[], str]) -> HTMLResponse:
        try:
            return html(await reading(render))
        except NotFoundError as exc:
            return html(pages.not_found_page(exc.message), 404)

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", 308)

    @app.get("/ui/login", include_in_schema=False)
    async def ui_login(next: str | None = None) -> Response:
        return html(pages.login_page(refused=False, next_path=_ui_next(next)))

    @app.post("/ui/login", include_in_schema=False)
    async def ui_log_in(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        goes_on = _ui_next((form.get("next") or [""])[0])
        if not token or not valid(token):
            return html(pages.login_page(refused=True, next_path=goes_on), 401)
        answer = RedirectResponse(goes_on, 303)
        answer.set_cookie(UI_COOKIE, token, path="/ui", httponly=True, samesite="strict")
        return answer

    @app.get("/ui/logout", include_in_schema=False)
    async def ui_log_out() -> Response:
        answer = RedirectResponse("/ui/login", 303)
        answer.delete_cookie(UI_COOKIE, path="/ui", httponly=True, samesite="strict")
        return answer

    @app.get("/ui/", include_in_schema=False)
    async def ui_customers(q: str = "", page: str = "1") -> Response:
        number = int(page) if page.isdigit() and 0 < int(page) < 10**9 else 1

        def render() -> str:
            wanted = q.strip() or None
            shown = services.customers(
                limit=UI_CUSTOMERS,
                next_page=str((number - 1) * UI_CUSTOMERS) if number > 1 else None,
                search=wanted,
                settings=settings,
            )
            total = services.customer_count(wanted, settings=settings)
            return pages.customers_page(shown.data, q.strip(), number, UI_CUSTOMERS, total)

        return await shown(render)

    @app.get("/ui/customers/{customer_id}", include_in_schema=False)
    async def ui_customer(customer_id: str) -> Response:
        def render() -> str:
            customer = services.customer(customer_id, settings=settings)
            if customer is None:
                raise NotFoundError(f"no customer `{customer_id}`")
            contracts = all_of(
                lambda cursor: services.customer_contracts(
                    customer_id,
                    limit=MAX_LIMIT,
                    cursor=cursor,
                    include_balance=True,
                    settings=settings,
                )
            )
            starts = services.invoice_generation_starts(customer_id, settings=settings)
            return pages.customer_page(customer, contracts, starts)

        return await shown(render)

    @app.get("/ui/customers/{customer_id}/contracts/{contract_id}", include_in_schema=False)
    async def ui_contract(customer_id: str, contract_id: str) -> Response:
        def render() -> str:
            customer = services.customer(customer_id, settings=settings)
            if customer is None:
                raise NotFoundError(f"no customer `{customer_id}`")
            contract = services.customer_contract(
                customer_id, contract_id, include_balance=True, settings=settings
            )
            if contract is None:
                raise NotFoundError(f"no contract `{contract_id}` of customer `{customer_id}`")
            invoices = all_of(
                lambda cursor: services.customer_invoices(
                    customer_id, limit=MAX_LIMIT, next_page=cursor, settings=settings
                )
            )
            segments = services.customer_balances(customer_id, settings=settings).segments
            ids = {
                c["id"] for c in [*contract["current"]["commits"], *contract["current"]["credits"]]
            }
            return pages.contract_page(
                customer,
                contract,
                [i for i in invoices if i.get("contract_id") == contract_id],
                [s for s in segments.to_dicts() if s["id"] in ids],
                services.invoice_generation_starts(customer_id, settings=settings).get(contract_id),
            )

        return await shown(render)

    @app.get("/ui/customers/{customer_id}/invoices/{invoice_id}", include_in_schema=False)
    async def ui_invoice(customer_id: str, invoice_id: str, window: str = "day") -> Response:
        window_size = _one_of(window, "window", ("HOUR", "DAY"))

        def render() -> str:
            customer = services.customer(customer_id, settings=settings)
            invoice = services.customer_invoice(customer_id, invoice_id, settings=settings)
            if customer is None or invoice is None:
                raise NotFoundError(f"no invoice `{invoice_id}` of customer `{customer_id}`")
            start = _moment(invoice["start_timestamp"], "start_timestamp")
            end = _moment(invoice["end_timestamp"], "end_timestamp")
            windows = all_of(
                lambda cursor: services.customer_invoice_breakdowns(
                    customer_id,
                    starting_on=start,
                    ending_before=end,
                    window_size=window_size,
                    limit=UI_WINDOWS,
                    next_page=cursor,
                    settings=settings,
                )
            )
            mine = [w for w in windows if w["id"] == invoice_id]
            return pages.invoice_page(customer, invoice, mine, window_size)

        return await shown(render)

    @app.get("/ui/reconciliations", include_in_schema=False)
    async def ui_reconciliations() -> Response:
        return await shown(
            lambda: pages.reconciliations_page(services.reconciliations(settings=settings))
        )

    @app.get("/ui/reconciliations/{reconciliation_id}", include_in_schema=False)
    async def ui_reconciliation(reconciliation_id: str) -> Response:
        def render() -> str:
            kept = (
                services.stored_reconciliation(int(reconciliation_id), settings=settings)
                if reconciliation_id.isdigit()
                else None
            )
            if kept is None:
                raise NotFoundError(f"no reconciliation `{reconciliation_id}`")
            return pages.reconciliation_page(
                int(reconciliation_id),
                reconcile.report_sections(kept.result, kept.periods),
                reconcile.REPORT_STYLE_ADDED,
            )

        return await shown(render)


def serve(settings: Settings, tokens: Sequence[str], host: str, port: int) -> None:
    """Run the API until interrupted (uvicorn, one process: the database's single writer)."""
    import uvicorn

    uvicorn.run(create_app(settings, tokens), host=host, port=port, log_level="info")
