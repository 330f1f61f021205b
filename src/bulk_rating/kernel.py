"""The rating kernel: a run's usage checked, assembled into invoices and lines, priced, drawn
from commits and credits and totalled, over the store's connection and inside the run's
transaction. Callers make a Kernel for a run (its store, data set and partitions of contracts)
and call three things: `prepare` (the working relations, before the transaction), `check` (the
problems found, the rows' content sum, what is needed to rate) and `rate` (priced windows, line
items, drawdown, invoice and draft totals). No caller hands the store SQL: the statements come
from resolve, validate, assemble and rate, and are run here.

Working relations (temp tables and views of the run's connection, made by `prepare`): the
references rows are checked against (`_contract_refs`, `_known_*`), the periods contracts bill
themselves (`_draft_periods`, `_period_weeks`), the usage rows (`usage_rows`, of one partition
of contracts at a time when there are several; `usage_rows_unique` without exact copies), what
the check counted (`_line_weeks`) and the lines it checked (`_lines`), the run's invoices and
lines (`usage_invoices`, `usage_lines`), tiers by week (`_week_tiers`), edge-week parts
(`_edge_parts`) and drawdown applications (`_applications`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import polars as pl

from bulk_rating import assemble, balances, catalog, frames, load, rate, resolve, validate
from bulk_rating.errors import BulkRatingError, UsageError
from bulk_rating.progress import NULL_PROGRESS, Progress
from bulk_rating.settings import SPLIT_BUDGET_BYTES_PER_ROW, Settings
from bulk_rating.store import Store

# A year and a day of hours: a line of a longer period has its repeated windows counted exactly.
MAX_SLOTS = 24 * 367
# From this many partitions on, a usage table is first split by partition in one pass (each
# partition then reads its own rows): below, each partition reads the whole table, filtered.
# Measured at 10M rows: the split costs about as much as 4 more filtered reads of the table.
SPLIT_FROM = 6
# A usage table whose rows name no invoice periods is priced by its lines' spans
# (rate.LINE_SPANS); otherwise (and when this is off) each row is resolved again.
PRICE_BY_SPANS = True
# ... unless its lines make more spans than this share of its rows: a partition's spans are
# held while its rows are priced (about 50 bytes each, where the budget counts 20-40 a row), and
# sparse rows of long periods repeat a span in every week (at 10M rows of the export shape,
# 181,236 spans: 0.018 a row).
MOST_SPANS_PER_ROW = 0.25


def partitions(
    store: Store,
    dataset: load.Dataset,
    settings: Settings,
    plan: catalog.CatalogPlan,
    contracts: pl.DataFrame,
    as_of: datetime,
) -> int:
    """How many partitions of contracts a usage table's rows are checked and priced in: as set,
    or as many as its rows and its contracts' rows (contract_rows; `contracts`: their refs) need
    at the memory budget (partition_count). JSON batches are bounded by their own size
    limit: one."""
    if settings.partitions is not None:
        return settings.partitions
    if len(dataset.tables) != 1:
        return 1
    return partition_count(
        settings,
        store.parquet_rows(dataset.tables[0].files),
        contract_rows(store, plan, contracts, as_of),
    )


def partition_count(settings: Settings, rows: int, contract_rows: int) -> int:
    """The partitions `rows` usage rows and their contracts' `contract_rows` need at the memory
    budget: sized at BUDGET_BYTES_PER_ROW a row, or, when that many already split the table
    first (SPLIT_FROM), at SPLIT_BUDGET_BYTES_PER_ROW: a partition then reads its own rows only,
    and more of them spill less of the check's groups (below SPLIT_FROM, each one more would
    read the whole table once more: at 100M rows, 2 partitions were faster than 3, 4 or 6)."""
    count = settings.partitions_for(rows, contract_rows)
    if count < SPLIT_FROM:
        return count
    return settings.partitions_for(rows, contract_rows, SPLIT_BUDGET_BYTES_PER_ROW)


# The weeks a contract's DRAFT period touches, at most (a month, or a quarter's last weeks).
_DRAFT_WEEKS = 6


def contract_rows(
    store: Store, plan: catalog.CatalogPlan, contracts: pl.DataFrame, as_of: datetime
) -> int:
    """About how many rows of the contracts' tables the usage rows meet (their rate pieces, their
    billing periods by week: `_period_weeks`), stored and new; `contracts`: their refs
    (frames.CONTRACT_REFS). At many contracts these, not the rows, fill a partition's memory."""
    rates = plan.rows["contract_rates"].height + int(
        store.scalar("SELECT count(*) FROM contract_rates") or 0
    )
    until = pl.min_horizontal(pl.col("generation_starts_at"), pl.lit(as_of))
    weeks = contracts.select(
        ((until - pl.col("starting_at")).dt.total_days() // 7 + 2).clip(lower_bound=1).sum()
    ).item()
    return rates + int(weeks or 0) + _DRAFT_WEEKS * contracts.height


@dataclass
class Checked:
    """What checking a run's usage found: its problems (frames of issues), the rows read and
    their content sum (the rows' hashes summed: a usage table's content, whatever its order or
    split), the exact duplicates collapsed (notices) and how many copies of the run's own rows
    there were, and whether rows fall in a DRAFT period."""

    found: list[pl.DataFrame]
    rows_read: int
    content_sum: int
    has_drafts: bool
    copies_in_run: int = 0
    notices: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.ISSUES))
    # False when problems of rows were found: the invoices they would make are not checked
    invoices_checked: bool = False


