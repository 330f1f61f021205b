"""The seeded data-set generator: shapes the importer accepts, hourly rows inside contracts,
exact decimal quantities, and the same files for the same seed; the realistic shape (UUID ids,
rows in time order, one file) has the same rows and the same invoices as the short one."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from dateutil.relativedelta import relativedelta
from pydantic import TypeAdapter
from tests.conftest import query

from bulk_rating import import_history, samples
from bulk_rating.models import Catalog, Contract

SIZE = {"customers": 3, "products": 3, "months": 1}
START = datetime(2024, 1, 1, tzinfo=UTC)
# Every kind of product, dense and sparse customers, both billing days, a price change.
REALISTIC_SIZE = {"customers": 4, "products": 4, "months": 2}
REALISTIC: dict[str, Any] = {"ids": "uuid", "order": "time", "single_file": True}
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SORT_KEY = ["inclusive_start_date", "customer_id", "product_id", "pricing.region"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("samples") / "set"
    return out, samples.generate(out, **SIZE)


def _usage(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "usage" / "*.parquet")


def _contracts(out: Path) -> list[Contract]:
    return TypeAdapter(list[Contract]).validate_json((out / "contracts.json").read_text())


def test_writes_the_files_it_lists(generated: tuple[Path, dict[str, Any]]) -> None:
    out, result = generated
    assert result["files"][:2] == ["catalog.json", "contracts.json"]
    assert [f for f in result["files"] if f.startswith("usage/")] == ["usage/part-0000.parquet"]
    for name in result["files"]:
        assert (out / name).is_file(), name
    assert result["seed"] == 7
    assert result["history_start"] == "2024-01-01T00:00:00Z"


def test_catalog_has_every_kind_of_rate(generated: tuple[Path, dict[str, Any]]) -> None:
    out, _ = generated
    catalog = Catalog.model_validate_json((out / "catalog.json").read_text())
    assert [c.id for c in catalog.customers] == ["cus_0001", "cus_0002", "cus_0003"]
    [card] = catalog.rate_cards
    rates = card.rates
    assert all(r.entitled for r in rates)
    assert {r.rate_type for r in rates} == {"FLAT", "TIERED"}
    tiered = next(r for r in rates if r.rate_type == "TIERED")
    assert tiered.tiers is not None
    assert len(tiered.tiers) == 2
    assert tiered.tiers[0].size is not None
    assert tiered.tiers[1].size is None

    regional = [p for p in catalog.products if p.pricing_group_key == ["region"]]
    assert regional
    for product in regional:
        groups = [r.pricing_group_values for r in rates if r.product_id == product.id]
        assert groups == [{"region": region} for region in samples.REGIONS]

    by_product: dict[str, list[Any]] = {}
    for rate in rates:
        by_product.setdefault(rate.product_id, []).append(rate)
    [changing] = [group for group in by_product.values() if len(group) == 2]
    first, second = changing
    assert first.ending_before == second.starting_at == START + samples.PRICE_CHANGE_AFTER
    assert second.starting_at.minute == second.starting_at.second == 0
    assert first.price != second.price
    # Every rate starts at or before the data start, but the price change.
    assert [r for r in rates if r.starting_at > START] == [second]


def test_prices_are_exact_decimal_numbers(generated: tuple[Path, dict[str, Any]]) -> None:
    out, _ = generated
    document = json.loads((out / "catalog.json").read_text(), parse_float=Decimal)
    prices = [
        price
        for rate in document["rate_cards"][0]["rates"]
        for price in [rate.get("price"), *(t["price"] for t in rate.get("tiers", []))]
        if price is not None
    ]
    assert prices
    for price in prices:
        assert isinstance(price, Decimal | int)
        assert Decimal(price) > 0
        assert Decimal(price).as_tuple().exponent >= -4  # type: ignore[operator]


def test_contracts_cover_whole_monthly_periods(generated: tuple[Path, dict[str, Any]]) -> None:
    out, result = generated
    contracts = _contracts(out)
    assert [c.customer_id for c in contracts] == ["cus_0001", "cus_0002", "cus_0003"]
    assert {c.usage_statement_schedule.day for c in contracts} == {
        "FIRST_OF_MONTH",
        "CONTRACT_START",
    }
    for contract in contracts:
        schedule = contract.usage_statement_schedule
        assert schedule.frequency == "MONTHLY"
        assert contract.starting_at >= START
        if schedule.day == "FIRST_OF_MONTH":
            assert contract.starting_at == START
        else:
            assert contract.starting_at.day > 1
        assert schedule.invoice_generation_starting_at == contract.starting_at + relativedelta(
            months=1
        )
    assert result["history_end"] == max(c.generation_starts_at for c in contracts).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_usage_rows_are_hours_inside_their_contract(
    generated: tuple[Path, dict[str, Any]],
) -> None:
    out, result = generated
    usage = _usage(out)
    assert usage.schema == pl.Schema(samples.USAGE)
    assert usage.schema["quantity"] == pl.Decimal(38, 9)
    assert usage.height == result["rows"] == samples.rows_for(**SIZE)
    assert usage.null_count().row(0) == (0, 0, 0, 0, 0, 0, usage["pricing.region"].null_count())

    bounds = pl.DataFrame(
        {
            "customer_id": [c.customer_id for c in _contracts(out)],
            "contract_id": [c.id for c in _contracts(out)],
            "starts": [c.starting_at for c in _contracts(out)],
            "ends": [c.generation_starts_at for c in _contracts(out)],
        }
    )
    checked = usage.join(bounds, on=["customer_id", "contract_id"], how="left")
    start, end = pl.col("inclusive_start_date"), pl.col("exclusive_end_date")
    bad = checked.filter(
        (end - start != timedelta(hours=1))
        | (start.dt.truncate("1h") != start)
        | (start < pl.col("starts"))
        | (end > pl.col("ends"))
        | pl.col("starts").is_null()
        | (pl.col("quantity") <= 0)
    )
    assert bad.is_empty(), bad.head()
    assert usage.select(pl.struct(pl.exclude("quantity")).is_unique().all()).item()


def test_dense_and_sparse_customers(generated: tuple[Path, dict[str, Any]]) -> None:
    out, _ = generated
    catalog = Catalog.model_validate_json((out / "catalog.json").read_text())
    regional = {p.id for p in catalog.products if p.pricing_group_key}
    usage = _usage(out)
    per_pair = usage.group_by("customer_id", "product_id").agg(
        hours=pl.col("inclusive_start_date").n_unique(), rows=pl.len()
    )
    # One row per customer, product and hour: a regional product is in one region each hour.
    assert (per_pair["hours"] == per_pair["rows"]).all()
    for customer in catalog.customers:
        mine = per_pair.filter(pl.col("customer_id") == customer.id)
        if customer.custom_fields["usage_profile"] == "dense":
            assert mine.height == 3
            assert set(mine["hours"]) == {31 * 24}
        else:
            assert 1 <= mine.height <= 3
            assert mine["hours"].max() < 31 * 24 // 2  # business hours on weekdays
    regions = usage.filter(pl.col("product_id").is_in(regional))["pricing.region"]
    assert regions.null_count() == 0
    assert set(regions) <= set(samples.REGIONS)
    assert usage.filter(~pl.col("product_id").is_in(regional))["pricing.region"].null_count() == (
        usage.filter(~pl.col("product_id").is_in(regional)).height
    )


def test_same_seed_same_files_other_seed_other_files(
    generated: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, result = generated
    again = samples.generate(tmp_path / "again", **SIZE)
    samples.generate(tmp_path / "other", **SIZE, seed=8)
    assert again == result
    for name in result["files"]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    part = "usage/part-0000.parquet"
    assert (tmp_path / "other" / part).read_bytes() != (out / part).read_bytes()
    assert not _usage(tmp_path / "other").equals(_usage(out))


def test_hash_is_the_same_in_python_and_polars() -> None:
    a, b = [0, 1, 2, 10**9], [5, 0, 7, 2**40]
    frame = pl.LazyFrame({"a": a, "b": b})
    drawn = samples.with_draw(frame, "h", 7, 3, pl.col("a"), pl.col("b"), 11).collect()
    assert drawn["h"].to_list() == [samples.draw(7, 3, x, y, 11) for x, y in zip(a, b, strict=True)]


def test_rejects_a_start_that_is_not_a_month_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="first day of a month"):
        samples.generate(tmp_path, **SIZE, start="2024-01-15")


# --- the realistic shape ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("realistic") / "set"
    return out, samples.generate(out, **REALISTIC_SIZE, **REALISTIC)


def _ids_in(out: Path) -> dict[str, list[str]]:
    """Every id the data set names, by kind, customers and products in the catalog's order."""
    catalog = Catalog.model_validate_json((out / "catalog.json").read_text())
    contracts = _contracts(out)
    return {
        "customers": [c.id for c in catalog.customers],
        "products": [p.id for p in catalog.products],
        "rate_cards": [r.id for r in catalog.rate_cards],
        "contracts": [c.id for c in contracts],
        "contract_customers": [c.customer_id for c in contracts],
        "contract_rate_cards": [c.rate_card_id for c in contracts],
    }


