"""Metronome's read shapes of the stored catalog: customers, products, rate cards and their rates,
credit types (pricing units), with every field the SDK's models require.

Each takes a stored object as `Store.catalog_objects` gives it (`id`, `name`, `body`: the object as
given, `created_at`, `created_by`: the run that stored it). Stored objects are immutable, so a
customer's `updated_at` is its `created_at` and a product has no `updates`. Numbers stay Decimal
(written as exact JSON number text); a conversion rate is text, as Metronome gives it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bulk_rating.models import USD_CENTS_ID, Customer, Product, Rate, RateCard
from bulk_rating.money import format_decimal
from bulk_rating.report import number, timestamp

# A stored object without a run (none is, but for the built-in USD): the epoch, never a guess.
NO_RUN = datetime(1970, 1, 1, tzinfo=UTC)

# Metronome's read model names PROFESSIONAL_SERVICE products PRO_SERVICE.
READ_PRODUCT_TYPES = {"PROFESSIONAL_SERVICE": "PRO_SERVICE"}


def _created(stored: dict[str, Any]) -> str | None:
    return timestamp(stored["created_at"] or NO_RUN)


def _created_by(stored: dict[str, Any]) -> str:
    return str(stored["created_by"] or "bulk_rating")


def credit_type_data(credit_type_id: str, names: dict[str, str]) -> dict[str, str]:
    return {"id": credit_type_id, "name": names.get(credit_type_id, credit_type_id)}


def created_customer(stored: dict[str, Any]) -> dict[str, Any]:
    """customers/create's answer: the customer's id is also its `external_id` (it has no ingest
    alias)."""
    customer = Customer.model_validate_json(stored["body"])
    return {
        "id": customer.id,
        "external_id": customer.id,
        "ingest_aliases": [],
        "name": customer.name,
        "custom_fields": customer.custom_fields,
    }


def customer_detail(stored: dict[str, Any]) -> dict[str, Any]:
    """CustomerDetail."""
    return {
        **created_customer(stored),
        "created_at": _created(stored),
        "updated_at": _created(stored),
        "customer_config": {},
        "archived_at": None,
    }


def product(stored: dict[str, Any]) -> dict[str, Any]:
    """A product as products/get and products/list give it: its one state is both `initial`
    and `current`."""
    given = Product.model_validate_json(stored["body"])
    state = {
        "created_at": _created(stored),
        "created_by": _created_by(stored),
        "name": given.name,
        "tags": given.tags,
        "pricing_group_key": given.pricing_group_key,
        "presentation_group_key": given.presentation_group_key,
    }
    return {
        "id": given.id,
        "type": READ_PRODUCT_TYPES.get(given.type, given.type),
        "initial": state,
        "current": state,
        "updates": [],
        "custom_fields": given.custom_fields,
        "archived_at": None,
    }


def rate_card(stored: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A rate card as rate-cards/get and rate-cards/list give it (its rates: getRates)."""
    card = RateCard.model_validate_json(stored["body"])
    return {
        "id": card.id,
        "created_at": _created(stored),
        "created_by": _created_by(stored),
        "name": card.name,
        "description": card.description,
        "custom_fields": card.custom_fields,
        "aliases": [],
        "fiat_credit_type": credit_type_data(card.fiat_credit_type_id, names),
        "credit_type_conversions": [
            {
                "custom_credit_type": credit_type_data(c.custom_credit_type_id, names),
                "fiat_per_custom_credit": format_decimal(c.fiat_per_custom_credit),
            }
            for c in card.credit_type_conversions
        ],
    }


def credit_type(stored: dict[str, Any]) -> dict[str, Any]:
    """A pricing unit: USD (cents) is the one currency."""
    return {"id": stored["id"], "name": stored["name"], "is_currency": stored["id"] == USD_CENTS_ID}


def rate(given: Rate, names: dict[str, str]) -> dict[str, Any]:
    """Metronome's shared `Rate`: the price, or the tiers, in its credit type."""
    shaped: dict[str, Any] = {
        "rate_type": given.rate_type,
        "credit_type": credit_type_data(given.credit_type_id, names),
    }
    if given.price is not None:
        shaped["price"] = number(given.price)
    if given.tiers is not None:
        shaped["tiers"] = [
            {"price": number(t.price), **({} if t.size is None else {"size": number(t.size)})}
            for t in given.tiers
        ]
    if given.pricing_group_values is not None:
        shaped["pricing_group_values"] = given.pricing_group_values
    return shaped


def scheduled_rate(given: Rate, of: Product, names: dict[str, str]) -> dict[str, Any]:
    """A row of getRates: the rate with its product and period."""
    row: dict[str, Any] = {
        "product_id": of.id,
        "product_name": of.name,
        "product_tags": of.tags,
        "product_custom_fields": of.custom_fields,
        "entitled": given.entitled,
        "rate": rate(given, names),
        "starting_at": timestamp(given.starting_at),
        "ending_before": timestamp(given.ending_before),
    }
    if given.pricing_group_values is not None:
        row["pricing_group_values"] = given.pricing_group_values
    return row
