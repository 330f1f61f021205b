"""Catalog and contracts: models -> table rows, and what a run adds to what is stored.

Stored catalog objects and contracts are immutable: giving the same object again is a no-op,
giving the same id with other content is a CATALOG_CONFLICT (prices already applied to stored
invoices must not change under them). The one exception is a rate card no contract uses, whose
rates may be added to (the API's addRate): a run names it in `replacing`, and the store refuses
the change if a contract uses the card by then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from pydantic import BaseModel

from bulk_rating import balances, frames, rate, schedule
from bulk_rating.models import (
    Catalog,
    Contract,
    CreditType,
    Customer,
    Product,
    RateCard,
    Strict,
)


def body(model: Strict) -> str:
    return model.canonical


def _credit_type_row(c: CreditType) -> dict[str, Any]:
    return {"credit_type_id": c.id, "name": c.name, "body": body(c)}


def _customer_row(c: Customer) -> dict[str, Any]:
    return {
        "customer_id": c.id,
        "name": c.name,
        "custom_fields": json.dumps(c.custom_fields, sort_keys=True) if c.custom_fields else "{}",
        "body": body(c),
    }


def _product_row(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.id,
        "name": p.name,
        "type": p.type,
        "tags": p.tags,
        "pricing_group_key": p.pricing_group_key,
        "presentation_group_key": p.presentation_group_key,
        "body": body(p),
    }


def _rate_card_row(r: RateCard) -> dict[str, Any]:
    return {
        "rate_card_id": r.id,
        "name": r.name,
        "description": r.description,
        "fiat_credit_type_id": r.fiat_credit_type_id,
        "body": body(r),
    }


def contract_row(c: Contract) -> dict[str, Any]:
    schedule_ = c.usage_statement_schedule
    provider = c.billing_provider_configuration
    return {
        "contract_id": c.id,
        "customer_id": c.customer_id,
        "rate_card_id": c.rate_card_id,
        "starting_at": c.starting_at,
        "ending_before": c.ending_before,
        "frequency": schedule_.frequency,
        "day": schedule_.day,
        "billing_anchor_date": schedule_.billing_anchor_date,
        "invoice_generation_starting_at": schedule_.invoice_generation_starting_at,
        "billing_provider": None if provider is None else provider.billing_provider,
        "delivery_method": None if provider is None else provider.delivery_method,
        "body": body(c),
    }


# table -> (id column, the kind's name in messages, the source file, row builder)
KINDS: dict[str, tuple[str, str, str, Callable[[Any], dict[str, Any]]]] = {
    "credit_types": ("credit_type_id", "credit type", "catalog.json", _credit_type_row),
    "customers": ("customer_id", "customer", "catalog.json", _customer_row),
    "products": ("product_id", "product", "catalog.json", _product_row),
    "rate_cards": ("rate_card_id", "rate card", "catalog.json", _rate_card_row),
    "contracts": ("contract_id", "contract", "contracts.json", contract_row),
}


@dataclass
class CatalogPlan:
    """What this run adds: new rows per table, and the conflicts with what is stored."""

    rows: dict[str, pl.DataFrame] = field(default_factory=dict)
    new_contracts: list[Contract] = field(default_factory=list)
    contracts_created: int = 0  # len(new_contracts), kept once they are let go
    # stored rate cards given with other content that the run may replace (see `replacing`)
    replaced_cards: list[RateCard] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def let_go_of_models(self) -> None:
        """The new contracts' models are dropped once the run's frames are made from them (at
        192,998 contracts they hold most of a GB)."""
        self.new_contracts = []

    def ids(self, table: str) -> set[str]:
        frame = self.rows.get(table)
        return set() if frame is None else set(frame[KINDS[table][0]].to_list())


def plan(
    catalog: Catalog | None,
    contracts: Sequence[Contract] | None,
    stored: dict[str, dict[str, str | None]],
    source_dir: str,
    *,
    stored_cards: dict[str, RateCard],
    stored_products: dict[str, Product],
    next_rate_key: int = 0,
    replacing: Collection[str] = (),
) -> CatalogPlan:
    """New objects of this run, given the stored bodies per table (`{table: {id: body}}`).
    `replacing`: stored rate cards this run may give a new version of (their rates added to)."""
    given: dict[str, Sequence[BaseModel]] = {
        "credit_types": catalog.credit_types if catalog else [],
        "customers": catalog.customers if catalog else [],
        "products": catalog.products if catalog else [],
        "rate_cards": catalog.rate_cards if catalog else [],
        "contracts": contracts or [],
    }
    result = CatalogPlan()
    for table, objects in given.items():
        id_column, kind, file_name, to_row = KINDS[table]
        new_rows = []
        for obj in objects:
            row = to_row(obj)
            known = stored[table].get(row[id_column], "absent")
            if known == "absent":
                new_rows.append(row)
                if isinstance(obj, Contract):
                    result.new_contracts.append(obj)
                    result.contracts_created += 1
            elif known != row["body"] and isinstance(obj, RateCard) and obj.id in replacing:
                result.replaced_cards.append(obj)
            elif known != row["body"]:
                result.issues.append(
                    {
                        "source": f"{source_dir}/{file_name}",
                        "field": "id",
                        "code": "CATALOG_CONFLICT",
                        "message": f"{kind} `{row[id_column]}` is already stored with other content;"
                        " stored objects are immutable (use a new id)",
                    }
                )
        result.rows[table] = frames.from_rows(new_rows, frames.CATALOG_TABLES[table])
    result.rows["rates"] = pl.DataFrame(
        [
            row
            for card in (catalog.rate_cards if catalog else [])
            if card.id in result.ids("rate_cards")
            for row in rate.rate_rows(card)
        ],
        schema=frames.CATALOG_TABLES["rates"],
    )
    # A new contract's effective rates: its rate card (stored or given) with its overrides.
    cards = {**stored_cards, **{c.id: c for c in (catalog.rate_cards if catalog else [])}}
    products = {**stored_products, **{p.id: p for p in (catalog.products if catalog else [])}}
    # Contracts on the same rate card with the same overrides have the same effective rates:
    # computed once (a template), then given each contract's id and rate keys by a join.
    templates: dict[tuple[str, str, str], int] = {}
    template_rates: list[pl.DataFrame] = []
    template_tiers: list[pl.DataFrame] = []
    owners: list[str] = []
    owned: list[int] = []
    firsts: list[int] = []
    next_key = next_rate_key
    for contract in result.new_contracts:
        if contract.rate_card_id in cards:
            same = (
                contract.rate_card_id,
                contract.multiplier_override_prioritization,
                "[" + ",".join(o.canonical for o in contract.overrides) + "]",
            )
            template = templates.get(same)
            if template is None:
                template = templates[same] = len(template_rates)
                contract_rates, tiers = rate.contract_rate_rows(
                    contract, cards[contract.rate_card_id], products
                )
                template_rates.append(_template(contract_rates, "contract_rates", template))
                template_tiers.append(_template(tiers, "_contract_rate_tiers", template))
            owners.append(contract.id)
            owned.append(template)
            firsts.append(next_key)
            next_key += template_rates[template].height
    placed = pl.DataFrame(
        {"owner": owners, "template": owned, "first": firsts},
        schema={"owner": pl.String(), "template": pl.Int64(), "first": pl.Int64()},
    )
    for table, made in (
        ("contract_rates", template_rates),
        ("_contract_rate_tiers", template_tiers),
    ):
        schema = frames.CATALOG_TABLES[table]
        pieces = pl.concat(made) if made else _template([], table, 0)
        joined = placed.join(pieces, on="template", maintain_order="left_right")
        result.rows[table] = joined.with_columns(
            rate_key=pl.col("first") + pl.col("rate_key"),
            **({"contract_id": pl.col("owner")} if "contract_id" in schema else {}),
        ).select(list(schema))
    segments = [
        row
        for contract in result.new_contracts
        for row in balances.segment_rows(contract, products)
    ]
    result.rows["commit_segments"] = pl.DataFrame(
        segments, schema=frames.CATALOG_TABLES["commit_segments"]
    )
    result.rows["balance_ledger_entries"] = pl.DataFrame(
        balances.start_entries(segments), schema=frames.CATALOG_TABLES["balance_ledger_entries"]
    )
    return result


def _template(rows: list[dict[str, Any]], table: str, template: int) -> pl.DataFrame:
    """A template's rows of `table`, keyed from 0, marked with its number."""
    return pl.DataFrame(rows, schema=frames.CATALOG_TABLES[table]).with_columns(
        template=pl.lit(template, pl.Int64())
    )


