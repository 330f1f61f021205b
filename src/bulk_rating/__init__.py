"""bulk_rating: import billing history into a usage-based billing ledger."""

__version__ = "0.1.0"
