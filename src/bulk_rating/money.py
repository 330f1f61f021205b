"""The one money and quantity policy.

- Amounts are exact decimals in the credit type's smallest unit (USD: cents), never floats, and are
  not rounded on invoices: a line total keeps every digit that quantity x price produces.
- Input quantities carry at most QUANTITY_SCALE decimal places and prices at most PRICE_SCALE; more
  digits are an error, never silently rounded.
- JSON numbers are parsed straight into Decimal (never through a float) and written back as exact
  decimal text.
- Comparisons with legacy invoices (issued in whole units) round half-even to whole units.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

QUANTITY_SCALE = 9
PRICE_SCALE = 10
MULTIPLIER_SCALE = 4
# DuckDB column types: amounts are quantity x price, so their scale is the sum of both scales.
QUANTITY_SQL = f"DECIMAL(38,{QUANTITY_SCALE})"
# An effective price is a list price times a multiplier: every digit kept.
EFFECTIVE_PRICE_SCALE = PRICE_SCALE + MULTIPLIER_SCALE
# The largest quantity and price accepted. Amounts have 15 integer digits (DECIMAL(38, 23)): an
# amount or total of 10^15 units ($10 trillion in cents) or more is reported, never wrapped.
MAX_QUANTITY = Decimal(10) ** 12
MAX_PRICE = Decimal(10) ** 6
# Any number read from JSON: what DECIMAL(38, 23), the widest decimal stored, can hold. Beyond it
# a number is refused as it is read (NUMBER_TOO_LARGE, TOO_MANY_DECIMALS), before any field's own
# limit above is checked.
MAX_NUMBER = Decimal(10) ** 15
MAX_NUMBER_SCALE = 23


def decimal_places(value: Decimal) -> int:
    """Digits after the point that carry information (1.50 has 1), counted exactly: never
    through `normalize`, which rounds to the context's 28 digits (1 + 10^-30 would have none)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))  # trailing: carry nothing
    return max(0, -exponent - zeros)


def format_decimal(value: Decimal) -> str:
    """Exact decimal text without exponent or trailing zeros: 1500.000 -> '1500', 0.10 -> '0.1'."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def round_to_units(value: Decimal) -> Decimal:
    """The written rounding policy for comparisons with issued (whole-unit) invoices."""
    return value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format_decimal(value))  # the digits, as JSON number text
    return str(value)  # anything else without a JSON form (a path, a date) as text


def dumps_exact(value: Any, *, indent: bool = True) -> str:
    """JSON text with every Decimal written as an exact number (never through a float)."""
    options = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    )  # datetimes as str() gives them
    return orjson.dumps(
        value, default=_exact, option=options | (orjson.OPT_INDENT_2 if indent else 0)
    ).decode()


# Metronome's fiat credit type, which every store has: amounts in it are US cents.
USD_CENTS_ID = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
USD_CENTS_NAME = "USD (cents)"

# The most decimal places shown to people; the exact value is given beside it (a page's `title`).
SHOWN_SCALE = 6


def format_money(amount: Decimal, credit_type_id: str, credit_type_name: str) -> str:
    """An amount in a credit type for people: USD (cents) as dollars and cents (37500 ->
    '$375.00'), a custom unit by its name ('1,234.5 Compute credits'); thousands separators,
    at least the currency's own decimals (2 for dollars, none for custom units) and at most
    SHOWN_SCALE, rounded half-even and then marked '≈'. Never used for arithmetic."""
    usd = credit_type_id == USD_CENTS_ID
    value = amount / 100 if usd else amount
    shown = value.quantize(Decimal(1).scaleb(-SHOWN_SCALE), rounding=ROUND_HALF_EVEN)
    places = max(2 if usd else 0, min(decimal_places(shown), SHOWN_SCALE))
    digits = f"{abs(shown):,.{places}f}"
    sign = "-" if shown < 0 else ""
    approx = "≈" if shown != value else ""
    return f"{approx}{sign}${digits}" if usd else f"{approx}{sign}{digits} {credit_type_name}"


def exact_money(amount: Decimal, credit_type_name: str) -> str:
    """The exact stored amount with its unit ('37500 USD (cents)'): what `format_money` rounds."""
    return f"{format_decimal(amount)} {credit_type_name}"
