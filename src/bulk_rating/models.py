"""Pydantic models of Metronome's request and catalog shapes, as bulk_rating accepts them.

Field names and casings follow Metronome's API (snake_case; enums in any casing, stored upper
case). Unknown fields are errors: a typo in a billing catalog must never be silently ignored.
Timestamps must carry a UTC offset and be no finer than a microsecond; other offsets are
converted to UTC on the way in. Numbers must be readable as the store's decimals (`Number`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from bulk_rating.money import MAX_NUMBER, MAX_NUMBER_SCALE, decimal_places

# the credit type every store has, defined with the money it measures and named here too
from bulk_rating.money import USD_CENTS_ID as USD_CENTS_ID
from bulk_rating.money import USD_CENTS_NAME as USD_CENTS_NAME

# Fractional seconds with a digit other than 0 past the sixth: finer than a microsecond.
SUB_MICROSECOND = r"\.[0-9]{6}[0-9]*[1-9]"


def _no_sub_microseconds(value: Any) -> Any:
    """Timestamps are kept to the microsecond: finer digits are refused, never dropped."""
    if isinstance(value, str) and re.search(SUB_MICROSECOND, value):
        raise PydanticCustomError(
            "datetime_sub_microsecond",
            "`{value}` is more precise than a microsecond, which is not supported",
            {"value": value},
        )
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range",
            "`{value}` is outside the years 1 to 9999 once converted to UTC",
            {"value": value.isoformat()},
        ) from None


def _readable(value: Decimal) -> Decimal:
    """A number the store's decimals can hold at all (each field then has its own limits)."""
    if abs(value) >= MAX_NUMBER:
        raise PydanticCustomError(
            "number_too_large", "the number is 10^{digits} or more", {"digits": 15}
        )
    if decimal_places(value) > MAX_NUMBER_SCALE:
        raise PydanticCustomError(
            "too_many_decimals",
            "the number has more than {scale} decimals",
            {"scale": MAX_NUMBER_SCALE},
        )
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# A number given as text is a plain ASCII decimal ("10", "-1.5", "2e3"): Python's Decimal also
# takes "10_000", " 10 " and other scripts' digits (Arabic-Indic ten), which no export means.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _plain_number(value: Any) -> Any:
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(value):
        raise PydanticCustomError(
            "decimal_parsing", "{text} is not a plain decimal number", {"text": repr(value[:40])}
        )
    return value


