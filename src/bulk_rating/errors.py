"""One exception root. Data problems are values (an issues frame); these are for everything else."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DATA_PROBLEMS = 1  # the input has problems (nothing written) or reconciliation differences
    USAGE = 2  # bad options, unreadable paths, bad configuration
    INTERNAL = 3  # a bug: traceback only with --debug
    INTERRUPTED = 130  # Ctrl-C or SIGTERM before the work was committed: nothing written


class BulkRatingError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "path": self.path}


class UsageError(BulkRatingError):
    """The command line or configuration is wrong (exit 2)."""

    exit_code = ExitCode.USAGE
    code = "USAGE_ERROR"


class AmountOverflowError(BulkRatingError):
    """Pricing produced an amount beyond DECIMAL(38, 23): a data problem, reported as one.
    `rows`: the lines or invoices it was found in (source, invoice_index, line_index, message),
    when known."""

    exit_code = ExitCode.DATA_PROBLEMS
    code = "NUMBER_TOO_LARGE"

    def __init__(self, message: str, *, rows: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []


class ScanError(BulkRatingError):
    """DuckDB failed while reading a run's usage files: a corrupt file when one of them cannot be
    read on its own (then reported as CORRUPT_FILE), else a bug."""


class NotAStoreError(UsageError):
    """--db names a file that is not a bulk_rating store: never written into."""

    code = "NOT_A_STORE"


class NotFoundError(UsageError):
    """An id that names nothing stored (a customer, an invoice)."""

    code = "NOT_FOUND"


class ResourceError(BulkRatingError):
    """The machine ran out of something the run needs (disk space, the memory limit): not a bug
    and not the data's fault; the message says what to free or raise (exit 2)."""

    exit_code = ExitCode.USAGE
    code = "DISK_FULL"  # or OUT_OF_MEMORY: always given

    def __init__(self, message: str, *, code: str, committed: bool = False) -> None:
        super().__init__(message, code=code)
        self.committed = committed  # the work is stored (in the WAL) although the step failed


class CatalogConflictError(UsageError):
    """A change to a stored catalog object that stored data depends on (a rate card that
    contracts use): refused, as stored objects are immutable."""

    code = "CATALOG_CONFLICT"


class DatabaseLockedError(UsageError):
    """Another process holds the database file."""

    code = "DATABASE_LOCKED"


