"""The DuckDB store: the only code that touches DuckDB, in parts (`ls store/`).

`base.py` is the connection: opening (and refusing what is no store), schema and migrations,
transactions, frames in and out, a run's working tables and its partitions of contracts. Each
other module holds the statements of one part of what is stored: `catalog.py` (catalog and
contracts), `rating.py` (the rating kernel's statements), `ledger.py` (commits and credits),
`runs.py` (runs, their results, the API's kept answers), `invoices.py` (invoices and
breakdowns as the API reads them), `outbox.py` (closing periods, billing providers),
`reconciliation.py`, `buckets.py` (a run rated in buckets on other processes: snapshot, effects). Services and the kernel call these by name: no caller passes SQL in.

A run is: schema first (DDL, outside any run), then one transaction that writes the catalog,
contracts, drafts and the priced history, then a checkpoint. A preview runs the very same
statements against a throwaway in-memory database seeded from the file (opened read-only), so
preview and import cannot drift apart and the file is never touched.
"""

from __future__ import annotations

from bulk_rating.store.base import (
    SCHEMA_VERSION,
    STORAGE_COMPATIBILITY,
    Limits,
    StoreBase,
    Streamed,
    rate_card_in_use,
)
from bulk_rating.store.buckets import BucketStatements
from bulk_rating.store.catalog import CatalogQueries
from bulk_rating.store.invoices import InvoiceQueries
from bulk_rating.store.ledger import LedgerQueries
from bulk_rating.store.outbox import OutboxQueries
from bulk_rating.store.rating import RatingStatements
from bulk_rating.store.reconciliation import ReconciliationQueries
from bulk_rating.store.runs import RunQueries

__all__ = [
    "SCHEMA_VERSION",
    "STORAGE_COMPATIBILITY",
    "Limits",
    "Store",
    "Streamed",
    "rate_card_in_use",
]


class Store(
    CatalogQueries,
    BucketStatements,
    RatingStatements,
    LedgerQueries,
    RunQueries,
    InvoiceQueries,
    OutboxQueries,
    ReconciliationQueries,
    StoreBase,
):
    """One store: its connection (StoreBase) with the statements of each part."""