Number = Annotated[Decimal, BeforeValidator(_plain_number), AfterValidator(_readable)]
UtcDatetime = Annotated[
    AwareDatetime, BeforeValidator(_no_sub_microseconds), AfterValidator(_to_utc)
]
Frequency = Annotated[Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"], BeforeValidator(_upper)]
BillingDay = Annotated[
    Literal["FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE"], BeforeValidator(_upper)
]
Granularity = Annotated[Literal["HOUR", "DAY"], BeforeValidator(_upper)]
RateType = Annotated[Literal["FLAT", "TIERED"], BeforeValidator(_upper)]
ProductType = Annotated[
    Literal["USAGE", "FIXED", "COMPOSITE", "SUBSCRIPTION", "PROFESSIONAL_SERVICE", "PRO_SERVICE"],
    BeforeValidator(_upper),
]
BillableStatus = Annotated[Literal["billable", "unbillable"], BeforeValidator(_lower)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @cached_property
    def canonical(self) -> str:
        """The model as canonical JSON (keys sorted, no spaces): what the store keeps as its body
        and the run's content hash reads, computed once (twice a contract cost seconds a run at
        192,998 contracts)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, without the original's canonical JSON (an update changes it)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("canonical", None)
        return copied


# --- catalog -------------------------------------------------------------------------------


class CreditType(Strict):
    id: str
    name: str


class Customer(Strict):
    id: str
    name: str
    custom_fields: dict[str, str] = Field(default_factory=dict)


class Product(Strict):
    id: str
    name: str
    type: ProductType = "USAGE"
    tags: list[str] = Field(default_factory=list)
    pricing_group_key: list[str] = Field(default_factory=list)
    presentation_group_key: list[str] = Field(default_factory=list)
    custom_fields: dict[str, str] = Field(default_factory=dict)


class Tier(Strict):
    price: Number
    size: Number | None = None


class Rate(Strict):
    """A Metronome addRate body without `rate_card_id` (the rate sits inside its rate card)."""

    product_id: str
    starting_at: UtcDatetime
    ending_before: UtcDatetime | None = None
    entitled: bool
    rate_type: RateType
    price: Number | None = None
    tiers: list[Tier] | None = None
    credit_type_id: str = USD_CENTS_ID
    pricing_group_values: dict[str, str] | None = None


class CreditTypeConversion(Strict):
    custom_credit_type_id: str
    fiat_per_custom_credit: Number


class RateCard(Strict):
    id: str
    name: str
    description: str | None = None
    fiat_credit_type_id: str = USD_CENTS_ID
    credit_type_conversions: list[CreditTypeConversion] = Field(default_factory=list)
    custom_fields: dict[str, str] = Field(default_factory=dict)
    rates: list[Rate] = Field(default_factory=list)


class Catalog(Strict):
    credit_types: list[CreditType] = Field(default_factory=list)
    customers: list[Customer] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list)
    rate_cards: list[RateCard] = Field(default_factory=list)


# --- contracts -----------------------------------------------------------------------------


class UsageStatementSchedule(Strict):
    frequency: Frequency
    day: BillingDay = "FIRST_OF_MONTH"
    billing_anchor_date: UtcDatetime | None = None
    invoice_generation_starting_at: UtcDatetime | None = None


class BillingProviderConfiguration(Strict):
    billing_provider: Annotated[str, BeforeValidator(_lower)]
    delivery_method: Annotated[str, BeforeValidator(_lower)] | None = None
    billing_provider_configuration_id: str | None = None


class OverwriteRate(Strict):
    rate_type: RateType
    price: Number | None = None
    tiers: list[Tier] | None = None
    credit_type_id: str | None = None


class OverrideTier(Strict):
    multiplier: Number
    size: Number | None = None


OverrideType = Annotated[Literal["OVERWRITE", "MULTIPLIER", "TIERED"], BeforeValidator(_upper)]
Prioritization = Annotated[Literal["LOWEST_MULTIPLIER", "EXPLICIT"], BeforeValidator(_upper)]


class Override(Strict):
    """A contract override of its rate card (METRONOME.md 2.3): by product or by product tags."""

    starting_at: UtcDatetime
    ending_before: UtcDatetime | None = None
    type: OverrideType | None = None
    product_id: str | None = None
    applicable_product_tags: list[str] | None = None
    multiplier: Number | None = None
    overwrite_rate: OverwriteRate | None = None
    tiers: list[OverrideTier] | None = None
    priority: Number | None = None
    entitled: bool | None = None


class ScheduleItem(Strict):
    """One access segment of a commit or credit: `amount` usable in [starting_at, ending_before)."""

    id: str | None = None
    amount: Number
    starting_at: UtcDatetime
    ending_before: UtcDatetime


class AccessSchedule(Strict):
    schedule_items: list[ScheduleItem]
    credit_type_id: str = USD_CENTS_ID
    access_type: Annotated[Literal["SPEND"], BeforeValidator(_upper)] = "SPEND"


class InvoiceScheduleItem(Strict):
    id: str | None = None
    timestamp: UtcDatetime
    amount: Number | None = None
    unit_price: Number | None = None
    quantity: Number | None = None


class InvoiceSchedule(Strict):
    credit_type_id: str = USD_CENTS_ID
    do_not_invoice: bool = False
    schedule_items: list[InvoiceScheduleItem] = Field(default_factory=list)


class CommitOrCredit(Strict):
    """What commits and credits share (contracts/create `commits[]` and `credits[]`)."""

    id: str | None = None
    product_id: str
    name: str | None = None
    description: str | None = None
    priority: Number | None = None
    access_schedule: AccessSchedule
    applicable_product_ids: list[str] | None = None
    applicable_product_tags: list[str] | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)


class Commit(CommitOrCredit):
    type: Annotated[Literal["PREPAID", "POSTPAID"], BeforeValidator(_upper)]
    invoice_schedule: InvoiceSchedule | None = None


class Credit(CommitOrCredit):
    pass


class Contract(Strict):
    """A Metronome contracts/create body with the contract's `id`."""

    id: str
    customer_id: str
    rate_card_id: str
    starting_at: UtcDatetime
    ending_before: UtcDatetime | None = None
    usage_statement_schedule: UsageStatementSchedule
    name: str | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)
    net_payment_terms_days: Number | None = None
    uniqueness_key: str | None = None
    billing_provider_configuration: BillingProviderConfiguration | None = None
    multiplier_override_prioritization: Prioritization = "LOWEST_MULTIPLIER"
    overrides: list[Override] = Field(default_factory=list)
    commits: list[Commit] = Field(default_factory=list)
    credits: list[Credit] = Field(default_factory=list)

    @property
    def generation_starts_at(self) -> datetime:
        """When the engine generates invoices itself; imports must end by then."""
        schedule = self.usage_statement_schedule
        return schedule.invoice_generation_starting_at or self.starting_at


# --- createHistoricalInvoices --------------------------------------------------------------
# Quantities are kept as given (Decimal) here, once readable at all (`Number`); their precision
# and range are checked as columns.


class SubtotalWithQuantity(Strict):
    inclusive_start_date: UtcDatetime
    exclusive_end_date: UtcDatetime
    quantity: Number


class UsageLineItem(Strict):
    product_id: str
    inclusive_start_date: UtcDatetime
    exclusive_end_date: UtcDatetime
    quantity: Number | None = None
    subtotals_with_quantity: list[SubtotalWithQuantity] | None = None
    pricing_group_values: dict[str, str] | None = None
    presentation_group_values: dict[str, str | None] | None = None


class HistoricalInvoice(Strict):
    customer_id: str
    contract_id: str
    credit_type_id: str
    inclusive_start_date: UtcDatetime
    exclusive_end_date: UtcDatetime
    issue_date: UtcDatetime
    usage_line_items: list[UsageLineItem]
    billable_status: BillableStatus = "billable"
    breakdown_granularity: Granularity | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)


