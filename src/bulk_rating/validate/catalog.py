"""The catalog and contracts: a handful of objects, so their rules are plain Python over the models."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import polars as pl

from bulk_rating import pricing
from bulk_rating.frames import canonical_json
from bulk_rating.models import Catalog, Contract
from bulk_rating.money import (
    MAX_PRICE,
    MAX_QUANTITY,
    MULTIPLIER_SCALE,
    PRICE_SCALE,
    QUANTITY_SCALE,
    decimal_places,
)
from bulk_rating.validate.batch import issue_frame


def _catalog_issue(source: str, code: str, field: str, message: str) -> dict[str, Any]:
    return {"source": source, "code": code, "field": field, "message": message}


def _duplicates(source: str, kind: str, ids: list[str]) -> list[dict[str, Any]]:
    return [
        _catalog_issue(source, "DUPLICATE_ID", "id", f"{kind} id `{i}` appears {n} times")
        for i, n in Counter(ids).items()
        if n > 1
    ]


def _price_issues(source: str, where: str, field: str, price: Decimal) -> list[dict[str, Any]]:
    return [
        _catalog_issue(source, code, field, f"{where}: {message}")
        for code, message in _price_problems(price)
    ]


def validate_catalog(
    catalog: Catalog | None,
    contracts: list[Contract] | None,
    *,
    known_products: set[str],
    known_customers: set[str],
    known_credit_types: set[str],
    known_rate_cards: set[str],
    source_dir: str,
    origins: Mapping[tuple[str, str], str] | None = None,
    known_tags: set[str] | None = None,
) -> pl.DataFrame:
    """Problems of the catalog and contracts of this run, against what is stored and given;
    `origins` names the file each object came from (kind and id), when a run read several."""
    found: list[dict[str, Any]] = []
    origins = origins or {}
    catalog_source = f"{source_dir}/catalog.json"
    if catalog is not None:
        found += _duplicates(catalog_source, "credit type", [c.id for c in catalog.credit_types])
        found += _duplicates(catalog_source, "customer", [c.id for c in catalog.customers])
        found += _duplicates(catalog_source, "product", [p.id for p in catalog.products])
        found += _duplicates(catalog_source, "rate card", [r.id for r in catalog.rate_cards])
        for card in catalog.rate_cards:
            card_source = origins.get(("rate_cards", card.id), catalog_source)
            for field, credit_type in (
                ("fiat_credit_type_id", card.fiat_credit_type_id),
                *(
                    ("credit_type_conversions", c.custom_credit_type_id)
                    for c in card.credit_type_conversions
                ),
            ):
                if credit_type not in known_credit_types:
                    found.append(
                        _catalog_issue(
                            card_source,
                            "UNKNOWN_CREDIT_TYPE",
                            field,
                            f"rate card `{card.id}`: unknown credit type `{credit_type}`",
                        )
                    )
            found += _rate_card_issues(
                origins.get(("rate_cards", card.id), catalog_source),
                card,
                known_products,
                known_credit_types,
            )
    if contracts is not None:
        found += _duplicates(f"{source_dir}/contracts.json", "contract", [c.id for c in contracts])
        for n, contract in enumerate(contracts):
            contracts_source = origins.get(
                ("contracts", contract.id), f"{source_dir}/contracts.json"
            )
            where = f"contract {n} (`{contract.id}`)"
            if contract.customer_id not in known_customers:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "UNKNOWN_CUSTOMER",
                        "customer_id",
                        f"{where}: unknown customer `{contract.customer_id}`",
                    )
                )
            if contract.rate_card_id not in known_rate_cards:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "UNKNOWN_RATE_CARD",
                        "rate_card_id",
                        f"{where}: unknown rate card `{contract.rate_card_id}`",
                    )
                )
            if (
                contract.ending_before is not None
                and contract.ending_before <= contract.starting_at
            ):
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "INVALID_PERIOD",
                        "ending_before",
                        f"{where}: ends before it starts",
                    )
                )
            schedule = contract.usage_statement_schedule
            generation = schedule.invoice_generation_starting_at
            if generation is not None and (
                generation < contract.starting_at
                or (contract.ending_before is not None and generation > contract.ending_before)
            ):
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "INVALID_PERIOD",
                        "invoice_generation_starting_at",
                        f"{where}: invoice generation starts at {generation:%Y-%m-%dT%H:%M:%SZ},"
                        " outside the contract",
                    )
                )
            if schedule.day == "CUSTOM_DATE" and schedule.billing_anchor_date is None:
                found.append(
                    _catalog_issue(
                        contracts_source,
                        "MISSING_FIELD",
                        "billing_anchor_date",
                        f"{where}: day CUSTOM_DATE needs billing_anchor_date",
                    )
                )
            found += _override_issues(contracts_source, where, contract, known_products)
            found += _commit_issues(
                contracts_source, where, contract, known_products, known_credit_types
            )
            if known_tags is not None:
                found += _tag_issues(contracts_source, where, contract, known_tags)
    return issue_frame(found)


def _tag_issues(
    source: str, where: str, contract: Contract, known_tags: set[str]
) -> list[dict[str, Any]]:
    """A tag that no product has selects nothing: most likely a typo, never silently empty."""
    tagged = [
        *((f"override {n}", o.applicable_product_tags) for n, o in enumerate(contract.overrides)),
        *((f"commit {n}", c.applicable_product_tags) for n, c in enumerate(contract.commits)),
        *((f"credit {n}", c.applicable_product_tags) for n, c in enumerate(contract.credits)),
    ]
    return [
        _catalog_issue(
            source,
            "UNKNOWN_TAG",
            "applicable_product_tags",
            f"{where}, {what}: no product has the tag `{tag}`",
        )
        for what, tags in tagged
        for tag in tags or []
        if tag not in known_tags
    ]


def _override_issues(
    source: str, where: str, contract: Contract, known_products: set[str]
) -> list[dict[str, Any]]:
    """What each override's type needs (METRONOME.md 2.3)."""
    found: list[dict[str, Any]] = []
    explicit = contract.multiplier_override_prioritization == "EXPLICIT"
    for n, override in enumerate(contract.overrides):
        at = f"{where}, override {n}"
        problems: list[tuple[str, str, str]] = []
        if (override.product_id is None) == (override.applicable_product_tags is None):
            problems.append(
                ("INVALID_OVERRIDE", "product_id", "give product_id or applicable_product_tags")
            )
        elif override.product_id is not None and override.product_id not in known_products:
            problems.append(
                ("UNKNOWN_PRODUCT", "product_id", f"unknown product `{override.product_id}`")
            )
        if override.ending_before is not None and override.ending_before <= override.starting_at:
            problems.append(("INVALID_PERIOD", "ending_before", "ends before it starts"))
        if override.type is None and override.entitled is None:
            problems.append(("INVALID_OVERRIDE", "type", "sets neither a type nor entitled"))
        multipliers = [override.multiplier] if override.type == "MULTIPLIER" else []
        if override.type == "MULTIPLIER" and override.multiplier is None:
            problems.append(("INVALID_OVERRIDE", "multiplier", "MULTIPLIER needs multiplier"))
        if override.type == "OVERWRITE":
            new = override.overwrite_rate
            if (
                new is None
                or (new.rate_type == "FLAT") != (new.price is not None)
                or (new.rate_type == "TIERED" and not new.tiers)
            ):
                problems.append(
                    (
                        "INVALID_OVERRIDE",
                        "overwrite_rate",
                        "OVERWRITE needs overwrite_rate with a price (FLAT) or tiers (TIERED)",
                    )
                )
            else:
                for price in (
                    [new.price] if new.price is not None else [t.price for t in new.tiers or []]
                ):
                    problems += [(c, "overwrite_rate", m) for c, m in _price_problems(price)]
        if override.type == "TIERED":
            if not override.tiers:
                problems.append(("INVALID_OVERRIDE", "tiers", "TIERED needs tiers"))
            multipliers += [t.multiplier for t in override.tiers or []]
        if override.type in ("TIERED", "MULTIPLIER") and explicit and override.priority is None:
            problems.append(
                ("INVALID_OVERRIDE", "priority", "EXPLICIT prioritization needs a priority")
            )
        if override.type == "TIERED" and not explicit:
            problems.append(
                (
                    "INVALID_OVERRIDE",
                    "type",
                    "TIERED overrides need multiplier_override_prioritization EXPLICIT",
                )
            )
        for multiplier in multipliers:
            if multiplier is not None and multiplier < 0:
                problems.append(
                    ("INVALID_OVERRIDE", "multiplier", f"multiplier {multiplier} is negative")
                )
            if multiplier is not None and decimal_places(multiplier) > MULTIPLIER_SCALE:
                problems.append(
                    (
                        "TOO_MANY_DECIMALS",
                        "multiplier",
                        f"multiplier {multiplier} has more than {MULTIPLIER_SCALE} decimals",
                    )
                )
        found += [
            _catalog_issue(source, code, field, f"{at}: {message}")
            for code, field, message in problems
        ]
    return found


