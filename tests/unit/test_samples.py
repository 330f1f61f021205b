"""The seeded data-set generator: shapes the importer accepts, hourly rows inside contracts,
exact decimal quantities, and the same files for the same seed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dateutil.relativedelta import relativedelta
from pydantic import TypeAdapter

from bulk_rating import samples
from bulk_rating.models import Catalog, Contract

SIZE = {"customers": 3, "products": 3, "months": 1}
START = datetime(2024, 1, 1, tzinfo=UTC)


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
