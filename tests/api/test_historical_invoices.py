"""The guide's calls through Metronome's SDK: create the contract, preview the history, import
it, read the invoices back; the same documents as the command line's, and errors as the SDK
expects them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import metronome
import pytest
from tests.api.conftest import AS_OF, Served
from tests.conftest import SAMPLES, file_digest, query, run_cli

ACME_INVOICES = json.loads((SAMPLES / "acme" / "invoices.json").read_text())["invoices"]


@pytest.fixture
def acme_catalog(tmp_path: Path) -> Path:
    """A store holding acme's catalog and contract (as of the guide's day), no invoices yet."""
    data = tmp_path / "catalog-only"
    data.mkdir()
    for name in ("catalog.json", "contracts.json"):
        (data / name).write_text((SAMPLES / "acme" / name).read_text())
    db = tmp_path / "api.duckdb"
    assert run_cli("import", data, "--db", db, "--as-of", AS_OF).exit_code == 0
    return db


def _raw(client: metronome.Metronome, invoices: list[dict[str, Any]], preview: bool) -> Any:
    response = client.v1.contracts.with_raw_response.create_historical_invoices(
        invoices=invoices,  # type: ignore[arg-type]
        preview=preview,
    )
    return response.http_response.json()


def test_the_guide_preview_then_import_gives_the_cli_documents(
    serve: Callable[..., Served], acme_catalog: Path, tmp_path: Path
) -> None:
    served = serve(acme_catalog)
    client = served.client()
    before = file_digest(acme_catalog)

    previewed = client.v1.contracts.create_historical_invoices(
        invoices=ACME_INVOICES,  # type: ignore[arg-type]
        preview=True,
    )
    assert file_digest(acme_catalog) == before, "a preview writes nothing"
    imported = _raw(client, ACME_INVOICES, preview=False)

    cli = run_cli(
        "import", SAMPLES / "acme", "--db", tmp_path / "cli.duckdb", "--as-of", AS_OF, "--json"
    )
    expected = json.loads(cli.stdout)["data"]
    assert [i.total for i in previewed.data] == [12500, 25000]
    assert imported["data"] == expected  # the same documents, number for number
    assert query(
        acme_catalog, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'"
    ) == [(2,)]


def test_a_repeated_batch_answers_with_the_stored_invoices_and_imports_nothing(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    client = serve(acme_catalog).client()
    first = _raw(client, ACME_INVOICES, preview=False)
    again = _raw(client, ACME_INVOICES, preview=False)

    assert again == first
    assert query(acme_catalog, "SELECT count(*) FROM _runs") == [(2,)]  # catalog run + one import


def test_a_bad_batch_is_a_400_listing_every_problem(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    client = serve(acme_catalog).client()
    bad = json.loads(json.dumps(ACME_INVOICES))
    bad[0]["usage_line_items"][0]["product_id"] = "prod_nothing"
    bad[1]["usage_line_items"][0]["quantity"] = -1
    before = file_digest(acme_catalog)

    with pytest.raises(metronome.BadRequestError) as raised:
        client.v1.contracts.create_historical_invoices(invoices=bad, preview=False)  # type: ignore[arg-type]

    body = raised.value.body
    assert isinstance(body, dict)
    assert "2 problems found" in body["message"]
    assert sorted(i["code"] for i in body["issues"]) == ["NEGATIVE_QUANTITY", "UNKNOWN_PRODUCT"]
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert file_digest(acme_catalog) == before


def test_numbers_are_exact_both_ways(serve: Callable[..., Served], acme_catalog: Path) -> None:
    """A quantity of 0.1 + 0.2 in decimal is 0.3, never 0.30000000000000004."""
    client = serve(acme_catalog).client()
    body = json.loads(json.dumps(ACME_INVOICES))
    body[0]["usage_line_items"][0]["quantity"] = "0.3"
    answer = _raw(client, body, preview=True)
    assert answer["data"][0]["total"] == 375  # 0.3 x 1250, exactly


SEPTEMBER_CONTRACT: dict[str, Any] = {
    "customer_id": "cus_acme",
    "rate_card_id": "rc_standard_2024",
    "starting_at": "2024-09-01T00:00:00Z",
    "usage_statement_schedule": {
        "frequency": "MONTHLY",
        "invoice_generation_starting_at": "2024-09-01T00:00:00Z",
    },
}


def test_contracts_create_answers_an_id_from_its_content(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    client = serve(acme_catalog).client()
    created = client.v1.contracts.create(**SEPTEMBER_CONTRACT)
    again = client.v1.contracts.create(**SEPTEMBER_CONTRACT)

    assert created.data.id == again.data.id
    assert len(created.data.id) == 36
    assert query(acme_catalog, "SELECT count(*) FROM contracts") == [(2,)]
    with pytest.raises(metronome.BadRequestError) as raised:
        client.v1.contracts.create(**{**SEPTEMBER_CONTRACT, "customer_id": "cus_nobody"})
    assert [i["code"] for i in raised.value.body["issues"]] == ["UNKNOWN_CUSTOMER"]  # type: ignore[index]
    with pytest.raises(metronome.BadRequestError) as unsupported:
        client.v1.contracts.create(**SEPTEMBER_CONTRACT, discounts=[])
    assert "`discounts` is not supported yet" in str(unsupported.value.body)


def test_invoices_are_listed_in_pages_and_retrieved(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    client = serve(acme_catalog).client()
    _raw(client, ACME_INVOICES, preview=False)

    pages = client.v1.customers.invoices.list(customer_id="cus_acme", limit=2)
    listed = list(pages)  # the SDK follows next_page
    one = client.v1.customers.invoices.retrieve(customer_id="cus_acme", invoice_id=listed[0].id)

    assert [(i.start_timestamp.month, i.status) for i in listed] == [  # type: ignore[union-attr]
        (6, "FINALIZED"),
        (7, "FINALIZED"),
        (8, "DRAFT"),
    ]
    assert one.data.total == 12500
    with pytest.raises(metronome.NotFoundError):
        client.v1.customers.invoices.retrieve(customer_id="cus_acme", invoice_id="nothing")
    with pytest.raises(metronome.NotFoundError):
        client.v1.customers.invoices.list(customer_id="cus_nobody")


def test_a_wrong_token_is_refused_and_unknown_paths_answer_in_metronomes_shape(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    served = serve(acme_catalog)
    with pytest.raises(metronome.AuthenticationError) as refused:
        served.client(token="wrong").v1.customers.invoices.list(customer_id="cus_acme")
    assert set(refused.value.body) >= {"message"}  # type: ignore[arg-type]

    client = served.client()
    with pytest.raises(metronome.NotFoundError) as missing:
        client.get("/v1/nothing", cast_to=object)
    assert "no such endpoint" in missing.value.body["message"]  # type: ignore[index]


def test_two_clients_importing_at_once_import_once(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    """Requests that write are serialised: the second sees the first's run and replays it."""
    served = serve(acme_catalog)
    answers: list[Any] = []

    def send() -> None:
        answers.append(_raw(served.client(), ACME_INVOICES, preview=False))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers[0] == answers[1]
    assert query(
        acme_catalog, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'"
    ) == [(2,)]