def _commit_issues(
    source: str,
    where: str,
    contract: Contract,
    known_products: set[str],
    known_credit_types: set[str],
) -> list[dict[str, Any]]:
    """What commits and credits need (METRONOME.md 2.1-2.2)."""
    found: list[dict[str, Any]] = []
    items = [
        *(("commit", n, c) for n, c in enumerate(contract.commits)),
        *(("credit", n, c) for n, c in enumerate(contract.credits)),
    ]
    for what, n, item in items:
        at = f"{where}, {what} {n}"
        problems: list[tuple[str, str, str]] = []
        for product in [item.product_id, *(item.applicable_product_ids or [])]:
            if product not in known_products:
                problems.append(("UNKNOWN_PRODUCT", "product_id", f"unknown product `{product}`"))
        schedule = getattr(item, "invoice_schedule", None)
        if schedule is not None and schedule.credit_type_id not in known_credit_types:
            problems.append(
                (
                    "UNKNOWN_CREDIT_TYPE",
                    "invoice_schedule",
                    f"unknown credit type `{schedule.credit_type_id}`",
                )
            )
        if item.access_schedule.credit_type_id not in known_credit_types:
            problems.append(
                (
                    "UNKNOWN_CREDIT_TYPE",
                    "credit_type_id",
                    f"unknown credit type `{item.access_schedule.credit_type_id}`",
                )
            )
        if not item.access_schedule.schedule_items:
            problems.append(
                ("INVALID_COMMIT", "access_schedule", "needs at least one schedule item")
            )
        for k, segment in enumerate(item.access_schedule.schedule_items):
            if segment.ending_before <= segment.starting_at:
                problems.append(
                    ("INVALID_PERIOD", "access_schedule", f"segment {k} ends before it starts")
                )
            if (
                segment.amount < 0
                or decimal_places(segment.amount) > PRICE_SCALE
                or segment.amount >= MAX_PRICE * 10**6
            ):
                problems.append(
                    (
                        "INVALID_COMMIT",
                        "amount",
                        f"segment {k}: amount {segment.amount} is not a valid amount",
                    )
                )
        if getattr(item, "type", None) == "POSTPAID":
            if getattr(item, "invoice_schedule", None) is None:
                problems.append(
                    (
                        "INVALID_COMMIT",
                        "invoice_schedule",
                        "a POSTPAID commit needs an invoice_schedule",
                    )
                )
            if len(item.access_schedule.schedule_items) != 1:
                problems.append(
                    (
                        "INVALID_COMMIT",
                        "access_schedule",
                        "a POSTPAID commit has exactly one schedule item",
                    )
                )
        found += [
            _catalog_issue(source, code, field, f"{at}: {message}")
            for code, field, message in problems
        ]
    return found