def test_uuid_ids_are_uuid_text_drawn_from_the_seed(
    realistic: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, result = realistic
    named = _ids_in(out)
    assert len(named["customers"]) == len(named["contracts"]) == REALISTIC_SIZE["customers"]
    assert len(named["products"]) == REALISTIC_SIZE["products"]
    every = [
        i for kind in ("customers", "products", "rate_cards", "contracts") for i in named[kind]
    ]
    assert all(len(i) == 36 and UUID_TEXT.fullmatch(i) for i in every), every
    assert len(set(every)) == len(every)
    assert named["contract_customers"] == named["customers"]
    assert set(named["contract_rate_cards"]) == set(named["rate_cards"])
    usage = _usage(out)
    assert set(usage["customer_id"]) == set(named["customers"])
    assert set(usage["contract_id"]) == set(named["contracts"])
    assert set(usage["product_id"]) == set(named["products"])

    again = samples.generate(tmp_path / "again", **REALISTIC_SIZE, **REALISTIC)
    other = samples.generate(tmp_path / "other", **REALISTIC_SIZE, **REALISTIC, seed=8)
    assert again == result
    for name in result["files"]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    others = _ids_in(tmp_path / "other")
    for kind in ("customers", "products", "rate_cards", "contracts"):
        assert not set(others[kind]) & set(named[kind]), kind
    assert other["rows"] == samples.rows_for(**REALISTIC_SIZE, seed=8)
    assert not _usage(tmp_path / "other").equals(usage)


def test_time_order_sorts_rows_by_time_customer_product_region(
    realistic: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = realistic
    usage = _usage(out)
    assert usage["inclusive_start_date"].is_sorted()
    assert usage.equals(usage.sort(SORT_KEY))
    assert usage.schema == pl.Schema(samples.USAGE)


def test_single_file_of_row_groups_of_at_most_a_million_rows(
    realistic: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, result = realistic
    assert result["files"] == ["catalog.json", "contracts.json", "usage/part-0000.parquet"]
    assert sorted(p.name for p in (out / "usage").iterdir()) == ["part-0000.parquet"]
    assert samples.ROW_GROUP_ROWS == 1_000_000
    metadata = pq.ParquetFile(out / "usage" / "part-0000.parquet").metadata
    assert 0 < metadata.num_rows == result["rows"]
    assert all(metadata.row_group(i).num_rows <= 1_000_000 for i in range(metadata.num_row_groups))

    # Row groups are whole whatever the slices' sizes; time order without one file splits it.
    monkeypatch.setattr(samples, "ROW_GROUP_ROWS", 1_000)
    monkeypatch.setattr(samples, "MAX_PART_ROWS", 3_000)
    monkeypatch.setattr(samples, "SLICE_ROWS", 700)
    one = samples.generate(tmp_path / "one", **REALISTIC_SIZE, **REALISTIC)
    split = samples.generate(tmp_path / "split", **REALISTIC_SIZE, ids="uuid", order="time")
    written = pq.ParquetFile(tmp_path / "one" / "usage" / "part-0000.parquet").metadata
    groups = [written.row_group(i).num_rows for i in range(written.num_row_groups)]
    assert groups == [1_000] * (result["rows"] // 1_000) + [result["rows"] % 1_000]
    parts = [pq.ParquetFile(tmp_path / "split" / name).metadata for name in split["files"][2:]]
    assert split["files"][2:] == [f"usage/part-{n:04d}.parquet" for n in range(len(parts))]
    assert len(parts) > 1
    assert [p.num_rows for p in parts[:-1]] == [3_000] * (len(parts) - 1)
    assert one["rows"] == split["rows"] == sum(p.num_rows for p in parts) == result["rows"]
    assert _usage(tmp_path / "split").equals(_usage(out))
    assert _usage(tmp_path / "one").equals(_usage(out))


def test_rows_for_counts_the_realistic_shape(realistic: tuple[Path, dict[str, Any]]) -> None:
    out, result = realistic
    counted = samples.rows_for(**REALISTIC_SIZE, **REALISTIC)
    assert counted == samples.rows_for(**REALISTIC_SIZE) == result["rows"] == _usage(out).height


@pytest.mark.parametrize("single_file", [False, True])
def test_time_order_has_the_rows_of_customer_order(
    single_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(samples, "SLICE_ROWS", 5_000)  # several slices
    samples.generate(tmp_path / "customer", **REALISTIC_SIZE)
    samples.generate(tmp_path / "time", **REALISTIC_SIZE, order="time", single_file=single_file)
    by_customer, by_time = _usage(tmp_path / "customer"), _usage(tmp_path / "time")
    assert by_time.height == by_customer.height > 10_000
    assert not by_time.equals(by_customer)
    assert by_time.equals(by_customer.sort(SORT_KEY))


def test_single_file_in_customer_order_holds_the_parts_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(samples, "MAX_PART_ROWS", 3_000)  # several parts
    parts = samples.generate(tmp_path / "parts", **REALISTIC_SIZE)
    one = samples.generate(tmp_path / "one", **REALISTIC_SIZE, single_file=True)
    assert len(parts["files"]) > 3
    assert one["files"] == ["catalog.json", "contracts.json", "usage/part-0000.parquet"]
    assert one["rows"] == parts["rows"]
    assert _usage(tmp_path / "one").equals(_usage(tmp_path / "parts"))


def _invoices(db: Path, customers: dict[str, int], products: dict[str, int]) -> list[Any]:
    """The stored invoices and their lines, ids replaced by their index in the catalog."""
    invoices = query(
        db,
        """SELECT invoice_id, customer_id, start_timestamp, end_timestamp, status, total
           FROM invoices ORDER BY ALL""",
    )
    lines = query(
        db,
        """SELECT invoice_id, product_id, starting_at, ending_before, tier_level, quantity, total
           FROM invoice_line_items ORDER BY ALL""",
    )
    by_invoice: dict[str, list[tuple[Any, ...]]] = {}
    for invoice_id, product_id, *rest in lines:
        by_invoice.setdefault(invoice_id, []).append((products[product_id], *rest))
    return sorted(
        (customers[customer_id], *rest, sorted(by_invoice.get(invoice_id, [])))
        for invoice_id, customer_id, *rest in invoices
    )


def test_realistic_shape_imports_to_the_invoices_of_the_short_one(
    realistic: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, result = realistic
    short_out = tmp_path / "short"
    short = samples.generate(short_out, **REALISTIC_SIZE)
    assert short["as_of"] == result["as_of"]

    imported: dict[str, list[Any]] = {}
    for name, directory in (("realistic", out), ("short", short_out)):
        db = tmp_path / f"{name}.duckdb"
        report = import_history(directory, db=db, as_of=result["as_of"])
        assert report.status == "imported", report.issues
        assert report.issues.is_empty()
        assert report.rows_read == result["rows"]
        ids = _ids_in(directory)
        customers = {c: i for i, c in enumerate(ids["customers"])}
        products = {p: i for i, p in enumerate(ids["products"])}
        imported[name] = _invoices(db, customers, products)

    assert len(imported["realistic"]) >= REALISTIC_SIZE["customers"] * REALISTIC_SIZE["months"]
    assert sum(invoice[4] for invoice in imported["realistic"]) > 0
    assert imported["realistic"] == imported["short"]


def test_rejects_an_unknown_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ids must be one of"):
        samples.generate(tmp_path, **SIZE, ids="long")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order must be one of"):
        samples.rows_for(**SIZE, order="random")  # type: ignore[arg-type]
