"""A generated data set priced by an independent Decimal oracle, invoice by invoice.

The oracle reads the written files only (Parquet rows, catalog.json, contracts.json) and knows
the rules from the README: monthly billing periods anchored on the first of the month or on the
contract start; each hourly row priced at the rate in effect at its start, matched on product and
exact pricing group values; FLAT = quantity x price; TIERED graduated per contract, period,
product and pricing group values in time order, the last tier open.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import query, run_cli

from bulk_rating import samples

SEEDS = [3, 11]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def _period(contract: dict[str, Any], moment: datetime) -> tuple[datetime, datetime]:
    """The contract's monthly billing period containing `moment`."""
    starts = _time(contract["starting_at"])
    day = contract["usage_statement_schedule"].get("day", "FIRST_OF_MONTH").upper()
    assert contract["usage_statement_schedule"]["frequency"].upper() == "MONTHLY"
    anchor = starts if day == "CONTRACT_START" else starts.replace(day=1, hour=0)
    assert anchor.day <= 28  # every month has the anchor's day
    assert (anchor.hour, anchor.minute, anchor.second) == (0, 0, 0)
    k = (moment.year - anchor.year) * 12 + moment.month - anchor.month
    if _add_months(anchor, k) > moment:
        k -= 1
    return max(_add_months(anchor, k), starts), _add_months(anchor, k + 1)


def _rate(rates: list[dict[str, Any]], product: str, group: Any, moment: datetime) -> Any:
    found = [
        r
        for r in rates
        if r["product_id"] == product
        and r.get("pricing_group_values") == group
        and _time(r["starting_at"]) <= moment
        and ("ending_before" not in r or moment < _time(r["ending_before"]))
    ]
    assert len(found) == 1, (product, group, moment, found)
    return found[0]


def _graduated(used: Decimal, quantity: Decimal, tiers: list[dict[str, Any]]) -> Decimal:
    """The amount of `quantity` units after `used` units, over the tiers (the last one open)."""
    amount, low = Decimal(0), Decimal(0)
    start, end = used, used + quantity
    for n, tier in enumerate(tiers):
        high = None if n == len(tiers) - 1 else low + tier["size"]
        part = (end if high is None else min(end, high)) - max(start, low)
        if part > 0:
            amount += part * tier["price"]
        if high is not None:
            low = high
    return amount


def oracle(directory: Path) -> tuple[dict[tuple[str, str], Decimal], set[str]]:
    """Expected total per (contract_id, period start) from the data set's files alone, and the
    pricing situations the rows went through."""
    catalog = json.loads((directory / "catalog.json").read_text(), parse_float=Decimal)
    contracts = {
        c["id"]: c
        for c in json.loads((directory / "contracts.json").read_text(), parse_float=Decimal)
    }
    (card,) = catalog["rate_cards"]
    rates = [
        {
            **rate,
            "price": None if "price" not in rate else Decimal(rate["price"]),
            "tiers": [
                {
                    "price": Decimal(t["price"]),
                    "size": None if "size" not in t else Decimal(t["size"]),
                }
                for t in rate.get("tiers", [])
            ],
        }
        for rate in card["rates"]
    ]
    rows = pq.ParquetDataset(sorted((directory / "usage").glob("*.parquet"))).read().to_pylist()
    rows.sort(key=lambda r: (r["contract_id"], r["product_id"], r["inclusive_start_date"]))

    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    seen: set[str] = set()
    used: dict[tuple[str, datetime, str, str | None], Decimal] = defaultdict(Decimal)
    with localcontext() as context:
        context.prec = 60  # far more than any amount here needs: nothing is rounded
        for row in rows:
            quantity = row["quantity"]
            assert isinstance(quantity, Decimal)
            start = row["inclusive_start_date"]
            assert row["exclusive_end_date"] - start == timedelta(hours=1)
            contract = contracts[row["contract_id"]]
            assert contract["customer_id"] == row["customer_id"]
            period_start, period_end = _period(contract, start)
            seen.add(f"day {contract['usage_statement_schedule'].get('day')}")
            assert row["exclusive_end_date"] <= period_end
            region = row["pricing.region"]
            group = None if region is None else {"region": region}
            rate = _rate(rates, row["product_id"], group, start)
            assert rate.get("entitled", True)
            seen.add("pricing group" if group else "no pricing group")
            if "ending_before" in rate:
                seen.add("before a rate change")
            if _time(rate["starting_at"]) > _time(contract["starting_at"]):
                seen.add("after a rate change")
            if rate["rate_type"].upper() == "FLAT":
                amount = quantity * rate["price"]
            else:
                key = (row["contract_id"], period_start, row["product_id"], region)
                before = used[key]
                amount = _graduated(before, quantity, rate["tiers"])
                used[key] += quantity
                first_size = rate["tiers"][0]["size"]
                seen.add("tier 1" if before < first_size else "tier 2")
                if before < first_size < used[key]:
                    seen.add("tier edge inside a row")
            totals[(row["contract_id"], _text(period_start))] += amount
    return dict(totals), seen


