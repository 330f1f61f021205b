"""bulk_rating: import billing history into a usage-based billing ledger.

The Python API is the service layer (`bulk_rating.services`), one function per use case:

    from bulk_rating import import_history
    report = import_history("data/samples/acme", db="history.duckdb", as_of="2024-08-15")

Its names load on first use, so that `bulk-rating` starts (and handles Ctrl-C) before the heavy
libraries are imported.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Settings",
    "close_periods",
    "customer_balances",
    "export_invoices",
    "import_documents",
    "import_history",
    "nightly",
    "query",
    "query_rows",
    "reconcile_invoices",
]


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from bulk_rating.settings import Settings

        return Settings
    if name in __all__:
        from bulk_rating import services

        return getattr(services, name)
    raise AttributeError(f"module 'bulk_rating' has no attribute {name!r}")