class Kernel:
    """The rating of one run's usage (see the module's docstring)."""

    def __init__(self, store: Store, dataset: load.Dataset, partitions: int = 1) -> None:
        self.store, self.dataset, self.partitions = store, dataset, partitions
        self.table: load.UsageTable | None = None
        # where a usage table's days are cut, its rows grouped by part of day before they are
        # resolved (validate.line_weeks_sql); None: each row is resolved (check)
        self.day_splits: list[int] | None = None
        self.rows_per_day_group: float | None = None  # on the table's first day (prepare)
        self.new_drafts = frames.empty(frames.DRAFTS)  # the new contracts' (prepare)

    def prepare(
        self,
        plan: catalog.CatalogPlan,
        refs: validate.References,
        as_of: datetime,
        progress: Progress = NULL_PROGRESS,
    ) -> load.UsageTable | None:
        """The run's working relations, created before its transaction (which then holds no
        DDL); returns the usage table the run reads, if any (as given: in SPLIT_FROM partitions
        or more, the kernel reads a copy of it split by partition)."""
        store, dataset, partitions = self.store, self.dataset, self.partitions
        if dataset.tables and dataset.request is not None:
            raise UsageError("give historical invoices (JSON) or usage tables in one run, not both")
        if len(dataset.tables) > 1:
            raise UsageError(
                "usage tables of one run must share one format (all Parquet or all CSV)"
            )
        table = dataset.tables[0] if dataset.tables else None
        store.temp_table("_contract_refs", refs.contracts)
        store.temp_table("_known_customers", refs.customer_ids)
        store.temp_table("_known_products", refs.product_ids)
        store.temp_table("_known_credit_types", refs.credit_type_ids)
        store.working_tables("_drafts", "_shown")
        store.temp_table("usage_invoices", frames.empty(frames.INVOICES))
        store.temp_table("usage_lines", frames.empty(frames.STORE_LINES))
        store.temp_table("_applications", frames.empty(frames.APPLICATIONS))
        # the new contracts' DRAFT invoices (D8), made while their models are at hand; stored
        # once the rows are known to be good (add_drafts)
        self.new_drafts = new_drafts(store, plan, as_of)
        store.temp_table("_draft_periods", _draft_periods(store, self.new_drafts))
        store.temp_view(
            "draft_rows",
            "SELECT * EXCLUDE (run_id), NULL::BIGINT AS file_index,"
            " pricing_group_values AS pricing_key, presentation_group_values AS presentation_key"
            # the usage of the drafts rated again (clear_drafts names them in `_shown`)
            " FROM _draft_usage WHERE contract_id IN (SELECT contract_id FROM invoices"
            " WHERE invoice_id IN (SELECT invoice_id FROM _shown))",
        )
        store.temp_view(resolve.rates_of("draft_rows"), load.rates_keyed_sql(None))
        store.temp_view(
            resolve.rates_of("usage_rows"),
            load.rates_keyed_sql(None if table is None else table.kinds),
        )
        read = table
        if table is None:
            store.temp_table(
                "_json_rows", load.json_rows(dataset.invoices, dataset.lines, dataset.windows)
            )
            store.temp_view("usage_rows", load.JSON_ROWS_SQL)
        else:
            # the billing periods of the contracts stored and new, from their rows' terms
            store.temp_table("_new_contracts", plan.rows["contracts"].drop("body"))
            terms = store.frame(
                f"{assemble.contract_terms_sql('contracts')}"
                f" UNION ALL {assemble.contract_terms_sql('_new_contracts')}"
            )
            store.temp_table(
                "_period_weeks",
                assemble.period_weeks(terms, store.frame("SELECT * FROM _draft_periods")),
            )
        # The run needs the contracts' frames from here, not their models: they are let go before
        # any row is read (at 192,998 contracts, 0.9 GB beside DuckDB's budget).
        plan.let_go_of_models()
        dataset.let_go_of_models()
        if table is not None:
            read = table
            if partitions >= SPLIT_FROM and not table.positions_given:
                folder = dataset.staging_dir() / "partitions"
                files = store.tracked(
                    "splitting rows by partition",
                    progress,
                    lambda: store.split_rows(load.positioned_rows_sql(table), partitions, folder),
                    rows=store.parquet_rows(table.files) if progress.active else None,
                )
                if files:  # an empty table splits into no file at all: read as it is
                    read = replace(table, files=tuple(files), positions_given=True, split=True)
            store.temp_view("usage_rows_all", load.rows_sql(read))
            if partitions > 1:
                store.partitioned_rows(split=read.split)
            else:
                store.temp_view("usage_rows", "SELECT * FROM usage_rows_all")
            store.temp_table_like("_dropped_copies", "SELECT NULL::BIGINT AS position")
            store.temp_table(  # what a row's file_index names: the file it was read from
                "_sources",
                pl.DataFrame(
                    {"file_index": range(len(table.sources)), "source": table.sources},
                    schema={"file_index": pl.Int64, "source": pl.String},
                ),
            )
            store.temp_view("usage_rows_unique", validate.UNIQUE_ROWS)
            # read before the transaction: a table that cannot be read is named by the check
            self.rows_per_day_group = store.rows_per_day_group()
        store.temp_table_like("_line_weeks", _line_weeks_sql(store, table))
        store.temp_table_like("_lines", _lines_sql(table))
        store.temp_table_like("_week_tiers", rate.WEEK_TIERS.replace("$drafts", "false"))
        store.temp_table_like(
            "_line_spans",
            "SELECT NULL::UBIGINT AS series, NULL::BIGINT AS week, NULL::TIMESTAMPTZ AS span_start,"
            " NULL::TIMESTAMPTZ AS span_end, NULL::UBIGINT AS item_key",
        )
        store.temp_table_like(
            "_edge_parts",
            "SELECT NULL::UBIGINT AS line_key, NULL::BIGINT AS rate_key, NULL::INTEGER AS tier_key,"
            " window_start, quantity FROM _priced_windows",
        )
        self.table = read
        return table

    def store_plan(self, plan: catalog.CatalogPlan, run_id: int) -> None:
        """The run's catalog and contracts, written first in its transaction; their rows are
        then let go (at 192,998 contracts, 0.6 GB of frames beside DuckDB's budget while rows
        are checked and priced)."""
        for name in list(plan.rows):
            self.store.insert(name, plan.rows.pop(name).with_columns(run_id=pl.lit(run_id)))
        for card in plan.replaced_cards:
            self.store.replace_rate_card(card.id, *catalog.rate_card_version(card), run_id)

    def add_drafts(self, run_id: int) -> None:
        """The new contracts' DRAFT invoices of the period holding the as-of date (D8, made by
        `prepare`), once the rows are known to be good."""
        self.store.insert_drafts(self.new_drafts, run_id)

    def check(self, refs: validate.References, progress: Progress) -> Checked:
        """Check every row while grouping rows into lines (one scan, per partition); name the
        failing rows only when there are some; then make the invoices and lines and check the
        invoices."""
        store, dataset, table = self.store, self.dataset, self.table
        kind, is_table = (table.kinds["quantity"], True) if table else ("text", False)
        kinds = table.kinds if table else None
        self.day_splits = _day_splits(store, self.rows_per_day_group) if table is not None else None
        store.tracked(
            "reading and checking rows",
            progress,
            lambda: store.check_rows(
                _line_weeks_sql(store, table, day_splits=self.day_splits), self.partitions
            ),
            rows=store.parquet_rows(table.files) if table and progress.active else None,
            partitions=self.partitions,
        )
        # the checked lines stay in DuckDB: Python takes their counts, then the invoices (at 1B
        # rows 4.2M lines with 36-character ids; a copy of them here was the run's peak of memory)
        store.replace_with("_lines", _lines_sql(table))
        counted = store.frame(validate.LINES_COUNTED).row(0, named=True)
        checked = Checked(
            found=[],
            rows_read=counted["rows"],
            content_sum=int(counted["content_sum"]),
            has_drafts=counted["has_drafts"],
        )
        if counted["problems"]:
            checked.found.append(
                store.frame(validate.row_issues_sql(kind, table=is_table, kinds=kinds))
            )
        repeats = []
        duplicate = pl.col("code") == "DUPLICATE_ROW"
        if counted["repeated_windows"] or counted["repeats_uncounted"]:
            repeats.append(store.frame(validate.repeated_windows_sql(table=is_table)))
            checked.copies_in_run = frames.rows_counted(repeats[0].filter(duplicate))
        if checked.has_drafts and store.scalar("SELECT count(*) FROM _draft_usage"):
            # windows an earlier run gave for the same draft
            repeats.append(store.frame(validate.KEPT_DRAFT_REPEATS))
        if repeats:
            repeated = pl.concat(repeats, how="diagonal_relaxed")
            checked.found.append(repeated.filter(~duplicate))
            checked.notices = repeated.filter(duplicate)
        if any(f.height for f in checked.found):
            return checked
        checked.invoices_checked = True
        if not store.scalar(validate.keys_unique_sql(table=is_table)):  # a 64-bit hash collision
            raise BulkRatingError(
                "two lines or tier groups share a key; split the input and import it in parts"
            )
        if table is None:
            store.replace("usage_invoices", dataset.invoices)
            keys = store.frame("SELECT invoice_index, line_index, line_key FROM _lines")
            store.replace("usage_lines", assemble.json_lines(dataset.lines, dataset.invoices, keys))
            return checked
        # the history's lines and invoices, made where the lines are (a DRAFT period's rows are
        # rated with its draft)
        store.replace_with("usage_lines", assemble.TABLE_LINES_SQL)
        invoices, disagreements = assemble.invoices_checked(
            store.frame(assemble.TABLE_INVOICES_SQL)
        )
        store.replace("usage_invoices", invoices)
        checked.found = [disagreements, validate.validate_invoices(invoices, refs)]
        return checked

    def rate(self, run_id: int, checked: Checked, progress: Progress) -> None:
        """Price the checked rows into windows and line items, draw commits and credits down,
        total the invoices, and rate the drafts the rows fall in."""
        store, table, partitions = self.store, self.table, self.partitions
        unique = "_unique" if checked.notices.height else ""
        if unique:  # tiers and line items count each exact duplicate once
            _drop_copies(store, checked.copies_in_run, partitions)
            store.check_rows(
                _line_weeks_sql(store, table, rows="usage_rows_unique", day_splits=self.day_splits),
                partitions,
            )
        store.price(
            run_id,
            table=table is not None,
            rows="usage_rows" + unique,
            progress=progress,
            partitions=partitions,
            spans=table is not None and _prices_by_spans(store, table),
        )
        _draw_down(store, run_id)
        store.total_invoices(run_id)
        if checked.has_drafts:
            _rate_drafts(store, run_id, "usage_rows" + unique, partitions)


