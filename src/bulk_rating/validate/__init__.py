"""Validation: every rule, all problems of a run in one issues frame (never the first only).

- `batch`: a JSON batch's invoices, lines and windows, and every run's invoices (Polars);
- `catalog`: the catalog and contracts (plain Python over a handful of models);
- `rows`: every usage row, JSON or table, as SQL column expressions checked in one scan.
"""

from bulk_rating.validate.batch import References, issue_frame, validate_batch, validate_invoices
from bulk_rating.validate.catalog import validate_catalog
from bulk_rating.validate.rows import (
    HOUR_US,
    KEPT_DRAFT_REPEATS,
    LINES_COUNTED,
    UNIQUE_ROWS,
    dropped_copies_sql,
    keys_unique_sql,
    line_weeks_sql,
    lines_sql,
    repeated_windows_sql,
    row_issues_sql,
    row_rules,
    rows_name_periods,
    same_row,
)

__all__ = [
    "HOUR_US",
    "KEPT_DRAFT_REPEATS",
    "LINES_COUNTED",
    "UNIQUE_ROWS",
    "References",
    "dropped_copies_sql",
    "issue_frame",
    "keys_unique_sql",
    "line_weeks_sql",
    "lines_sql",
    "repeated_windows_sql",
    "row_issues_sql",
    "row_rules",
    "rows_name_periods",
    "same_row",
    "validate_batch",
    "validate_catalog",
    "validate_invoices",
]