def test_an_idempotency_key_replays_its_first_answer_and_refuses_another_request(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    served = serve(acme_catalog)
    client = served.client()
    key = {"Idempotency-Key": "import-2024-06-07"}

    def send(invoices: list[dict[str, Any]], token_client: Any = client) -> Any:
        return token_client.v1.contracts.with_raw_response.create_historical_invoices(
            invoices=invoices, preview=False, extra_headers=key
        )

    first = send(ACME_INVOICES)
    again = send(ACME_INVOICES)
    with pytest.raises(metronome.ConflictError) as conflict:
        send(ACME_INVOICES[:1])
    with pytest.raises(metronome.AuthenticationError):
        send(ACME_INVOICES, served.client(token="wrong"))

    assert again.http_response.json() == first.http_response.json()
    assert again.http_response.headers["idempotent-replayed"] == "true"
    assert "another request" in conflict.value.body["message"]  # type: ignore[index]
    assert conflict.value.response.headers["x-should-retry"] == "false"
    assert query(acme_catalog, "SELECT count(*) FROM _runs") == [(2,)]


def test_an_idempotency_key_outlives_the_server(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    """The first answer is kept in the store: a restarted server still replays it."""
    key = {"Idempotency-Key": "contract-sept"}
    first = (
        serve(acme_catalog).client().v1.contracts.create(**SEPTEMBER_CONTRACT, extra_headers=key)
    )
    restarted = serve(acme_catalog).client()
    with pytest.raises(metronome.ConflictError):
        restarted.v1.contracts.create(**{**SEPTEMBER_CONTRACT, "name": "x"}, extra_headers=key)
    assert (
        restarted.v1.contracts.create(**SEPTEMBER_CONTRACT, extra_headers=key).data.id
        == first.data.id
    )


def test_reads_run_beside_each_other_and_wait_for_an_import(
    serve: Callable[..., Served], acme_catalog: Path
) -> None:
    """Eight readers list invoices while an import runs: every read answers (before the import,
    or after it, whole), none fails on DuckDB's one-configuration-per-file rule, and the import
    is stored once."""
    served = serve(acme_catalog)
    failures: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        with served.client() as client:
            for _ in range(5):
                try:
                    page = client.v1.customers.invoices.list(customer_id="cus_acme", limit=10)
                    seen.append(len(page.data))
                except BaseException as failed:  # collected, asserted below
                    failures.append(failed)

    def write() -> None:
        with served.client() as client:
            _raw(client, ACME_INVOICES, preview=False)

    threads = [threading.Thread(target=read) for _ in range(8)]
    threads.insert(4, threading.Thread(target=write))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(seen) == 40
    assert set(seen) <= {1, 3}  # the draft alone, or the draft and both imported invoices
    assert query(
        acme_catalog, "SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'"
    ) == [(2,)]
