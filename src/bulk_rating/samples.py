"""A seeded generator of realistic data sets: a catalog, contracts and hourly usage in Parquet.

`generate(out, customers=..., products=..., months=..., seed=...)` writes

- `catalog.json`: customers, products and one rate card, in the shapes `models.Catalog` accepts.
  Products cycle through FLAT, TIERED, FLAT priced per `region` and TIERED priced per `region`
  (one rate per region value); the first product's price changes mid-month on an hour boundary.
  Prices are USD cents with at most 4 decimals, written as exact JSON numbers.
- `contracts.json`: one contract per customer, billed MONTHLY, either on the FIRST_OF_MONTH or on
  the CONTRACT_START (a contract starting on a later day of the first month). Each contract's
  history is exactly `months` whole billing periods and `invoice_generation_starting_at` is the end
  of the last one, so all of it is importable.
- `usage/part-NNNN.parquet`: one row per customer, product, hour (and region for products with a
  pricing group), with the columns and dtypes of `USAGE`; at most about `MAX_PART_ROWS` rows a file.
  Dense customers use every product every hour; sparse customers use some products during
  business hours on weekdays. A regional product's region changes from day to day.

By default ids are short (`cus_0001`, `con_0001`, `prod_01`, `rc_generated`), files are split
between customers and rows are sorted by customer, product and hour. Exports from billing systems
look otherwise, and the keyword options reproduce them (alone or together):

- `ids="uuid"`: customer, contract, product and rate card ids are 36-character lowercase UUID text
  drawn from the seed. Ids of 12 bytes or less are stored inline by DuckDB, so short ids make
  every hash and join cheaper than real ones are. Names stay readable.
- `order="time"`: rows sorted by (inclusive_start_date, customer_id, product_id, region), built a
  time slice at a time (`SLICE_ROWS` rows or so), so memory stays bounded at any size.
- `single_file=True`: one `usage/part-0000.parquet` of `ROW_GROUP_ROWS`-row row groups.

None of them changes which rows there are (`rows_for` counts them all) nor what they cost: the
quantities and prices are drawn from indices, never from ids.

Every random choice is a splitmix64 hash of (seed, stream, indices), computed in plain integer
arithmetic (Python for the catalog, polars expressions for the rows), so the same seed gives the
same files on any machine and polars version. Quantities are built from integers, never floats.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import polars as pl
import pyarrow.parquet as pq
from dateutil.relativedelta import relativedelta
from pydantic import TypeAdapter

from bulk_rating.frames import QUANTITY, UTC_TIME
from bulk_rating.models import Catalog, Contract
from bulk_rating.money import QUANTITY_SCALE, dumps_exact, format_decimal

# Bump when the same parameters start producing other files (cached data sets are then rebuilt).
SAMPLES_VERSION = 1
MAX_PART_ROWS = 2_000_000
# The row group size of the files written with `single_file` or `order="time"`: that of exports.
ROW_GROUP_ROWS = 1_000_000
# About how many rows `order="time"` builds at once: a slice is this many rows' worth of hours.
SLICE_ROWS = 1_000_000
RATE_CARD_ID = "rc_generated"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
PRICING_KEY = "region"

USAGE: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "contract_id": pl.String(),
    "product_id": pl.String(),
    "inclusive_start_date": UTC_TIME,
    "exclusive_end_date": UTC_TIME,
    "quantity": QUANTITY,
    f"pricing.{PRICING_KEY}": pl.String(),
}

_FAMILIES = (
    ("API calls (thousands)", "api"),
    ("Storage (GB-hours)", "storage"),
    ("Compute (vCPU-hours)", "compute"),
    ("GPU (hours)", "gpu"),
    ("Egress (GB)", "network"),
    ("Queries (thousands)", "database"),
    ("Messages (thousands)", "messaging"),
    ("Functions (GB-seconds, thousands)", "serverless"),
)
# Product p is _KINDS[p % 4]: (rate type, priced per region).
_KINDS = (("FLAT", False), ("TIERED", False), ("FLAT", True), ("TIERED", True))
# The first product's price changes at this offset from the data start: mid-month, on an hour.
PRICE_CHANGE_AFTER = timedelta(days=14, hours=13)
# Sparse customers use products during these UTC hours from their opening hour, Monday to Friday.
_BUSINESS_HOURS = 10

IdStyle = Literal["short", "uuid"]
Order = Literal["customer", "time"]

# Random streams: one tag per kind of choice, so choices never share a hash.
_ANCHOR, _OPENING, _USES, _LEVEL, _REGION, _QUANTITY, _DIGITS, _PRICE, _TIER = range(1, 10)
_CUSTOMER_ID, _CONTRACT_ID, _PRODUCT_ID, _RATE_CARD_ID = range(10, 14)

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _splitmix(x: int) -> int:
    x = (x + _GAMMA) & _MASK
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK
    return x ^ (x >> 31)


def draw(*keys: int) -> int:
    """A 64-bit hash of the keys: the generator's only source of randomness."""
    h = 0
    for key in keys:
        h = _splitmix(h ^ (key & _MASK))
    return h