def _price_problems(price: Decimal) -> list[tuple[str, str]]:
    problems = []
    if price < 0:
        problems.append(("INVALID_RATE", f"price {price} is negative"))
    if decimal_places(price) > PRICE_SCALE:
        problems.append(
            ("TOO_MANY_DECIMALS", f"price {price} has more than {PRICE_SCALE} decimals")
        )
    if abs(price) >= MAX_PRICE:
        problems.append(("NUMBER_TOO_LARGE", f"price {price} is {MAX_PRICE:,} or more"))
    return problems


def _rate_card_issues(
    source: str, card: Any, known_products: set[str], known_credit_types: set[str]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    spans: dict[tuple[str, str | None], list[tuple[Any, Any, int]]] = defaultdict(list)
    for n, card_rate in enumerate(card.rates):
        where = f"rate card `{card.id}`, rate {n}"
        if card_rate.product_id not in known_products:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_PRODUCT",
                    "product_id",
                    f"{where}: unknown product `{card_rate.product_id}`",
                )
            )
        if card_rate.credit_type_id not in known_credit_types:
            found.append(
                _catalog_issue(
                    source,
                    "UNKNOWN_CREDIT_TYPE",
                    "credit_type_id",
                    f"{where}: unknown credit type `{card_rate.credit_type_id}`",
                )
            )
        if card_rate.ending_before is not None and card_rate.ending_before <= card_rate.starting_at:
            found.append(
                _catalog_issue(
                    source, "INVALID_PERIOD", "ending_before", f"{where}: ends before it starts"
                )
            )
        shape = pricing.model(card_rate.rate_type).shape_problem(card_rate.price, card_rate.tiers)
        if shape is not None:
            field, needs = shape
            found.append(_catalog_issue(source, "INVALID_RATE", field, f"{where}: {needs}"))
        elif card_rate.price is not None:
            found += _price_issues(source, where, "price", card_rate.price)
        else:
            tiers = card_rate.tiers or []
            for t, tier in enumerate(tiers):
                found += _price_issues(source, f"{where}, tier {t + 1}", "tiers", tier.price)
                last = t == len(tiers) - 1
                if (tier.size is None and not last) or (tier.size is not None and tier.size <= 0):
                    found.append(
                        _catalog_issue(
                            source,
                            "INVALID_RATE",
                            "tiers",
                            f"{where}, tier {t + 1}: size must be positive (only the last may be open)",
                        )
                    )
                elif tier.size is not None and decimal_places(tier.size) > QUANTITY_SCALE:
                    found.append(
                        _catalog_issue(
                            source,
                            "TOO_MANY_DECIMALS",
                            "tiers",
                            f"{where}, tier {t + 1}: size has more than {QUANTITY_SCALE} decimals",
                        )
                    )
                elif tier.size is not None and tier.size >= MAX_QUANTITY:
                    found.append(
                        _catalog_issue(
                            source,
                            "NUMBER_TOO_LARGE",
                            "tiers",
                            f"{where}, tier {t + 1}: size {tier.size} is {MAX_QUANTITY:,} or more"
                            " (a tier is measured in quantities)",
                        )
                    )
        spans[(card_rate.product_id, canonical_json(card_rate.pricing_group_values))].append(
            (card_rate.starting_at, card_rate.ending_before, n)
        )
    for (product_id, _), periods in spans.items():
        periods.sort(key=lambda p: p[0])
        for (_, end, first), (start, _, second) in itertools.pairwise(periods):
            if end is None or start < end:
                found.append(
                    _catalog_issue(
                        source,
                        "RATE_OVERLAP",
                        "starting_at",
                        f"rate card `{card.id}`: rates {first} and {second} of product "
                        f"`{product_id}` overlap in time",
                    )
                )
    return found
