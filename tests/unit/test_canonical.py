"""A model's canonical JSON (its stored body, what the content hash reads) is computed once and
belongs to that model only: a copy with changes has its own, and the cache changes no equality."""

from __future__ import annotations

import json

from bulk_rating.models import Customer


def test_canonical_json_is_sorted_compact_and_follows_copies() -> None:
    customer = Customer(id="cus_1", name="Acme", custom_fields={"b": "2", "a": "1"})
    expected = '{"custom_fields":{"a":"1","b":"2"},"id":"cus_1","name":"Acme"}'
    assert customer.canonical == expected
    assert json.loads(customer.canonical) == customer.model_dump(mode="json")

    renamed = customer.model_copy(update={"name": "Acme Corp"})
    assert renamed.canonical == expected.replace('"Acme"', '"Acme Corp"')
    assert customer.canonical == expected
    assert customer == Customer(id="cus_1", name="Acme", custom_fields={"a": "1", "b": "2"})