class HistoricalInvoicesRequest(Strict):
    """The createHistoricalInvoices body: `{"invoices": [...], "preview": bool}`."""

    invoices: list[HistoricalInvoice]
    preview: bool


# --- a rate card's rates: adding them (addRate, addRates), reading them (getRates) ----------


class NewRates(Strict):
    """The rates of an addRates body (an addRate body is one), without `rate_card_id`."""

    rates: list[Rate]


class RateSelector(Strict):
    """A getRates selector: a rate matches when it meets every condition given."""

    product_id: str | None = None
    product_tags: list[str] | None = None  # any of them
    pricing_group_values: dict[str, str] | None = None  # exactly these
    partial_pricing_group_values: dict[str, str] | None = None  # these among others
    billing_frequency: Frequency | None = None  # no rate here has one: matches none


class RatesQuery(Strict):
    """The getRates body: the rates of a card in effect at `at` or later."""

    rate_card_id: str
    at: UtcDatetime
    selectors: list[RateSelector] | None = None


# --- the API's read requests (bodies of Metronome's POST reads) ------------------------------

AccessType = Annotated[Literal["SPEND", "QUANTITY"], BeforeValidator(_upper)]
BalanceType = Annotated[
    Literal["PREPAID_COMMIT", "POSTPAID_COMMIT", "CREDIT"], BeforeValidator(_upper)
]
InvoiceInclusionMode = Annotated[
    Literal["FINALIZED", "FINALIZED_AND_DRAFT"], BeforeValidator(_upper)
]


class ContractRetrieveRequest(Strict):
    """contracts/get."""

    contract_id: str
    customer_id: str
    include_balance: bool = False
    include_ledgers: bool = False


class ContractListRequest(Strict):
    """contracts/list: `cursor` is the one the previous page gave."""

    customer_id: str
    covering_date: UtcDatetime | None = None
    starting_at: UtcDatetime | None = None
    cursor: str | None = None
    include_archived: bool = False
    include_balance: bool = False
    include_ledgers: bool = False
    limit: int = Field(default=20, ge=1, le=20)


class BalanceFilter(Strict):
    """getNetBalance `filters[]`: the conditions of one filter all hold (AND)."""

    balance_types: list[BalanceType] | None = None
    ids: list[str] | None = None
    custom_fields: dict[str, str] | None = None


class BalancesListRequest(Strict):
    """contracts/customerBalances/list."""

    customer_id: str
    id: str | None = None
    access_type: AccessType | None = None
    covering_date: UtcDatetime | None = None
    effective_before: UtcDatetime | None = None
    starting_at: UtcDatetime | None = None
    exclude_zero_balances: bool = False
    include_archived: bool = False
    include_balance: bool = False
    include_contract_balances: bool = False
    include_ledgers: bool = False
    limit: int = Field(default=25, ge=1, le=25)
    next_page: str | None = None


class NetBalanceRequest(Strict):
    """contracts/customerBalances/getNetBalance."""

    customer_id: str
    access_type: AccessType = "SPEND"
    credit_type_id: str | None = None
    filters: list[BalanceFilter] | None = None
    invoice_inclusion_mode: InvoiceInclusionMode = "FINALIZED_AND_DRAFT"
