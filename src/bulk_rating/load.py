"""Input files -> models and long frames. The only module that reads input files.

A data set is a directory holding any of `catalog.json`, `contracts.json` and `invoices.json`, or a
single invoices file whose catalog and contracts are already stored. Every problem found while
reading becomes a row of the issues frame; nothing here raises for a user's mistake, except a
path that does not exist at all (a usage error).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from pydantic import BaseModel, TypeAdapter, ValidationError

from bulk_rating import frames
from bulk_rating.errors import UsageError
from bulk_rating.frames import canonical_json
from bulk_rating.models import Catalog, Contract, HistoricalInvoicesRequest

CATALOG_FILE = "catalog.json"
CONTRACTS_FILE = "contracts.json"
INVOICES_FILE = "invoices.json"

PYDANTIC_CODES = {
    "missing": "MISSING_FIELD",
    "extra_forbidden": "UNKNOWN_FIELD",
    "timezone_aware": "TIMESTAMP_WITHOUT_OFFSET",
    "datetime_parsing": "INVALID_TIMESTAMP",
    "datetime_from_date_parsing": "INVALID_TIMESTAMP",
    "datetime_type": "INVALID_TIMESTAMP",
    "decimal_parsing": "INVALID_NUMBER",
    "decimal_type": "INVALID_NUMBER",
    "finite_number": "INVALID_NUMBER",
    "model_type": "INVALID_SHAPE",
    "model_attributes_type": "INVALID_SHAPE",
    "list_type": "INVALID_SHAPE",
    "dict_type": "INVALID_SHAPE",
}

Model = TypeVar("Model")


@dataclass
class Dataset:
    """What one run read: models (None when absent or unreadable), frames, and problems."""

    catalog: Catalog | None = None
    contracts: list[Contract] | None = None
    request: HistoricalInvoicesRequest | None = None
    invoices: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.INVOICES))
    lines: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.LINES))
    windows: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.WINDOWS_RAW))
    issues: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def preview_requested(self) -> bool:
        return self.request is not None and self.request.preview

    def content_hash(self) -> str:
        """sha256 of the normalized input: same content, same hash, whatever the file names."""
        digest = hashlib.sha256()
        for part in (self.catalog, self.request):
            digest.update(_canonical(part).encode())
        for contract in self.contracts or []:
            digest.update(_canonical(contract).encode())
        return digest.hexdigest()


def _canonical(model: BaseModel | None) -> str:
    if model is None:
        return "null"
    payload = model.model_dump(
        mode="json", exclude={"preview"} if hasattr(model, "preview") else None
    )
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def load_dataset(paths: Sequence[Path]) -> Dataset:
    dataset = Dataset()
    for path in paths:
        if not path.exists():
            raise UsageError(f"no such file or directory: {path}", path=str(path))
        if path.is_dir():
            files = [path / name for name in (CATALOG_FILE, CONTRACTS_FILE, INVOICES_FILE)]
            present = [f for f in files if f.is_file()]
            if not present:
                raise UsageError(
                    f"{path} holds none of {CATALOG_FILE}, {CONTRACTS_FILE}, {INVOICES_FILE}",
                    path=str(path),
                )
            _read_catalog(dataset, files[0])
            _read_contracts(dataset, files[1])
            _read_invoices(dataset, files[2])
        else:
            _read_invoices(dataset, path)
    return dataset


def _parse(dataset: Dataset, path: Path, adapter: TypeAdapter[Model]) -> Model | None:
    """Read one JSON file into a model; every problem becomes an issue row."""
    dataset.sources.append(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        _issue(dataset, path, "INVALID_JSON", f"{path.name} is not UTF-8 text: {exc.reason}")
        return None
    try:
        # Numbers go straight to Decimal: never through a float. NaN/Infinity become Decimal too,
        # so the model rejects them with INVALID_NUMBER instead of a parse error.
        document = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        _issue(dataset, path, "INVALID_JSON", f"{path.name} is not valid JSON ({where}): {exc.msg}")
        return None
    try:
        return adapter.validate_python(document)
    except ValidationError as exc:
        for error in exc.errors():
            _pydantic_issue(dataset, path, error)
        return None


def _read_catalog(dataset: Dataset, path: Path) -> None:
    if path.is_file():
        dataset.catalog = _parse(dataset, path, TypeAdapter(Catalog))


def _read_contracts(dataset: Dataset, path: Path) -> None:
    if path.is_file():
        dataset.contracts = _parse(dataset, path, TypeAdapter(list[Contract]))


def _read_invoices(dataset: Dataset, path: Path) -> None:
    if not path.is_file():
        return
    request = _parse(dataset, path, TypeAdapter(HistoricalInvoicesRequest))
    if request is None:
        return
    if dataset.request is not None:
        offset = len(dataset.request.invoices)
        merged = [*dataset.request.invoices, *request.invoices]
        request = HistoricalInvoicesRequest(
            invoices=merged, preview=dataset.request.preview or request.preview
        )
    else:
        offset = 0
    dataset.request = request
    invoices, lines, windows = request_frames(request, str(path), offset)
    dataset.invoices = pl.concat([dataset.invoices, invoices])
    dataset.lines = pl.concat([dataset.lines, lines])
    dataset.windows = pl.concat([dataset.windows, windows])


def _text(value: Decimal | None) -> str | None:
    # format(..., "f") never writes an exponent, so precision checks can read the text.
    return None if value is None else format(value, "f")


def request_frames(
    request: HistoricalInvoicesRequest, source: str, offset: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Flatten a createHistoricalInvoices body into the invoices, lines and windows frames."""
    invoice_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    window_rows: list[dict[str, Any]] = []
    for i, invoice in enumerate(request.invoices, start=offset):
        invoice_rows.append(
            {
                "source": source,
                "invoice_index": i,
                "customer_id": invoice.customer_id,
                "contract_id": invoice.contract_id,
                "credit_type_id": invoice.credit_type_id,
                "inclusive_start": invoice.inclusive_start_date,
                "exclusive_end": invoice.exclusive_end_date,
                "issued_at": invoice.issue_date,
                "billable_status": invoice.billable_status,
                "granularity": invoice.breakdown_granularity,
                "custom_fields": json.dumps(invoice.custom_fields, sort_keys=True),
            }
        )
        for j, line in enumerate(invoice.usage_line_items):
            subtotals = line.subtotals_with_quantity
            line_rows.append(
                {
                    "invoice_index": i,
                    "line_index": j,
                    "product_id": line.product_id,
                    "inclusive_start": line.inclusive_start_date,
                    "exclusive_end": line.exclusive_end_date,
                    "quantity": _text(line.quantity),
                    "subtotal_count": None if subtotals is None else len(subtotals),
                    "pricing_group_values": canonical_json(line.pricing_group_values),
                    "presentation_group_values": canonical_json(line.presentation_group_values),
                }
            )
            window_rows.extend(
                {
                    "invoice_index": i,
                    "line_index": j,
                    "window_index": k,
                    "inclusive_start": window.inclusive_start_date,
                    "exclusive_end": window.exclusive_end_date,
                    "quantity": _text(window.quantity),
                }
                for k, window in enumerate(subtotals or [])
            )
    return (
        pl.DataFrame(invoice_rows, schema=frames.INVOICES),
        pl.DataFrame(line_rows, schema=frames.LINES),
        pl.DataFrame(window_rows, schema=frames.WINDOWS_RAW),
    )


def _issue(dataset: Dataset, path: Path, code: str, message: str, **where: Any) -> None:
    dataset.issues.append({"source": str(path), "code": code, "message": message, **where})


def _pydantic_issue(dataset: Dataset, path: Path, error: Any) -> None:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    where: dict[str, Any] = {}
    if path.name != CATALOG_FILE and loc and loc[0] == "invoices":
        # invoices[i].usage_line_items[j].subtotals_with_quantity[k].field
        indexes = [part for part in loc if isinstance(part, int)]
        for name, value in zip(
            ("invoice_index", "line_index", "window_index"), indexes, strict=False
        ):
            where[name] = value
    named = [str(part) for part in loc if isinstance(part, str)]
    where["field"] = named[-1] if named else None
    location = _dotted(loc)
    code = PYDANTIC_CODES.get(error["type"], "INVALID_VALUE")
    detail = error["msg"]
    if code == "UNKNOWN_FIELD":
        detail = "unknown field (not in the documented shape)"
    _issue(dataset, path, code, f"{location or 'document'}: {detail}", **where)


def _dotted(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