def _u64(value: int) -> pl.Expr:
    return pl.lit(value & _MASK, dtype=pl.UInt64)


def with_draw(frame: pl.LazyFrame, name: str, *keys: int | pl.Expr) -> pl.LazyFrame:
    """`frame` with a column `name` = `draw(*keys)` row by row (expression keys are columns).

    Each splitmix step is its own `with_columns` on the one column, so the plan stays linear.
    """
    leading: list[int] = []
    for key in keys:
        if not isinstance(key, int):
            break
        leading.append(key)
    h = pl.col(name)
    frame = frame.with_columns(_u64(draw(*leading)).alias(name))
    for key in keys[len(leading) :]:
        column = key.cast(pl.UInt64) if isinstance(key, pl.Expr) else _u64(key)
        # UInt64 arithmetic wraps around; `// 2**k` is the logical shift right.
        frame = frame.with_columns((h.xor(column) + _u64(_GAMMA)).alias(name))
        frame = frame.with_columns((h.xor(h // _u64(1 << 30)) * _u64(_MIX1)).alias(name))
        frame = frame.with_columns((h.xor(h // _u64(1 << 27)) * _u64(_MIX2)).alias(name))
        frame = frame.with_columns(h.xor(h // _u64(1 << 31)).alias(name))
    return frame


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cents(ticks: int) -> Decimal:
    """A price of `ticks` ten-thousandths of a cent, as exact decimal text would write it."""
    return Decimal(format_decimal(Decimal(ticks).scaleb(-4)))


def _parse_start(start: str) -> datetime:
    moment = datetime.fromisoformat(start)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment != moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0):
        raise ValueError(f"start `{start}` must be the first day of a month at 00:00 UTC")
    return moment


def _check_sizes(customers: int, products: int, months: int) -> None:
    if customers < 1 or months < 1:
        raise ValueError("customers and months must be at least 1")
    if products < len(_KINDS) - 1:
        raise ValueError(f"products must be at least {len(_KINDS) - 1} (FLAT, TIERED, regional)")


def _check_options(ids: str, order: str) -> None:
    # Callers such as the benchmark pass these from the command line, past the type checker.
    if ids not in get_args(IdStyle):
        raise ValueError(f"ids must be one of {get_args(IdStyle)}, not {ids!r}")
    if order not in get_args(Order):
        raise ValueError(f"order must be one of {get_args(Order)}, not {order!r}")


# --- the catalog and contracts ------------------------------------------------------------------


def _width(count: int) -> int:
    return max(4, len(str(count)))


def _uuid(seed: int, stream: int, index: int) -> str:
    """Lowercase 8-4-4-4-12 text of a version-4 UUID made of two draws."""
    drawn = (draw(seed, stream, index, 0) << 64) | draw(seed, stream, index, 1)
    return str(uuid.UUID(int=drawn, version=4))


def _ids(style: IdStyle, seed: int, stream: int, prefix: str, count: int) -> list[str]:
    if style == "uuid":
        return [_uuid(seed, stream, i) for i in range(count)]
    return [f"{prefix}_{i + 1:0{_width(count)}d}" for i in range(count)]


def _customer_ids(seed: int, customers: int, ids: IdStyle) -> list[str]:
    return _ids(ids, seed, _CUSTOMER_ID, "cus", customers)


def _contract_ids(seed: int, customers: int, ids: IdStyle) -> list[str]:
    return _ids(ids, seed, _CONTRACT_ID, "con", customers)


def _product_ids(seed: int, products: int, ids: IdStyle) -> list[str]:
    return _ids(ids, seed, _PRODUCT_ID, "prod", products)


def _rate_card_id(seed: int, ids: IdStyle) -> str:
    return _uuid(seed, _RATE_CARD_ID, 0) if ids == "uuid" else RATE_CARD_ID


def _sort_ranks(ids: list[str]) -> list[int]:
    """Each id's position among the ids sorted, so that rows sort by id as integers."""
    ranks = [0] * len(ids)
    for rank, index in enumerate(sorted(range(len(ids)), key=ids.__getitem__)):
        ranks[index] = rank
    return ranks


def _is_sparse(c: int) -> bool:
    return c % 2 == 1


def _bills_on_contract_start(c: int) -> bool:
    return c % 3 == 2


def _contract_start(seed: int, c: int, start: datetime) -> datetime:
    if not _bills_on_contract_start(c):
        return start
    return start + timedelta(days=1 + draw(seed, _ANCHOR, c) % 27)  # day 2 to 28


def _rates(seed: int, p: int, product_id: str, start: datetime) -> list[dict[str, Any]]:
    rate_type, regional = _KINDS[p % len(_KINDS)]
    groups: list[dict[str, str] | None] = (
        [{PRICING_KEY: region} for region in REGIONS] if regional else [None]
    )
    rates: list[dict[str, Any]] = []
    for g, group in enumerate(groups):
        ticks = 100 + draw(seed, _PRICE, p, g) % 49_900  # 0.01 to 5 cents, 4 decimals
        rate: dict[str, Any] = {
            "product_id": product_id,
            "starting_at": _timestamp(start),
            "entitled": True,
            "rate_type": rate_type,
        }
        if rate_type == "FLAT":
            rate["price"] = _cents(ticks)
        else:
            size = 1_000 * (5 + draw(seed, _TIER, p, g) % 20)
            rate["tiers"] = [
                {"size": size, "price": _cents(ticks)},
                {"price": _cents(max(1, ticks * 4 // 5))},
            ]
        if group is not None:
            rate["pricing_group_values"] = group
        rates.append(rate)
    if p == 0:  # the price change: the first rate ends where the second starts
        change = start + PRICE_CHANGE_AFTER
        later = dict(rates[0], starting_at=_timestamp(change))
        later["price"] = _cents(100 + draw(seed, _PRICE, p, len(groups)) % 49_900)
        rates[0]["ending_before"] = _timestamp(change)
        rates.append(later)
    return rates


def catalog(
    seed: int, customers: int, products: int, start: datetime, *, ids: IdStyle = "short"
) -> dict[str, Any]:
    """The catalog document: customers, products and one rate card."""
    product_ids = _product_ids(seed, products, ids)
    product_bodies: list[dict[str, Any]] = []
    rates: list[dict[str, Any]] = []
    for p, product_id in enumerate(product_ids):
        family, tag = _FAMILIES[p % len(_FAMILIES)]
        name = family if p < len(_FAMILIES) else f"{family} #{p // len(_FAMILIES) + 1}"
        body: dict[str, Any] = {"id": product_id, "name": name, "type": "USAGE", "tags": [tag]}
        if _KINDS[p % len(_KINDS)][1]:
            body["pricing_group_key"] = [PRICING_KEY]
        product_bodies.append(body)
        rates.extend(_rates(seed, p, product_id, start))
    return {
        "credit_types": [],
        "customers": [
            {
                "id": customer_id,
                "name": f"Customer {c + 1}",
                "custom_fields": {"usage_profile": "sparse" if _is_sparse(c) else "dense"},
            }
            for c, customer_id in enumerate(_customer_ids(seed, customers, ids))
        ],
        "products": product_bodies,
        "rate_cards": [
            {
                "id": _rate_card_id(seed, ids),
                "name": "Generated list prices",
                "description": f"List prices in USD cents (seed {seed})",
                "rates": rates,
            }
        ],
    }


def contracts(
    seed: int, customers: int, months: int, start: datetime, *, ids: IdStyle = "short"
) -> list[dict[str, Any]]:
    """One contract per customer; each history is `months` whole monthly billing periods."""
    bodies: list[dict[str, Any]] = []
    rate_card_id = _rate_card_id(seed, ids)
    for c, (customer_id, contract_id) in enumerate(
        zip(_customer_ids(seed, customers, ids), _contract_ids(seed, customers, ids), strict=True)
    ):
        begins = _contract_start(seed, c, start)
        day = "CONTRACT_START" if _bills_on_contract_start(c) else "FIRST_OF_MONTH"
        bodies.append(
            {
                "id": contract_id,
                "customer_id": customer_id,
                "rate_card_id": rate_card_id,
                "starting_at": _timestamp(begins),
                "name": f"Usage contract {c + 1}",
                "usage_statement_schedule": {
                    "frequency": "MONTHLY",
                    "day": day,
                    "invoice_generation_starting_at": _timestamp(
                        begins + relativedelta(months=months)
                    ),
                },
            }
        )
    return bodies


# --- usage ----------------------------------------------------------------------------------------

# What rows are sorted by within what is built at once (a part, or a time slice). Rows are unique
# by customer, product and hour, so the region never decides; ranks sort as the ids do.
_ORDER_BY: dict[Order, tuple[str, ...]] = {
    "customer": ("customer_index", "product_index", "hour_index"),
    "time": ("hour_index", "customer_rank", "product_rank"),
}


def _customer_frame(
    seed: int, customers: int, months: int, start: datetime, ids: IdStyle
) -> pl.DataFrame:
    begins = [_contract_start(seed, c, start) for c in range(customers)]
    customer_ids = _customer_ids(seed, customers, ids)
    return pl.DataFrame(
        {
            "customer_index": list(range(customers)),
            "customer_id": customer_ids,
            "customer_rank": _sort_ranks(customer_ids),
            "contract_id": _contract_ids(seed, customers, ids),
            "sparse": [_is_sparse(c) for c in range(customers)],
            "opening_hour": [6 + draw(seed, _OPENING, c) % 9 for c in range(customers)],
            "history_start": begins,
            "history_end": [b + relativedelta(months=months) for b in begins],
        },
        schema={
            "customer_index": pl.Int64(),
            "customer_id": pl.String(),
            "customer_rank": pl.Int64(),
            "contract_id": pl.String(),
            "sparse": pl.Boolean(),
            "opening_hour": pl.Int64(),
            "history_start": UTC_TIME,
            "history_end": UTC_TIME,
        },
    )


def _in_use() -> pl.Expr:
    """Whether a customer uses its products in the hour `inclusive_start_date`."""
    hour = pl.col("inclusive_start_date").dt.hour().cast(pl.Int64)
    business = (
        (pl.col("inclusive_start_date").dt.weekday() <= 5)
        & (hour >= pl.col("opening_hour"))
        & (hour < pl.col("opening_hour") + _BUSINESS_HOURS)
    )
    return ~pl.col("sparse") | business


def _customer_hours(customer_frame: pl.DataFrame, start: datetime) -> pl.DataFrame:
    """(customer_index, hour_index, inclusive_start_date): the hours each customer has usage."""
    return (
        customer_frame.lazy()
        .select(
            "customer_index",
            "sparse",
            "opening_hour",
            pl.datetime_ranges(
                "history_start", "history_end", "1h", closed="left", time_unit="us"
            ).alias("inclusive_start_date"),
        )
        .explode("inclusive_start_date")
        .filter(_in_use())
        .select(
            "customer_index",
            ((pl.col("inclusive_start_date") - pl.lit(start)).dt.total_hours()).alias("hour_index"),
            "inclusive_start_date",
        )
        .collect()
    )


def _slice_hours(customer_frame: pl.DataFrame, start: datetime, hours: range) -> pl.DataFrame:
    """`_customer_hours` of the hours `hours` (counted from `start`) only."""
    hour_frame = pl.DataFrame(
        {"hour_index": list(hours)}, schema={"hour_index": pl.Int64()}
    ).with_columns(
        (pl.lit(start, dtype=UTC_TIME) + pl.duration(hours=pl.col("hour_index"))).alias(
            "inclusive_start_date"
        )
    )
    moment = pl.col("inclusive_start_date")
    return (
        customer_frame.lazy()
        .select("customer_index", "sparse", "opening_hour", "history_start", "history_end")
        .join(hour_frame.lazy(), how="cross")
        .filter((moment >= pl.col("history_start")) & (moment < pl.col("history_end")) & _in_use())
        .select("customer_index", "hour_index", "inclusive_start_date")
        .collect()
    )


def _hours_per_customer(customer_frame: pl.DataFrame, start: datetime) -> pl.DataFrame:
    """(customer_index, rows): how many hours each customer has usage.

    Counted once per usage profile (a few hundred at most, whatever the number of customers), so
    that counting the rows of a billion-row data set takes no more memory than a small one.
    """
    profile = ["sparse", "opening_hour", "history_start", "history_end"]
    profiles = (
        customer_frame.select(profile)
        .unique(maintain_order=True)
        .with_row_index("customer_index")
        .with_columns(pl.col("customer_index").cast(pl.Int64))
    )
    counts = (
        _customer_hours(profiles, start)
        .group_by("customer_index")
        .agg(rows=pl.len().cast(pl.Int64))
    )
    per_profile = profiles.join(counts, on="customer_index", how="left").drop("customer_index")
    return customer_frame.join(per_profile, on=profile, how="left").select(
        "customer_index", pl.col("rows").fill_null(0)
    )


def _pairs(seed: int, customer_frame: pl.DataFrame, products: int, ids: IdStyle) -> pl.DataFrame:
    """(customer, product) pairs with usage: all for dense customers, some for sparse ones."""
    product_ids = _product_ids(seed, products, ids)
    product_frame = pl.DataFrame(
        {
            "product_index": list(range(products)),
            "product_id": product_ids,
            "product_rank": _sort_ranks(product_ids),
            "regional": [_KINDS[p % len(_KINDS)][1] for p in range(products)],
        },
        schema={
            "product_index": pl.Int64(),
            "product_id": pl.String(),
            "product_rank": pl.Int64(),
            "regional": pl.Boolean(),
        },
    )
    c, p = pl.col("customer_index"), pl.col("product_index")
    crossed = (
        customer_frame.lazy()
        .select("customer_index", "customer_id", "customer_rank", "contract_id", "sparse")
        .join(product_frame.lazy(), how="cross")
    )
    crossed = with_draw(crossed, "_always", seed, _USES, c)
    crossed = with_draw(crossed, "_sometimes", seed, _USES, c, p)
    crossed = with_draw(crossed, "_level", seed, _LEVEL, c, p)
    level = pl.col("_level")
    return (
        crossed.filter(
            ~pl.col("sparse")
            | (pl.col("_sometimes") % 2 == 0)
            | (p == (pl.col("_always") % products).cast(pl.Int64))
        )
        .with_columns(
            # The usual hourly quantity, in thousandths: dense 5 to 50, sparse 0.5 to 10.
            level_milli=pl.when(pl.col("sparse"))
            .then(500 + level % 9_501)
            .otherwise(5_000 + level % 45_001)
            .cast(pl.Int64)
        )
        .drop("_always", "_sometimes", "_level")
        .sort("customer_index", "product_index")
        .collect()
    )


def _with_parts(pairs: pl.DataFrame, hours_per_customer: pl.DataFrame) -> pl.DataFrame:
    """Each pair's row count and the file it goes to (pairs are never split across files)."""
    return (
        pairs.join(hours_per_customer, on="customer_index", how="left")
        .with_columns(pl.col("rows").fill_null(0))
        .with_columns(
            part=((pl.col("rows").cum_sum() - pl.col("rows")) // MAX_PART_ROWS)
            .rank("dense")
            .cast(pl.Int64)
            - 1
        )
        .sort("customer_index", "product_index")
    )


def _usage_rows(
    seed: int, pairs: pl.DataFrame, customer_hours: pl.DataFrame, order_by: Sequence[str]
) -> pl.DataFrame:
    c, p, h = pl.col("customer_index"), pl.col("product_index"), pl.col("hour_index")
    plan = pairs.lazy().join(customer_hours.lazy(), on="customer_index", how="inner")
    plan = with_draw(plan, "_percent", seed, _QUANTITY, c, p, h)
    plan = with_draw(plan, "_digits", seed, _DIGITS, c, p, h)
    plan = with_draw(plan, "_region", seed, _REGION, c, p, h // 24)
    percent = (50 + pl.col("_percent") % 101).cast(pl.Int64)  # 50% to 150% of the usual level
    digits = (pl.col("_digits") % 1_000_000).cast(pl.Int64)  # digits below a thousandth
    nano = pl.col("level_milli") * 1_000_000 * percent // 100 + digits
    region = (
        (pl.col("_region") % len(REGIONS))
        .cast(pl.Int64)
        .replace_strict(dict(enumerate(REGIONS)), return_dtype=pl.String())
    )
    # An integer count of 10^-9 units times 10^-9: exact, never through a float.
    quantity = nano.cast(pl.Decimal(38, 0)) * pl.lit(
        Decimal(1).scaleb(-QUANTITY_SCALE), dtype=pl.Decimal(38, QUANTITY_SCALE)
    )
    rows = (
        plan.sort(list(order_by))
        .select(
            "customer_id",
            "contract_id",
            "product_id",
            "inclusive_start_date",
            (pl.col("inclusive_start_date") + pl.duration(hours=1)).alias("exclusive_end_date"),
            quantity.cast(QUANTITY).alias("quantity"),
            pl.when(pl.col("regional")).then(region).alias(f"pricing.{PRICING_KEY}"),
        )
        .collect()
    )
    if rows.schema != pl.Schema(USAGE):
        raise AssertionError(f"usage schema {rows.schema} is not {USAGE}")
    return rows


def _customer_parts(
    seed: int, pairs: pl.DataFrame, customer_hours: pl.DataFrame
) -> Iterator[pl.DataFrame]:
    """The rows part by part (parts 0, 1, ...), each sorted by customer, product and hour."""
    for part in pairs["part"].unique(maintain_order=True).to_list():
        chosen = pairs.filter(pl.col("part") == part)
        yield _usage_rows(seed, chosen, customer_hours, _ORDER_BY["customer"])


def _time_slices(
    seed: int, customer_frame: pl.DataFrame, pairs: pl.DataFrame, start: datetime
) -> Iterator[pl.DataFrame]:
    """The rows in time order, a slice of whole hours at a time (about `SLICE_ROWS` rows each)."""
    span = int(
        customer_frame.select((pl.col("history_end").max() - pl.lit(start)).dt.total_hours()).item()
    )
    total = int(pairs["rows"].sum())
    slice_hours = max(1, min(span, SLICE_ROWS * span // max(1, total)))
    for first_hour in range(0, span, slice_hours):
        hours = range(first_hour, min(span, first_hour + slice_hours))
        customer_hours = _slice_hours(customer_frame, start, hours)
        yield _usage_rows(seed, pairs, customer_hours, _ORDER_BY["time"])


class _UsageWriter:
    """Writes usage frames, in the order given, as row groups of `ROW_GROUP_ROWS` rows (the last
    one aside, whatever the frames' sizes) into `usage/part-NNNN.parquet` files of at most
    `rows_per_file` rows (rounded down to whole row groups), or one file when it is None."""

    def __init__(self, out: Path, rows_per_file: int | None) -> None:
        self._out = out
        self._groups_per_file = (
            None if rows_per_file is None else max(1, rows_per_file // ROW_GROUP_ROWS)
        )
        self._schema = pl.DataFrame(schema=USAGE).to_arrow().schema
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._writer: Any = None
        self._groups_in_file = 0
        self.files: list[str] = []
        self.rows = 0

    def __enter__(self) -> _UsageWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                if self._pending_rows:
                    self._write_group(self._pending_rows)
                if self._writer is None:  # no rows: still the file, with its schema
                    self._open_next_file()
        finally:
            if self._writer is not None:
                self._writer.close()

    def write(self, frame: pl.DataFrame) -> None:
        self._pending.append(frame)
        self._pending_rows += frame.height
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._write_group(ROW_GROUP_ROWS)

    def _write_group(self, rows: int) -> None:
        pending = pl.concat(self._pending, rechunk=False)
        group, rest = pending.head(rows), pending.slice(rows)
        self._pending, self._pending_rows = ([rest] if rest.height else []), rest.height
        if self._writer is None or self._groups_in_file == self._groups_per_file:
            self._open_next_file()
        self._writer.write_table(group.to_arrow(), row_group_size=ROW_GROUP_ROWS)
        self._groups_in_file += 1
        self.rows += group.height

    def _open_next_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
        name = f"usage/part-{len(self.files):04d}.parquet"
        self._writer = pq.ParquetWriter(
            self._out / name, self._schema, compression="zstd", write_statistics=True
        )
        self._groups_in_file = 0
        self.files.append(name)


def _plan(
    seed: int, customers: int, products: int, months: int, start: datetime, ids: IdStyle
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The customers, and the (customer, product) pairs with their row counts and parts."""
    customer_frame = _customer_frame(seed, customers, months, start, ids)
    hours_per_customer = _hours_per_customer(customer_frame, start)
    pairs = _with_parts(_pairs(seed, customer_frame, products, ids), hours_per_customer)
    return customer_frame, pairs


def rows_for(
    customers: int,
    products: int,
    months: int,
    *,
    seed: int = 7,
    start: str = "2024-01-01",
    ids: IdStyle = "short",
    order: Order = "customer",
    single_file: bool = False,
) -> int:
    """The exact number of usage rows `generate` writes for these parameters (no rows are built).

    It takes `generate`'s options so that one set of parameters serves both; none of them changes
    the count.
    """
    _check_sizes(customers, products, months)
    _check_options(ids, order)
    _, pairs = _plan(seed, customers, products, months, _parse_start(start), ids)
    return int(pairs["rows"].sum())


def _write_json(path: Path, document: Any) -> str:
    text = dumps_exact(document) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def generate(
    out: Path,
    *,
    customers: int,
    products: int,
    months: int,
    seed: int = 7,
    start: str = "2024-01-01",
    ids: IdStyle = "short",
    order: Order = "customer",
    single_file: bool = False,
) -> dict[str, Any]:
    """Write a data set directory; returns its parameters, row count, files and history bounds.

    `ids`, `order` and `single_file` choose the shape of the data (see the module's docstring).
    """
    _check_sizes(customers, products, months)
    _check_options(ids, order)
    first = _parse_start(start)
    out.mkdir(parents=True, exist_ok=True)

    catalog_text = _write_json(
        out / "catalog.json", catalog(seed, customers, products, first, ids=ids)
    )
    contract_bodies = contracts(seed, customers, months, first, ids=ids)
    contracts_text = _write_json(out / "contracts.json", contract_bodies)
    # What is written must be what the importer accepts.
    Catalog.model_validate_json(catalog_text)
    stored_contracts = TypeAdapter(list[Contract]).validate_json(contracts_text)

    usage_dir = out / "usage"
    usage_dir.mkdir(exist_ok=True)
    for stale in usage_dir.glob("part-*.parquet"):
        stale.unlink()
    customer_frame, pairs = _plan(seed, customers, products, months, first, ids)
    frames = (
        _time_slices(seed, customer_frame, pairs, first)
        if order == "time"
        else _customer_parts(seed, pairs, _customer_hours(customer_frame, first))
    )
    files: list[str] = []
    rows = 0
    if single_file or order == "time":
        with _UsageWriter(out, None if single_file else MAX_PART_ROWS) as writer:
            for frame in frames:
                writer.write(frame)
        files, rows = writer.files, writer.rows
    else:  # a file per part, whole pairs in each
        for part, frame in enumerate(frames):
            name = f"usage/part-{part:04d}.parquet"
            frame.write_parquet(out / name, compression="zstd", statistics=True)
            files.append(name)
            rows += frame.height

    generation = max(
        c.usage_statement_schedule.invoice_generation_starting_at or first for c in stored_contracts
    )
    return {
        "samples_version": SAMPLES_VERSION,
        "seed": seed,
        "start": start,
        "customers": customers,
        "products": products,
        "months": months,
        "ids": ids,
        "order": order,
        "single_file": single_file,
        "rows": rows,
        "files": ["catalog.json", "contracts.json", *files],
        "history_start": _timestamp(first),
        "history_end": _timestamp(generation),
        # the day to import it as of: its history is then all before invoice generation, and
        # the drafts are those of the first generated periods (without it, today's)
        "as_of": f"{generation:%Y-%m-%d}",
    }