# Stable codes of data problems (rows of the issues frame): code -> (meaning, what to fix).
ISSUE_CODES: dict[str, tuple[str, str]] = {
    "EMPTY_FILE": ("an input file is empty", "export it again"),
    "CORRUPT_FILE": (
        "a Parquet file cannot be read (truncated, corrupt pages, or not Parquet)",
        "export it again",
    ),
    "NOT_A_FILE": (
        "a directory, FIFO, device or socket where a file is expected",
        "give a regular file (a link to one is fine)",
    ),
    "JSON_TOO_LARGE": (
        "the JSON files of a run exceed a sixteenth of the memory budget",
        "send usage at scale as a usage table, split the run, or raise BULK_RATING_MEMORY_LIMIT",
    ),
    "JSON_TOO_DEEP": (
        "a JSON document nests deeper than the parser's limit (about 1,000 levels)",
        "follow the documented shape (at most 7 levels)",
    ),
    "HEADER_TOO_LARGE": (
        "a usage table has more than 256 columns, or a CSV header line over 64 KiB",
        "export only the documented columns",
    ),
    "INVALID_ENCODING": ("a text file is not UTF-8", "export it as UTF-8"),
    "MALFORMED_CSV": (
        "a CSV row has more or fewer fields than the header",
        "fix the quoting or the row",
    ),
    "MISSING_COLUMN": ("a usage table lacks a required column", "add the column"),
    "UNKNOWN_COLUMN": (
        "a usage table has a column the format does not have (often a typo)",
        "rename or drop it",
    ),
    "DUPLICATE_COLUMN": ("a usage table names a column twice", "drop one"),
    "INVALID_COLUMN_TYPE": (
        "a Parquet column has a type the column cannot have",
        "write the documented type",
    ),
    "SCHEMA_MISMATCH": (
        "the files of one usage table have different columns or types",
        "export them alike",
    ),
    "INVALID_COMMIT": (
        "a commit or credit lacks what it needs (segments, amounts, a postpaid invoice schedule)",
        "see the commit rules",
    ),
    "INVALID_OVERRIDE": ("a contract override lacks what its type needs", "see the override rules"),
    "INVALID_JSON": ("a file is not valid JSON", "fix the syntax at the reported line and column"),
    "DUPLICATE_KEY": (
        "a JSON object names one key twice (which value was meant cannot be known)",
        "keep one of them",
    ),
    "INVALID_SHAPE": (
        "a JSON document is not an object of the expected shape",
        "follow the documented shape",
    ),
    "MISSING_FIELD": ("a required field is absent", "add the field"),
    "UNKNOWN_FIELD": (
        "a field that the shape does not have (often a typo)",
        "remove or correct it",
    ),
    "INVALID_VALUE": (
        "a value of the wrong type or out of its allowed set",
        "use a documented value",
    ),
    "INVALID_NUMBER": ("not a finite number (NaN, Infinity, text)", "write a plain decimal number"),
    "INVALID_TIMESTAMP": (
        "not an RFC 3339 timestamp, finer than a microsecond, or outside the years 1-9999 in UTC",
        "write e.g. 2024-06-01T00:00:00Z",
    ),
    "TIMESTAMP_WITHOUT_OFFSET": (
        "a timestamp without a UTC offset",
        "add Z or an offset such as +02:00",
    ),
    "UNKNOWN_TAG": (
        "an override, commit or credit names a tag that no product has (it would select nothing)",
        "fix the tag or tag the products",
    ),
    "DUPLICATE_ID": ("two objects of one kind share an id", "give each object its own id"),
    "CATALOG_CONFLICT": (
        "an id already stored with different content",
        "use a new id; stored objects are immutable",
    ),
    "UNKNOWN_CUSTOMER": ("customer id not in the catalog", "add the customer or fix the id"),
    "UNKNOWN_CONTRACT": (
        "contract id not in contracts.json or the database",
        "add the contract or fix the id",
    ),
    "UNKNOWN_PRODUCT": ("product id not in the catalog", "add the product or fix the id"),
    "UNKNOWN_CREDIT_TYPE": (
        "credit type id not built in nor in the catalog",
        "add the credit type or fix the id",
    ),
    "UNKNOWN_RATE_CARD": ("rate card id not in the catalog", "add the rate card or fix the id"),
    "CONTRACT_CUSTOMER_MISMATCH": (
        "the contract belongs to another customer",
        "fix customer_id or contract_id",
    ),
    "INVALID_RATE": (
        "a rate lacks its price or tiers, or mixes them",
        "FLAT needs price; TIERED needs tiers",
    ),
    "RATE_OVERLAP": (
        "two rates of one product and pricing group overlap in time",
        "end one before the next starts",
    ),
    "INVALID_PERIOD": ("start is not before end", "fix the dates"),
    "INVOICE_OUTSIDE_CONTRACT": (
        "the invoice period is not within the contract",
        "fix the period or the contract dates",
    ),
    "INVOICE_AFTER_GENERATION_START": (
        "the invoice ends after invoice_generation_starting_at (those periods are generated)",
        "import only periods before generation starts",
    ),
    "INVOICE_OVERLAP": (
        "two invoices of one contract and credit type overlap in the batch",
        "remove one",
    ),
    "INVOICE_OVERLAPS_STORED": (
        "the invoice overlaps an invoice already stored",
        "void it first or drop this one",
    ),
    "LINE_OUTSIDE_INVOICE": ("a line's period is not within its invoice", "fix the line dates"),
    "QUANTITY_AND_SUBTOTALS": ("a line has both quantity and subtotals_with_quantity", "keep one"),
    "NO_QUANTITY": ("a line has neither quantity nor subtotals_with_quantity", "add one"),
    "MISSING_GRANULARITY": (
        "subtotals given but the invoice has no breakdown_granularity",
        "set HOUR or DAY",
    ),
    "WINDOW_OUTSIDE_LINE": ("a subtotal window is not within its line", "fix the window dates"),
    "WINDOW_WRONG_WIDTH": (
        "a window is not exactly one hour or one day as its granularity says",
        "fix the window",
    ),
    "WINDOW_NOT_ALIGNED": (
        "a window does not start on a UTC hour or day boundary",
        "align the window",
    ),
    "WINDOW_OVERLAP": ("two windows of one line overlap", "remove the overlap"),
    "CONFLICTING_DUPLICATE": (
        "rows of one line for the same window that disagree (e.g. in quantity)",
        "keep the right one",
    ),
    "DUPLICATE_ROW": (
        "not a problem: an exact copy of another row, collapsed and priced once",
        "nothing (counted in the run report)",
    ),
    "NEGATIVE_QUANTITY": ("a quantity below zero", "historical usage is never negative"),
    "TOO_MANY_DECIMALS": (
        "more decimals than allowed (quantity and tier size 9, price 10, any number 23)",
        "round in the source system",
    ),
    "NUMBER_TOO_LARGE": (
        "a number too large: a quantity or tier size of 10^12 or more, a price of 10^6 or more,"
        " an amount or invoice total of 10^15 or more, any number of 10^15 or more",
        "check units",
    ),
    "NO_RATE": (
        "no rate on the contract's rate card at the window's time",
        "add a rate or fix the product",
    ),
    "PRODUCT_NOT_ENTITLED": ("the rate in effect is not entitled", "entitle the product"),
    "CREDIT_TYPE_MISMATCH": (
        "the rate is priced in another credit type than the invoice",
        "fix credit_type_id",
    ),
    "QUANTITY_SPANS_RATE_CHANGE": (
        "a plain quantity line spans a rate change",
        "send subtotals_with_quantity so each window gets its own rate",
    ),
}
