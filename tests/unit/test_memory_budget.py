"""A run's partitions of contracts follow what fills their memory: the usage rows, and at many
contracts the rows of the contracts' own tables (rate pieces, billing periods by week) that every
partition's joins hold."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bulk_rating import assemble, catalog, kernel, load, pipeline, samples
from bulk_rating.settings import (
    BUDGET_BYTES_PER_CONTRACT_ROW,
    BUDGET_BYTES_PER_ROW,
    SPLIT_BUDGET_BYTES_PER_ROW,
    Settings,
)
from bulk_rating.store import Store


def test_contracts_rows_take_partitions_as_usage_rows_do() -> None:
    settings = Settings(memory_limit="1GiB", threads=1)
    room = settings.budget_bytes() - 128 * 1024**2  # a thread's fixed share set aside
    rows = room // BUDGET_BYTES_PER_ROW
    assert settings.partitions_for(rows) == 1
    assert settings.partitions_for(rows + 1) == 2
    # few usage rows, many contracts: the contracts' rows alone need three partitions
    contract_rows = 3 * room // BUDGET_BYTES_PER_CONTRACT_ROW
    assert settings.partitions_for(1_000, contract_rows) == 4
    assert settings.partitions_for(1_000, contract_rows - 1_000) == 3


def test_a_table_split_first_is_cut_in_partitions_sized_for_its_groups() -> None:
    settings = Settings(memory_limit="1GiB", threads=1)
    room = settings.budget_bytes() - 128 * 1024**2
    # fewer partitions than a split needs: each is sized as before (one more reads the table again)
    below = (kernel.SPLIT_FROM - 1) * room // BUDGET_BYTES_PER_ROW
    assert kernel.partition_count(settings, below, 0) == kernel.SPLIT_FROM - 1
    # enough to split: sized at the split's bytes a row, so more of them
    split = kernel.SPLIT_FROM * room // BUDGET_BYTES_PER_ROW
    assert settings.partitions_for(split) == kernel.SPLIT_FROM
    wider = kernel.partition_count(settings, split, 0)
    assert wider == -(-split * SPLIT_BUDGET_BYTES_PER_ROW // room) > kernel.SPLIT_FROM
    # the contracts' rows count as before
    assert (
        kernel.partition_count(settings, split, room // BUDGET_BYTES_PER_CONTRACT_ROW) == wider + 1
    )


def test_contract_rows_count_rate_pieces_and_period_weeks(tmp_path: Path) -> None:
    data = tmp_path / "set"
    samples.generate(data, customers=30, products=3, months=2, seed=3, ids="uuid")
    as_of = datetime(2024, 3, 1, tzinfo=UTC)
    with Store.open(tmp_path / "store.duckdb") as store:
        dataset = load.load_dataset([data])
        plan, refs = pipeline._references(store, dataset)
        counted = kernel.contract_rows(store, plan, refs.contracts, as_of)
        weeks = 0
        for contract in plan.new_contracts:
            days = (min(contract.generation_starts_at, as_of) - contract.starting_at).days
            weeks += max(days // 7 + 2, 1)
        assert plan.rows["contract_rates"].height > len(plan.new_contracts)
        assert counted == (plan.rows["contract_rates"].height + weeks + 6 * len(plan.new_contracts))
        # the period weeks the kernel then makes: never more than counted
        fiat = dict(
            plan.rows["rate_cards"].select("rate_card_id", "fiat_credit_type_id").iter_rows()
        )
        drafts = catalog.drafts(plan.new_contracts, fiat, as_of)
        store.temp_table("_new_contracts", plan.rows["contracts"])
        terms = store.frame(assemble.contract_terms_sql("_new_contracts"))
        made = assemble.period_weeks(terms, drafts).height
        assert 0 < made <= weeks + 6 * len(plan.new_contracts)