def _prices_by_spans(store: Store, table: load.UsageTable) -> bool:
    """Whether a usage table's checked rows are priced by their lines' spans (PRICE_BY_SPANS,
    MOST_SPANS_PER_ROW): its rows name no invoice periods, and the spans are few enough."""
    if not PRICE_BY_SPANS or validate.rows_name_periods(table.kinds):
        return False
    spans, rows = store.spans_and_rows()
    return spans <= MOST_SPANS_PER_ROW * rows


def _line_weeks_sql(
    store: Store,
    table: load.UsageTable | None,
    rows: str = "usage_rows",
    day_splits: list[int] | None = None,
) -> str:
    if table is None:
        return validate.line_weeks_sql("text", table=False, slots=_slots(store, table))
    return validate.line_weeks_sql(
        table.kinds["quantity"],
        table=True,
        rows=rows,
        slots=_slots(store, table),
        kinds=table.kinds,
        day_splits=day_splits,
    )


def _lines_sql(table: load.UsageTable | None) -> str:
    """The checked lines of `_line_weeks` (kept in `_lines`)."""
    if table is None:
        return validate.lines_sql("text", table=False)
    return validate.lines_sql(table.kinds["quantity"], table=True, kinds=table.kinds)


# Past this many cuts in a day, grouping a day's rows by part saves too little: each row is
# resolved on its own (at 10M hourly rows, days in two parts: 1M groups resolved, not 10M rows).
MAX_DAY_SPLITS = 3


