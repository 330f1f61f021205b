"""The server as an operator meets it: it will not start without a token, and it describes
itself in an OpenAPI document holding every path and method the SDK calls."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.adversarial.conftest import assert_clean
from tests.api.conftest import TOKEN, Served
from tests.conftest import run_process

# (method, path) of every SDK operation served, as the SDK sends them (see the README's table).
SERVED = [
    ("post", "/v1/contracts/createHistoricalInvoices"),
    ("post", "/v1/contracts/create"),
    ("post", "/v1/contracts/get"),
    ("post", "/v1/contracts/list"),
    ("post", "/v1/contracts/customerBalances/list"),
    ("post", "/v1/contracts/customerBalances/getNetBalance"),
    ("get", "/v1/customers/{customer_id}/invoices"),
    ("get", "/v1/customers/{customer_id}/invoices/{invoice_id}"),
    ("get", "/v1/customers/{customer_id}/invoices/breakdowns"),
    ("post", "/v1/customers"),
    ("get", "/v1/customers"),
    ("get", "/v1/customers/{customer_id}"),
    ("post", "/v1/contract-pricing/products/create"),
    ("post", "/v1/contract-pricing/products/get"),
    ("post", "/v1/contract-pricing/products/list"),
    ("post", "/v1/contract-pricing/rate-cards/create"),
    ("post", "/v1/contract-pricing/rate-cards/get"),
    ("post", "/v1/contract-pricing/rate-cards/list"),
    ("post", "/v1/contract-pricing/rate-cards/addRate"),
    ("post", "/v1/contract-pricing/rate-cards/addRates"),
    ("post", "/v1/contract-pricing/rate-cards/getRates"),
    ("get", "/v1/credit-types/list"),
    ("post", "/v1/credit-types/create"),
]


def test_without_a_token_the_server_refuses_to_start() -> None:
    result = run_process("serve", "--port", "1")
    assert_clean(result, 2, "BULK_RATING_API_TOKENS")


def test_the_openapi_document_names_every_operation_served(serve: Callable[..., Served]) -> None:
    document = httpx.get(f"{serve().base_url}/openapi.json").json()
    offered = {(method, path) for path, item in document["paths"].items() for method in item}
    assert sorted(set(SERVED) - offered) == []


def test_every_error_is_in_metronomes_shape_never_the_frameworks(
    serve: Callable[..., Served],
) -> None:
    served = serve()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wrong_method = httpx.put(f"{served.base_url}/v1/contracts/create", headers=auth)
    bad_query = httpx.get(f"{served.base_url}/v1/customers/c/invoices?limit=many", headers=auth)
    not_json = httpx.post(
        f"{served.base_url}/v1/contracts/createHistoricalInvoices", headers=auth, content=b"{"
    )

    assert wrong_method.status_code == 405
    assert bad_query.status_code == 400  # never FastAPI's 422
    assert not_json.status_code == 400
    for answer in (wrong_method, bad_query, not_json):
        assert set(answer.json()) == {"message", "issues"}, answer.text
        assert answer.headers["x-should-retry"] == "false"