def rate_card_version(card: RateCard) -> tuple[str, pl.DataFrame]:
    """A rate card's stored body and its rows of `rates` (a new version of a stored card)."""
    return body(card), pl.DataFrame(rate.rate_rows(card), schema=frames.CATALOG_TABLES["rates"])


def contract_refs(contracts: Sequence[Contract]) -> pl.DataFrame:
    return frames.from_columns(
        {
            "contract_id": [c.id for c in contracts],
            "customer_id": [c.customer_id for c in contracts],
            "rate_card_id": [c.rate_card_id for c in contracts],
            "starting_at": [c.starting_at for c in contracts],
            "ending_before": [c.ending_before for c in contracts],
            "generation_starts_at": [c.generation_starts_at for c in contracts],
        },
        frames.CONTRACT_REFS,
    )


def drafts(
    contracts: Sequence[Contract], fiat_credit_type: dict[str, str], as_of: datetime
) -> pl.DataFrame:
    """D8: one draft per new contract, for the period containing the as-of date, if generated."""
    made = [
        (contract, period)
        for contract in contracts
        if (period := schedule.draft_period(contract, as_of)) is not None
    ]
    return frames.from_columns(  # by column: a dict a draft took seconds at 192,998 contracts
        {
            "customer_id": [c.customer_id for c, _ in made],
            "contract_id": [c.id for c, _ in made],
            "credit_type_id": [fiat_credit_type[c.rate_card_id] for c, _ in made],
            "inclusive_start": [p.inclusive_start for _, p in made],
            "exclusive_end": [p.exclusive_end for _, p in made],
        },
        frames.DRAFTS,
    )