# Rows are grouped by part of day when each group would hold at least this many rows on the
# table's first day (its rows per contract, product, pricing group values, customer and
# granularity that day, over the parts a day is cut in). Grouping a few rows costs more than it
# saves: 5M daily rows took 10 s to check grouped against 5 s row by row, 9.5M hourly rows of two
# hours a day 20 s against 7 s; 10M rows of 14 a day (two parts) 1.4 s against 2.0 s.
MIN_ROWS_PER_DAY_GROUP = 6


def _day_splits(store: Store, rows_per_day_group: float | None) -> list[int] | None:
    """The times of day at which the run's periods and rate pieces begin or end
    (resolve.DAY_SPLITS), if few enough to group rows by part of day (MAX_DAY_SPLITS) and the
    groups would hold rows enough (`rows_per_day_group`, by day: MIN_ROWS_PER_DAY_GROUP)."""
    if rows_per_day_group is None or rows_per_day_group < MIN_ROWS_PER_DAY_GROUP:
        return None
    splits = [
        int(offset)
        for (offset,) in store.frame(resolve.DAY_SPLITS, {"most": MAX_DAY_SPLITS}).iter_rows()
    ]
    if (
        len(splits) > MAX_DAY_SPLITS
        or rows_per_day_group / (len(splits) + 1) < MIN_ROWS_PER_DAY_GROUP
    ):
        return None
    return splits


