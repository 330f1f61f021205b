"""The catalog and contracts: what is stored of them, and what a run checks against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bulk_rating import lazy
from bulk_rating.errors import (
    CatalogConflictError,
)

if TYPE_CHECKING:
    import polars as pl

    from bulk_rating import models
    from bulk_rating.models import Contract
else:
    # imported when a method first needs them (the analysts' `sql` command never does)
    pl = lazy.Module("polars")
    models = lazy.Module("bulk_rating.models")

from bulk_rating.store.base import _SEARCHED, CATALOG_ID_COLUMNS, Model, StoreBase, rate_card_in_use


class CatalogQueries(StoreBase):
    def stored_bodies(self, table: str, id_column: str) -> dict[str, str | None]:
        return dict(self.con.execute(f"SELECT {id_column}, body FROM {table}").fetchall())

    def contract_refs(self) -> pl.DataFrame:
        return self.frame(
            """SELECT contract_id, customer_id, rate_card_id, starting_at, ending_before,
                      coalesce(invoice_generation_starting_at, starting_at) AS generation_starts_at
               FROM contracts"""
        )

    def models(self, table: str, id_column: str, model: type[Model]) -> dict[str, Model]:
        """Stored catalog objects as models, from the bodies they were given as."""
        rows = self.con.execute(
            f"SELECT {id_column}, body FROM {table} WHERE body IS NOT NULL"
        ).fetchall()
        return {key: model.model_validate_json(body) for key, body in rows}

    def contract_models(self) -> list[Contract]:
        """The stored contracts as models (their schedules give the billing periods)."""
        return [
            models.Contract.model_validate_json(body)
            for (body,) in self.con.execute(
                "SELECT body FROM contracts ORDER BY contract_id"
            ).fetchall()
        ]

    def fiat_credit_types(self) -> dict[str, str]:
        return dict(
            self.con.execute("SELECT rate_card_id, fiat_credit_type_id FROM rate_cards").fetchall()
        )

    def next_rate_key(self) -> int:
        return int(self.scalar("SELECT coalesce(max(rate_key), -1) + 1 FROM contract_rates"))

    def catalog_objects(
        self,
        table: str,
        *,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        search: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stored catalog objects of one kind (`credit_types`, `customers`, `products`,
        `rate_cards`) in the order they were stored (their run, then id), each with its `id`,
        `body` (as given, canonical JSON; null for the built-in USD), `created_at` (when the run
        that stored it started) and `created_by` (what that run read). `ids`: only those;
        `search`: only those whose name or id holds it, whatever the case."""
        id_column = CATALOG_ID_COLUMNS[table]  # a known table, never text from a request
        return self.rows(
            f"""SELECT o.{id_column} AS id, o.name, o.body, r.started_at AS created_at,
                       r.inputs[1] AS created_by
                FROM {table} o LEFT JOIN _runs r ON r.run_id = o.run_id
                WHERE ($all OR list_contains($ids, o.{id_column})) AND {_SEARCHED.format(id_column)}
                ORDER BY o.run_id NULLS FIRST, o.{id_column}
                LIMIT $limit OFFSET $offset""",
            {
                "all": ids is None,
                "ids": list(ids or []),
                "limit": limit if limit is not None else 2**62,
                "offset": offset,
                "search": search.lower() if search else None,
            },
        )

    def count_catalog_objects(self, table: str, search: str | None = None) -> int:
        """How many objects of one kind are stored (with `search`: hold it in name or id)."""
        id_column = CATALOG_ID_COLUMNS[table]
        return int(
            self.scalar(
                f"SELECT count(*) FROM {table} o WHERE {_SEARCHED.format(id_column)}",
                {"search": search.lower() if search else None},
            )
            or 0
        )

    def rate_card_contracts(self, rate_card_id: str) -> list[str]:
        """The stored contracts on a rate card."""
        return [
            contract
            for (contract,) in self.con.execute(
                "SELECT contract_id FROM contracts WHERE rate_card_id = ? ORDER BY 1",
                [rate_card_id],
            ).fetchall()
        ]

    def replace_rate_card(
        self, rate_card_id: str, body: str, rates: pl.DataFrame, run_id: int
    ) -> None:
        """A new version of an unused rate card: its body and all its rates replaced (its other
        columns are those of the body and do not change; only rates are added). DML only, inside
        the run's transaction; refused when a stored contract uses the card, since the
        contract's effective rates were computed from it (a change would reprice history)."""
        users = self.rate_card_contracts(rate_card_id)
        if users:
            raise CatalogConflictError(rate_card_in_use(rate_card_id, users))
        self.con.execute(
            "UPDATE rate_cards SET body = ? WHERE rate_card_id = ?", [body, rate_card_id]
        )
        self.con.execute("DELETE FROM rates WHERE rate_card_id = ?", [rate_card_id])
        self.insert("rates", rates.with_columns(run_id=pl.lit(run_id)))

    def credit_type_names(self) -> dict[str, str]:
        rows = self.con.execute("SELECT credit_type_id, name FROM credit_types").fetchall()
        return {str(key): str(name) for key, name in rows}

    def has_customer(self, customer_id: str) -> bool:
        return bool(
            self.scalar("SELECT count(*) FROM customers WHERE customer_id = ?", [customer_id])
        )

    def customer_contracts(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's contracts by start and id: the body each was created with, and when it
        was stored (its run's start)."""
        return self.rows(
            """SELECT c.contract_id, c.body, r.started_at AS created_at
               FROM contracts c LEFT JOIN _runs r USING (run_id)
               WHERE c.customer_id = $customer ORDER BY c.starting_at, c.contract_id""",
            {"customer": customer_id},
        )

    def names(self, table: str) -> dict[str, str]:
        """Id to name of the products or the credit types."""
        id_column = {"products": "product_id", "credit_types": "credit_type_id"}[table]
        return dict(self.con.execute(f"SELECT {id_column}, name FROM {table}").fetchall())

    def has_credit_type(self, credit_type_id: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM credit_types WHERE credit_type_id = ?", [credit_type_id]
            )
        )