def _generated(
    contract: Contract, period: schedule.Period, fiat_credit_type: dict[str, str]
) -> dict[str, Any]:
    """An invoice the contract's schedule makes: in its rate card's fiat credit type."""
    return {
        "customer_id": contract.customer_id,
        "contract_id": contract.id,
        "credit_type_id": fiat_credit_type[contract.rate_card_id],
        "inclusive_start": period.inclusive_start,
        "exclusive_end": period.exclusive_end,
    }


def periods_to_generate(
    contracts: Sequence[Contract],
    generated: pl.DataFrame,
    fiat_credit_type: dict[str, str],
    as_of: datetime,
) -> pl.DataFrame:
    """The contract periods the engine owes an invoice for by `as_of` and has not made yet: from
    `invoice_generation_starting_at` through the period containing `as_of` (frames.DRAFTS)."""
    made = set(
        zip(generated["contract_id"].to_list(), generated["start_timestamp"].to_list(), strict=True)
    )
    rows = []
    for contract in contracts:
        for period in schedule.periods(contract, until=as_of + timedelta(microseconds=1)):
            if period.inclusive_start < contract.generation_starts_at:
                continue
            if (contract.id, period.inclusive_start) in made:
                continue
            rows.append(_generated(contract, period, fiat_credit_type))
    return pl.DataFrame(rows, schema=frames.DRAFTS)