def _slots(store: Store, table: load.UsageTable | None) -> int:
    """Hours of the longest billing period the rows fall in (at least a day): the size of each
    line's bitmap of windows."""
    source = (
        "_period_weeks"
        if table is not None
        else "(SELECT invoice_start AS inclusive_start,"
        " invoice_end AS exclusive_end FROM usage_rows)"
    )
    longest = store.scalar(
        f"SELECT max(epoch_us(exclusive_end) - epoch_us(inclusive_start)) FROM {source}"
    )
    hours = -(-int(longest or 0) // validate.HOUR_US)
    return min(max(hours, 24), MAX_SLOTS)


def new_drafts(store: Store, plan: catalog.CatalogPlan, as_of: datetime) -> pl.DataFrame:
    """The run's new contracts' DRAFT invoices, of the period holding `as_of` (D8), each in its
    rate card's fiat credit type (stored or new in the run)."""
    fiat = {
        **store.fiat_credit_types(),
        **dict(plan.rows["rate_cards"].select("rate_card_id", "fiat_credit_type_id").iter_rows()),
    }
    return catalog.drafts(plan.new_contracts, fiat, as_of)


def _draft_periods(store: Store, new: pl.DataFrame) -> pl.DataFrame:
    """The periods the contracts bill themselves now: their DRAFT invoices, stored or `new`."""
    stored = store.generated_invoices().filter(pl.col("status") == "DRAFT")
    return pl.concat(
        [
            stored.select(
                "contract_id",
                pl.col("start_timestamp").alias("inclusive_start"),
                pl.col("end_timestamp").alias("exclusive_end"),
            ),
            new.select("contract_id", "inclusive_start", "exclusive_end"),
        ]
    )


def _drop_copies(store: Store, copies_in_run: int, partitions: int) -> None:
    """Name the rows that usage_rows_unique leaves out: as many as the check counted, or a hash
    made two different rows look alike (never guess). Copies are of one contract: of one
    partition."""
    store.replace_with("_dropped_copies", validate.dropped_copies_sql(), partitions=partitions)
    if store.scalar("SELECT count(*) FROM _dropped_copies") != copies_in_run:
        raise BulkRatingError(
            "two different rows hash alike; split the input and import it in parts"
        )


def _rate_drafts(store: Store, run_id: int, rows: str, partitions: int) -> None:
    """D8: a draft is rated from all the usage of its period given so far, again when more comes
    (each exact duplicate once, as history). Only the drafts given new rows are rated again:
    the others keep what they were rated at (and the run that rated them)."""
    store.keep_draft_usage(run_id, rows, partitions)
    if not store.clear_drafts(run_id):
        return
    store.check_rows(validate.line_weeks_sql("text", table=True, rows="draft_rows"))
    checked = store.frame(validate.lines_sql("text", table=True))
    invoices, lines, _ = assemble.table_invoices_and_lines(checked.filter(pl.col("draft")))
    store.replace("usage_invoices", invoices)
    store.replace("usage_lines", lines)
    store.price(run_id, table=True, rows="draft_rows", drafts=True)
    _draw_down(store, run_id)
    store.total_drafts(run_id)


def _draw_down(store: Store, run_id: int) -> None:
    """Commits and credits of the run's contracts, drawn down by its invoices (D9)."""
    lines, pieces, segments = store.commit_inputs(run_id)
    if lines.height:
        applications = balances.allocate(lines, pieces, segments)
        store.apply_commits(
            run_id, pl.DataFrame(applications, schema=frames.APPLICATIONS, strict=False)
        )