def _import(directory: Path, db: Path, as_of: str) -> Any:
    result = run_cli("import", directory, "--db", db, "--as-of", as_of, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def _exact_text(data: Any) -> str:
    # Numbers were parsed as Decimal (digits kept), so this is the document's own text of them.
    return json.dumps(data, default=str, ensure_ascii=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_invoices_match_an_independent_decimal_oracle(seed: int, tmp_path: Path) -> None:
    generated = tmp_path / "generated"
    info = samples.generate(generated, customers=4, products=4, months=2, seed=seed)
    as_of = info["history_end"][:10]
    db = tmp_path / "store.duckdb"

    result = _import(generated, db, as_of)
    data = result.json()["data"]

    expected, seen = oracle(generated)
    assert seen >= {
        "day FIRST_OF_MONTH",
        "day CONTRACT_START",
        "pricing group",
        "no pricing group",
        "before a rate change",
        "after a rate change",
        "tier 1",
        "tier 2",
        "tier edge inside a row",
    }, seen
    imported = {(i["contract_id"], i["start_timestamp"]): Decimal(i["total"]) for i in data}
    assert len(data) == len(imported) == 4 * 2  # every contract, every month of its history
    assert imported.keys() == expected.keys()
    differences = {k: (imported[k], v) for k, v in expected.items() if imported[k] != v}
    assert not differences, differences
    for invoice in data:
        assert Decimal(invoice["total"]) == sum(
            Decimal(li["total"]) for li in invoice["line_items"]
        )

    # Each invoice's hourly breakdowns add up to its total, exactly.
    sums = query(
        db,
        """SELECT i.invoice_id, i.total, sum(b.amount)
           FROM invoices i JOIN invoice_breakdowns b USING (invoice_id)
           WHERE i.origin = 'HISTORICAL_IMPORT' GROUP BY ALL""",
    )
    assert len(sums) == len(data)
    assert all(total == amount for _, total, amount in sums), sums
    stored = {invoice_id: total for invoice_id, total, _ in sums}
    assert {i["id"]: Decimal(i["total"]) for i in data} == stored

    # The same rows in three files, in another order: the same invoices, to the byte.
    split = tmp_path / "split"
    (split / "usage").mkdir(parents=True)
    for name in ("catalog.json", "contracts.json"):
        shutil.copyfile(generated / name, split / name)
    table = pq.ParquetDataset(sorted((generated / "usage").glob("*.parquet"))).read()
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    shuffled = table.take(pa.array(order))
    cuts = [0, table.num_rows // 5, table.num_rows // 2, table.num_rows]
    for n, (low, high) in enumerate(itertools.pairwise(cuts)):
        pq.write_table(shuffled.slice(low, high - low), split / "usage" / f"rows-{n}.parquet")

    again = _import(split, tmp_path / "split.duckdb", as_of).json()["data"]
    assert _exact_text(again) == _exact_text(data)
