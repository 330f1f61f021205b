"""Input files -> models and long frames. The only module that reads input files.

A data set is a directory holding any of `catalog.json`, `contracts.json` and `invoices.json`, or a
single invoices file whose catalog and contracts are already stored. Every problem found while
reading becomes a row of the issues frame; nothing here raises for a user's mistake, except a
path that does not exist, cannot be opened (permissions) or is neither a file nor a directory
(usage errors).

Only regular files are read (or links to them): a directory, FIFO, device or socket where a file
is expected is NOT_A_FILE, never opened. What one file may hold is limited (README "Limits"):
the JSON files of a run by the memory budget, a JSON document's nesting, a usage table's header.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, TypeAdapter, ValidationError

from bulk_rating import frames
from bulk_rating.errors import UsageError
from bulk_rating.frames import canonical_json
from bulk_rating.models import (
    SUB_MICROSECOND,
    USD_CENTS_ID,
    Catalog,
    Contract,
    HistoricalInvoice,
    HistoricalInvoicesRequest,
    Strict,
)
from bulk_rating.money import QUANTITY_SQL

CATALOG_FILE = "catalog.json"
CONTRACTS_FILE = "contracts.json"
INVOICES_FILE = "invoices.json"
INVOICES_NDJSON = "invoices.ndjson"
TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv"}
# A usage table's header: the documented columns are 14 and a `pricing.<key>` or
# `presentation.<key>` column per group key; far more is a file of another kind.
MAX_COLUMNS = 256
MAX_HEADER_BYTES = 64 * 1024
# Rows of one rule listed by name in a file's issues; the others are counted in one entry.
LISTED_ROWS = 1000

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
    "number_too_large": "NUMBER_TOO_LARGE",
    "too_many_decimals": "TOO_MANY_DECIMALS",
    "datetime_out_of_range": "INVALID_TIMESTAMP",
    "datetime_sub_microsecond": "INVALID_TIMESTAMP",
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
    windows: pl.DataFrame = field(default_factory=lambda: frames.empty(frames.WINDOWS))
    tables: list[UsageTable] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # the file each catalog object and contract came from: (kind, id) -> path
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    # each usage file as first read, by source (the files a fingerprint stands for)
    file_states: dict[str, FileState] = field(default_factory=dict)
    # The most bytes of JSON this run reads (None: no limit), and how many it has read.
    json_limit: int | None = None
    json_read: int = 0

    _staging: Path | None = None

    def staging_dir(self) -> Path:
        """A scratch folder for staged files, removed by `close`."""
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="bulk-rating-"))
        return self._staging

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def let_go_of_models(self) -> None:
        """The catalog's and contracts' models are dropped once the run's frames are made from
        them (content_hash reads them: it is taken first)."""
        self.catalog, self.contracts, self.origins = None, None, {}

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
        # Usage tables add the sum of their rows' hashes once the rows are read (pipeline): the
        # content, whatever the files' names, order or split.
        return digest.hexdigest()

    def files_fingerprint(self, content_hash: str) -> FilesFingerprint | None:
        """A usage table run's files by their bytes (with `content_hash`, this data set's), known
        before any row is read; None for input without one usage table, with problems already
        found, or whose files changed since they were first read (such a run is checked the long
        way)."""
        if self.issues or self.request is not None or len(self.tables) != 1:
            return None
        table = self.tables[0]
        return FilesFingerprint.of(
            {source: self.file_states[source] for source in table.sources},
            "csv" if table.staged else "parquet",
            content_hash,
        )


# Bytes read at a time when hashing a file (large reads: the hash, not the calls, is the cost).
HASH_CHUNK = 8 << 20

# A file as it was first read: device, inode, size and modification time (ns).
FileState = tuple[int, int, int, int]


@dataclass(frozen=True)
class FilesFingerprint:
    """The sha256 of a usage table's files, the same bytes whatever their names or order (each
    file's digest, sorted), with the table's format and the run's catalog and contracts (their
    content hash). The same fingerprint means the same rows: the same input as the run that
    recorded it, whatever the as-of date or partitions."""

    digest: str
    # Each file as it was first read: one replaced or written to since (while the run reads it)
    # is no longer what the digest says, and the run records no fingerprint.
    states: dict[str, FileState]

    @classmethod
    def of(
        cls, states: Mapping[str, FileState], fmt: str, content_hash: str
    ) -> FilesFingerprint | None:
        digests = []
        for source, first in states.items():
            try:
                with Path(source).open("rb") as handle:
                    if _state(os.fstat(handle.fileno())) != first:
                        return None
                    digests.append(_sha256_of(handle))
            except OSError as exc:
                raise UsageError(f"cannot read {source}: {exc.strerror}", path=source) from exc
        whole = hashlib.sha256(f"usage files v1|{fmt}|{content_hash}".encode())
        for digest in sorted(digests):
            whole.update(f"|{digest}".encode())
        return cls(whole.hexdigest(), dict(states))

    def unchanged(self) -> bool:
        """Every file is still the one that was hashed."""
        try:
            return all(_state(Path(path).stat()) == was for path, was in self.states.items())
        except OSError:
            return False


def _sha256_of(handle: io.BufferedIOBase) -> str:
    digest, chunk = hashlib.sha256(), bytearray(HASH_CHUNK)
    view = memoryview(chunk)
    while read := handle.readinto(chunk):
        digest.update(view[:read])
    return digest.hexdigest()


def _state(status: os.stat_result) -> FileState:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _canonical(model: BaseModel | None) -> str:
    if model is None:
        return "null"
    if isinstance(model, Strict) and not hasattr(model, "preview"):
        return model.canonical
    payload = model.model_dump(
        mode="json", exclude={"preview"} if hasattr(model, "preview") else None
    )
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def load_dataset(paths: Sequence[Path], json_limit: int | None = None) -> Dataset:
    """Read `paths`; `json_limit`: the most bytes of JSON the run may read (JSON_TOO_LARGE)."""
    dataset = Dataset(json_limit=json_limit)
    try:
        for path in paths:
            matches = sorted(Path().glob(str(path))) if _is_glob(path) else [path]
            if not matches or not matches[0].exists():
                raise UsageError(f"no such file or directory: {path}", path=str(path))
            for match in matches:
                _read_path(dataset, match)
    except BaseException:
        dataset.close()  # a staged CSV's folder is not left behind
        raise
    return dataset


def _kind(path: Path) -> str:
    """`file` (a regular file, or a link to one), `directory`, `missing`, or what else it is."""
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        return "broken link" if path.is_symlink() else "missing"
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "socket" if stat.S_ISSOCK(mode) else "special file"


def _regular(dataset: Dataset, path: Path) -> bool:
    """True when `path` is a regular file this process can open; an issue (NOT_A_FILE) when it
    is something else, never opened (a FIFO would block, a device never end); a usage error
    when it cannot be opened (permissions)."""
    kind = _kind(path)
    if kind != "file":
        dataset.sources.append(str(path))
        _issue(
            dataset,
            path,
            "NOT_A_FILE",
            f"{path} is a {kind}, not a regular file; only regular files (or links to them) are read",
        )
        return False
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
    return True


def _is_glob(path: Path) -> bool:
    return any(c in str(path) for c in "*?[")


def _read_path(dataset: Dataset, path: Path) -> None:
    kind = _kind(path)
    if kind not in ("file", "directory"):
        raise UsageError(
            f"{path} is a {kind}: give a data set directory or a regular file", path=str(path)
        )
    if kind == "file":
        if not _regular(dataset, path):
            return
        if path.suffix in TABLE_SUFFIXES:
            _read_tables(dataset, [path])
        elif path.suffix == ".ndjson":
            _read_ndjson(dataset, path)
        else:
            _read_invoices(dataset, path)
        return
    files = [path / name for name in (CATALOG_FILE, CONTRACTS_FILE, INVOICES_FILE, INVOICES_NDJSON)]
    tables = _table_files(path)
    if not any(os.path.lexists(f) for f in files) and not tables:
        raise UsageError(
            f"{path} holds none of {CATALOG_FILE}, {CONTRACTS_FILE}, {INVOICES_FILE},"
            f" {INVOICES_NDJSON} or usage tables (*.parquet, *.csv, usage/)",
            path=str(path),
        )
    _read_catalog(dataset, files[0])
    _read_contracts(dataset, files[1])
    _read_invoices(dataset, files[2])
    if os.path.lexists(files[3]) and _regular(dataset, files[3]):
        _read_ndjson(dataset, files[3])
    if tables:
        _read_tables(dataset, tables)


def _table_files(directory: Path) -> list[Path]:
    """Usage tables of a data set: `usage/` (any depth) or table files beside the JSON files."""
    found = [p for p in directory.glob("*") if p.suffix in TABLE_SUFFIXES]
    usage = directory / "usage"
    if usage.is_dir():
        found += [p for p in usage.rglob("*") if p.suffix in TABLE_SUFFIXES]
    return sorted(found)


def _json_text(dataset: Dataset, path: Path, code: str) -> str | None:
    """A JSON file's text, within what the run may read (JSON_TOO_LARGE); `code` for a file
    that is not UTF-8."""
    size = path.stat().st_size
    if dataset.json_limit is not None and dataset.json_read + size > dataset.json_limit:
        _issue(
            dataset,
            path,
            "JSON_TOO_LARGE",
            f"{path.name} ({size:,} bytes) takes the run's JSON past {dataset.json_limit:,} bytes,"
            " a sixteenth of the memory budget (BULK_RATING_MEMORY_LIMIT); send usage at scale as"
            " a usage table (Parquet or CSV), split it into runs, or raise the budget",
        )
        return None
    dataset.json_read += size
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        _issue(dataset, path, code, f"{path.name} is not UTF-8 text: {exc.reason}")
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc


def parse_json(text: str) -> Any:
    """JSON with every number a Decimal, never through a float or Python's bounded int parsing
    (NaN and Infinity too, so the models reject them with INVALID_NUMBER instead of a parse
    error), and an object naming a key twice refused (DuplicateKeyError) where a plain parser
    silently keeps the last value. Nesting past the parser's depth raises RecursionError."""
    return json.loads(
        text,
        parse_float=Decimal,
        parse_int=Decimal,
        parse_constant=Decimal,
        object_pairs_hook=_unique_keys,
    )


TOO_DEEP = "nests deeper than the parser's limit (about 1,000 levels; the documented shapes nest at most 7)"


def _parse(dataset: Dataset, path: Path, adapter: TypeAdapter[Model]) -> Model | None:
    """Read one JSON file into a model; every problem becomes an issue row."""
    dataset.sources.append(str(path))
    text = _json_text(dataset, path, "INVALID_JSON")
    if text is None:
        return None
    try:
        document = parse_json(text)
    except DuplicateKeyError as exc:
        _issue(dataset, path, "DUPLICATE_KEY", str(exc), field=exc.key)
        return None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        _issue(dataset, path, "INVALID_JSON", f"{path.name} is not valid JSON ({where}): {exc.msg}")
        return None
    except RecursionError:
        _issue(dataset, path, "JSON_TOO_DEEP", f"{path.name} {TOO_DEEP}")
        return None
    del text  # the document alone from here (it is validated into models)
    return _validated(dataset, path, adapter, document)


def _validated(
    dataset: Dataset, source: Path, adapter: TypeAdapter[Model], document: Any
) -> Model | None:
    try:
        return adapter.validate_python(document)
    except ValidationError as exc:
        for error in exc.errors():
            _pydantic_issue(dataset, source, error)
        return None


def documents_dataset(catalog: Any = None, contracts: Any = None, invoices: Any = None) -> Dataset:
    """A data set from documents already in memory (parsed JSON, e.g. dicts with Decimal
    numbers, or models): the same shapes, rules and problems as the files `catalog.json`,
    `contracts.json` and `invoices.json`; problems name the document by its kind."""
    dataset = Dataset()
    if catalog is not None:
        given = _document(dataset, "catalog", TypeAdapter(Catalog), catalog)
        if given is not None:
            _add_catalog(dataset, Path("catalog"), given)
    if contracts is not None:
        listed = _document(dataset, "contracts", TypeAdapter(list[Contract]), contracts)
        if listed is not None:
            _add_contracts(dataset, Path("contracts"), listed)
    if invoices is not None:
        request = _document(dataset, "invoices", TypeAdapter(HistoricalInvoicesRequest), invoices)
        if request is not None:
            _add_invoices(dataset, Path("invoices"), request)
    return dataset


def parse_document(
    name: str, adapter: TypeAdapter[Model], document: Any
) -> tuple[Model | None, list[dict[str, Any]]]:
    """One document in memory read into its shape: the model, or None and its problems (the
    rows of an issues frame, named after `name`), by the same rules as a data set's documents."""
    dataset = Dataset()
    model = _document(dataset, name, adapter, document)
    return model, dataset.issues


def _document(
    dataset: Dataset, name: str, adapter: TypeAdapter[Model], document: Any
) -> Model | None:
    dataset.sources.append(name)
    if isinstance(document, BaseModel):
        document = document.model_dump()
    elif isinstance(document, list):
        document = [d.model_dump() if isinstance(d, BaseModel) else d for d in document]
    return _validated(dataset, Path(name), adapter, document)


def _present(dataset: Dataset, path: Path) -> bool:
    """A data set's file to read: there, and a regular file (else NOT_A_FILE)."""
    return os.path.lexists(path) and _regular(dataset, path)


class DuplicateKeyError(ValueError):
    """An object names one key twice: which value was meant cannot be known."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key `{key}` appears more than once in one object")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise DuplicateKeyError(next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
    return document


CATALOG_KINDS = ("credit_types", "customers", "products", "rate_cards")


def _read_catalog(dataset: Dataset, path: Path) -> None:
    if _present(dataset, path):
        catalog = _parse(dataset, path, TypeAdapter(Catalog))
        if catalog is not None:
            _add_catalog(dataset, path, catalog)


def _add_catalog(dataset: Dataset, path: Path, catalog: Catalog) -> None:
    if dataset.catalog is None:
        dataset.catalog = Catalog()
    for kind in CATALOG_KINDS:
        kept = getattr(dataset.catalog, kind)
        kept += _merged(dataset, path, kind, kept, getattr(catalog, kind))


def _read_contracts(dataset: Dataset, path: Path) -> None:
    if _present(dataset, path):
        contracts = _parse(dataset, path, TypeAdapter(list[Contract]))
        if contracts is not None:
            _add_contracts(dataset, path, contracts)


def _add_contracts(dataset: Dataset, path: Path, contracts: list[Contract]) -> None:
    if dataset.contracts is None:
        dataset.contracts = []
    dataset.contracts += _merged(dataset, path, "contracts", dataset.contracts, contracts)


def _merged(
    dataset: Dataset, path: Path, kind: str, kept: list[Any], given: list[Any]
) -> list[Any]:
    """What one file adds to the objects of one kind that earlier data sets of the run gave: the
    same object again is kept once; the same id with other content is a conflict, never a silent
    replacement (ids repeated inside one file are DUPLICATE_ID, found by validation)."""
    earlier = {obj.id: obj for obj in kept}
    added = []
    for obj in given:
        first = earlier.get(obj.id)
        if first is None:
            added.append(obj)
            dataset.origins.setdefault((kind, obj.id), str(path))
        elif _canonical(first) != _canonical(obj):
            _issue(
                dataset,
                path,
                "CATALOG_CONFLICT",
                f"{kind[:-1].replace('_', ' ')} `{obj.id}` differs from the one in"
                f" {dataset.origins.get((kind, obj.id), 'an earlier file')}",
                field="id",
            )
    return added


def _read_invoices(dataset: Dataset, path: Path) -> None:
    if _present(dataset, path):
        request = _parse(dataset, path, TypeAdapter(HistoricalInvoicesRequest))
        if request is not None:
            _add_invoices(dataset, path, request)


def _add_invoices(dataset: Dataset, path: Path, request: HistoricalInvoicesRequest) -> None:
    _add_request(dataset, request, str(path))


def _read_ndjson(dataset: Dataset, path: Path) -> None:
    """One createHistoricalInvoices invoice per line; a line's problems carry its line number."""
    dataset.sources.append(str(path))
    adapter = TypeAdapter(HistoricalInvoice)
    invoices: list[HistoricalInvoice] = []
    before = len(dataset.issues)
    text = _json_text(dataset, path, "INVALID_ENCODING")
    if text is None:
        return
    lines = text.splitlines()
    del text
    offset = len(dataset.request.invoices) if dataset.request else 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            document = parse_json(text)
            invoices.append(adapter.validate_python(document))
        except DuplicateKeyError as exc:
            _issue(
                dataset, path, "DUPLICATE_KEY", f"line {number}: {exc}", row=number, field=exc.key
            )
        except RecursionError:
            _issue(dataset, path, "JSON_TOO_DEEP", f"line {number} {TOO_DEEP}", row=number)
        except json.JSONDecodeError as exc:
            _issue(
                dataset,
                path,
                "INVALID_JSON",
                f"line {number} is not valid JSON (column {exc.colno}): {exc.msg}",
                row=number,
            )
        except ValidationError as exc:
            for error in exc.errors():
                error = {**error, "loc": ("invoices", offset + len(invoices), *error["loc"])}
                _pydantic_issue(dataset, path, error, row=number)
    if len(dataset.issues) == before:
        _add_request(
            dataset, HistoricalInvoicesRequest(invoices=invoices, preview=False), str(path)
        )


def _add_request(dataset: Dataset, batch: HistoricalInvoicesRequest, source: str) -> None:
    """Append a batch's invoices (and frames) to what the data set already holds."""
    offset = 0 if dataset.request is None else len(dataset.request.invoices)
    invoices, lines, windows = request_frames(batch, source, offset)
    if dataset.request is not None:
        batch = HistoricalInvoicesRequest(
            invoices=[*dataset.request.invoices, *batch.invoices],
            preview=dataset.request.preview or batch.preview,
        )
    dataset.request = batch
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
        pl.DataFrame(window_rows, schema=frames.WINDOWS),
    )


def _issue(dataset: Dataset, path: Path, code: str, message: str, **where: Any) -> None:
    dataset.issues.append({"source": str(path), "code": code, "message": message, **where})


def _pydantic_issue(dataset: Dataset, path: Path, error: Any, row: int | None = None) -> None:
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
    _issue(dataset, path, code, f"{location or 'document'}: {detail}", row=row, **where)


def _dotted(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# --- usage tables (Parquet, CSV) -----------------------------------------------------------

USAGE_REQUIRED = (
    "customer_id",
    "contract_id",
    "product_id",
    "inclusive_start_date",
    "exclusive_end_date",
    "quantity",
)
USAGE_OPTIONAL = (
    "credit_type_id",
    "invoice_inclusive_start_date",
    "invoice_exclusive_end_date",
    "issue_date",
    "breakdown_granularity",
    "pricing_group_values",
    "presentation_group_values",
    "billable_status",
)
TIMESTAMP_COLUMNS = (
    "inclusive_start_date",
    "exclusive_end_date",
    "invoice_inclusive_start_date",
    "invoice_exclusive_end_date",
    "issue_date",
)
GROUP_PREFIXES = {"pricing.": "pricing_group_values", "presentation.": "presentation_group_values"}
# What each column may be, as read: ids and enums are text; times are UTC timestamps or text
# with an offset; quantities are text, decimals, integers or floats; groups are text or nested.
ALLOWED_KINDS = {
    **{c: {"timestamp", "text"} for c in TIMESTAMP_COLUMNS},
    "quantity": {"text", "decimal", "integer", "float"},
    "pricing_group_values": {"text", "nested"},
    "presentation_group_values": {"text", "nested"},
}


@dataclass(frozen=True)
class UsageTable:
    """Usage rows in Parquet files. A CSV is first staged to Parquet, all columns text, with its
    file name and row numbers, so every row can be named in a message."""

    files: tuple[str, ...]
    kinds: dict[str, str]  # column -> text | timestamp | decimal:<scale> | integer | float | nested
    staged: bool
    sources: tuple[str, ...]  # the file each of `files` was read from (a staged CSV's own path)
    # The rows of one bucket of contracts, as a cluster handed them over (buckets.py), or a
    # table split by partition (Store.split_rows): each row carries where it was read, in
    # columns `_file_index` (into `sources`), `_row` and (from a cluster) `_source`.
    positions_given: bool = False
    # Split by partition of contracts: `files` are in folders `bucket=<k>/` of one Parquet
    # dataset, and rows_sql gives each row's `_bucket` (a partition reads its own files only).
    split: bool = False

    def kind(self, column: str) -> str | None:
        return self.kinds.get(column)


def arrow_kind(dtype: pa.DataType) -> str | None:
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    if pa.types.is_timestamp(dtype):
        return "timestamp" if dtype.tz is not None else "naive"
    if pa.types.is_decimal(dtype):
        return f"decimal:{dtype.scale}"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_map(dtype) or pa.types.is_struct(dtype):
        return "nested"
    return None


def _read_tables(dataset: Dataset, paths: list[Path]) -> None:
    """Check every table's schema (declared, not guessed); stage CSV files to Parquet."""
    by_kind: dict[str, list[Path]] = {}
    for path in paths:
        by_kind.setdefault(TABLE_SUFFIXES[path.suffix], []).append(path)
    for fmt, files in sorted(by_kind.items()):
        schemas: dict[Path, dict[str, str]] = {}
        staged: list[str] = []
        for path in files:
            if not _regular(dataset, path):
                continue
            dataset.sources.append(str(path))
            dataset.file_states[str(path)] = _state(path.stat())
            columns = (
                _parquet_columns(dataset, path) if fmt == "parquet" else _csv_columns(dataset, path)
            )
            if columns is None:
                continue
            if fmt == "csv":
                target = _stage_csv(dataset, path, list(columns))
                if target is None:
                    continue
                staged.append(target)
            schemas[path] = columns
        if not schemas or len(schemas) < len(files):
            continue
        first_path, first = next(iter(schemas.items()))
        for path, columns in schemas.items():
            if columns != first:
                _issue(
                    dataset,
                    path,
                    "SCHEMA_MISMATCH",
                    f"{path.name} has other columns or types than {first_path.name}: {_differences(first, columns)}",
                )
        if any(i["code"] == "SCHEMA_MISMATCH" for i in dataset.issues):
            continue
        dataset.tables.append(
            UsageTable(
                files=tuple(staged) if fmt == "csv" else tuple(str(p) for p in files),
                kinds=first,
                staged=fmt == "csv",
                sources=tuple(str(p) for p in files),
            )
        )


def _differences(first: dict[str, str], other: dict[str, str]) -> str:
    names = sorted(set(first) ^ set(other)) + sorted(
        c for c in set(first) & set(other) if first[c] != other[c]
    )
    return ", ".join(names)


def _header_issues(
    dataset: Dataset,
    path: Path,
    names: list[str],
    required: Sequence[str],
    optional: Sequence[str],
    prefixes: tuple[str, ...] = (),
) -> bool:
    """Duplicate, missing and unknown columns of a table file; True when there is any."""
    before = len(dataset.issues)
    for name in sorted(n for n, count in Counter(names).items() if count > 1):
        _issue(
            dataset,
            path,
            "DUPLICATE_COLUMN",
            f"{path.name}: column `{name}` appears more than once",
            field=name,
        )
    for name in required:
        if name not in names:
            _issue(
                dataset,
                path,
                "MISSING_COLUMN",
                f"{path.name}: required column `{name}` is missing",
                field=name,
            )
    expected = f"expected {', '.join(required)} and optional {', '.join([*optional, *(f'{p}<key>' for p in prefixes)])}"
    known = {*required, *optional}
    for name in names:
        if name not in known and not name.startswith(prefixes):
            _issue(
                dataset,
                path,
                "UNKNOWN_COLUMN",
                f"{path.name}: unknown column `{name}` ({expected})",
                field=name,
            )
    return len(dataset.issues) > before


def _too_many_columns(dataset: Dataset, path: Path, count: int) -> bool:
    if count <= MAX_COLUMNS:
        return False
    _issue(
        dataset,
        path,
        "HEADER_TOO_LARGE",
        f"{path.name} has {count:,} columns; a usage table has at most {MAX_COLUMNS:,}",
    )
    return True


def _check_columns(
    dataset: Dataset, path: Path, names: list[str], kinds: dict[str, str | None]
) -> dict[str, str] | None:
    """Required, known, unique columns of allowed types; None when the table cannot be read."""
    if _too_many_columns(dataset, path, len(names)):
        return None
    before = len(dataset.issues)
    _header_issues(dataset, path, names, USAGE_REQUIRED, USAGE_OPTIONAL, tuple(GROUP_PREFIXES))
    for name in names:
        kind = kinds[name]
        allowed = ALLOWED_KINDS.get(name, {"text"})
        if kind == "naive" and "timestamp" in allowed:
            _issue(
                dataset,
                path,
                "TIMESTAMP_WITHOUT_OFFSET",
                f"{path.name}: column `{name}` holds timestamps without a time zone; write them in UTC",
                field=name,
            )
        elif kind is None or kind.split(":")[0] not in allowed:
            _issue(
                dataset,
                path,
                "INVALID_COLUMN_TYPE",
                f"{path.name}: column `{name}` has an unusable type ({kind or 'unsupported'});"
                f" allowed: {', '.join(sorted(allowed))}",
                field=name,
            )
    if len(dataset.issues) > before:
        return None
    return {name: str(kinds[name]) for name in names}


def _parquet_columns(dataset: Dataset, path: Path) -> dict[str, str] | None:
    if path.stat().st_size == 0:
        _issue(dataset, path, "EMPTY_FILE", f"{path.name} is empty")
        return None
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        _issue(dataset, path, "CORRUPT_FILE", f"{path.name} is not a readable Parquet file: {exc}")
        return None
    columns = _check_columns(
        dataset, path, list(schema.names), {f.name: arrow_kind(f.type) for f in schema}
    )
    if columns is None or not _exact_to_the_microsecond(dataset, path, schema):
        return None
    return columns


def _exact_to_the_microsecond(dataset: Dataset, path: Path, schema: pa.Schema) -> bool:
    """Nanosecond timestamp columns hold whole microseconds: a finer value would be truncated
    where it is read (DuckDB keeps microseconds), so each one is an INVALID_TIMESTAMP issue
    (the first LISTED_ROWS of a column, then one entry counting the others)."""
    names = [
        f.name
        for f in schema
        if f.name in TIMESTAMP_COLUMNS and pa.types.is_timestamp(f.type) and f.type.unit == "ns"
    ]
    if not names:
        return True
    found = dict.fromkeys(names, 0)
    offset = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=names, batch_size=1 << 20):
            for name in names:
                column = batch.column(name)
                micro = pa.timestamp("us", tz=column.type.tz)
                try:
                    pc.cast(column, micro, safe=True)  # refused when a value would lose digits
                    continue
                except pa.ArrowInvalid:
                    pass
                exact = pc.equal(pc.cast(pc.cast(column, micro, safe=False), column.type), column)
                for index in pc.indices_nonzero(pc.invert(exact)).to_pylist():
                    found[name] += 1
                    if found[name] <= LISTED_ROWS:
                        shown = pc.strftime(column.slice(index, 1), format="%Y-%m-%dT%H:%M:%SZ")
                        _issue(
                            dataset,
                            path,
                            "INVALID_TIMESTAMP",
                            f"row {offset + index + 1}: `{shown[0].as_py()}` is more precise than"
                            " a microsecond, which is not supported",
                            row=offset + index + 1,
                            field=name,
                        )
            offset += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        _issue(dataset, path, "CORRUPT_FILE", f"{path.name} is not a readable Parquet file: {exc}")
        return False
    for name, count in found.items():
        if count > LISTED_ROWS:
            _issue(
                dataset,
                path,
                "INVALID_TIMESTAMP",
                f"and {count - LISTED_ROWS:,} more rows more precise than a microsecond",
                field=name,
                count=count - LISTED_ROWS,
            )
    return not any(found.values())


def _csv_columns(dataset: Dataset, path: Path) -> dict[str, str] | None:
    with path.open("rb") as handle:
        header = handle.readline(MAX_HEADER_BYTES + 1)  # never more: a file may have no newline
    if len(header) > MAX_HEADER_BYTES:
        _issue(
            dataset,
            path,
            "HEADER_TOO_LARGE",
            f"{path.name}: the header line is longer than {MAX_HEADER_BYTES:,} bytes",
        )
        return None
    if not header.strip():
        _issue(dataset, path, "EMPTY_FILE", f"{path.name} is empty (no header line)")
        return None
    try:
        text = header.decode("utf-8-sig")  # a byte order mark is tolerated and dropped
    except UnicodeDecodeError:
        _issue(dataset, path, "INVALID_ENCODING", f"{path.name}: the header line is not UTF-8")
        return None
    names = [name.strip() for name in next(csv.reader([text]))]
    return _check_columns(dataset, path, names, dict.fromkeys(names, "text"))


def _stage_csv(dataset: Dataset, path: Path, names: list[str]) -> str | None:
    """CSV -> Parquet with every column as text, plus its file name and 1-based row numbers."""
    staging = dataset.staging_dir()
    target = staging / f"{len(list(staging.iterdir())):05d}.parquet"
    try:
        (
            pl.scan_csv(
                path, schema=dict.fromkeys(names, pl.String()), has_header=True, encoding="utf8"
            )
            .with_row_index("_row", offset=1)
            .filter(~pl.all_horizontal(pl.exclude("_row").is_null()))  # a blank line is not a row
            .with_columns(_source=pl.lit(str(path)), _row=pl.col("_row").cast(pl.Int64))
            .sink_parquet(target)
        )
    except pl.exceptions.ComputeError as exc:
        reason = str(exc).splitlines()[0]
        if "utf-8" in reason.lower() and (line := _first_line_not_utf8(path)) is not None:
            _issue(
                dataset,
                path,
                "INVALID_ENCODING",
                f"{path.name}, line {line}: not UTF-8 text",
                row=line - 1,  # data rows are numbered after the header line
            )
            return None
        code = "INVALID_ENCODING" if "utf-8" in reason.lower() else "MALFORMED_CSV"
        _issue(dataset, path, code, f"{path.name} cannot be read as CSV: {reason}")
        return None
    return str(target)


def _first_line_not_utf8(path: Path) -> int | None:
    """The 1-based number of a text file's first line that is not UTF-8 (a failed read only)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# A row's granularity: as given, or inferred from its width (1 hour -> HOUR, 1 day -> DAY).
# Epoch arithmetic, not time-zone-aware timestamp arithmetic: the same answer, many times faster.
GRANULARITY_SQL = """coalesce(upper(trim(granularity_given)),
         CASE epoch_us(exclusive_end) - epoch_us(inclusive_start) WHEN 3600000000 THEN 'HOUR'
                                                                  WHEN 86400000000 THEN 'DAY' END)"""

# The rows of a JSON batch (registered as `_json_rows`, frames.USAGE_ROWS) in the same shape.
JSON_ROWS_SQL = f"""
SELECT *, NULL::BIGINT AS file_index, TRY_CAST(quantity_raw AS {QUANTITY_SQL}) AS quantity,
       {GRANULARITY_SQL} AS granularity, pricing_group_values AS pricing_key,
       presentation_group_values AS presentation_key
FROM _json_rows
"""


def rows_sql(table: UsageTable) -> str:
    """The normalized usage rows of a table (frames.USAGE_ROWS), as one DuckDB scan.

    Typed columns are read as they are; text columns are parsed here and kept beside their parse
    (`*_text`) so that validation can name what did not parse.
    """
    kinds = table.kinds

    def column(name: str, cast: str = "VARCHAR") -> str:
        return _ident(name) if name in kinds else f"NULL::{cast}"

    def timestamp(name: str) -> str:
        if name not in kinds:
            return "NULL::TIMESTAMPTZ"
        if kinds[name] == "text":  # finer than a microsecond: not a timestamp (never truncated)
            return (
                f"CASE WHEN NOT regexp_matches({_ident(name)}, {_literal(SUB_MICROSECOND)})"
                f" THEN TRY_CAST(trim({_ident(name)}) AS TIMESTAMPTZ) END"
            )
        return f"CAST({_ident(name)} AS TIMESTAMPTZ)"  # microseconds, whatever the file's unit

    def text(name: str) -> str:
        return _ident(name) if kinds.get(name) == "text" else "NULL::VARCHAR"

    # The quantity as checked: text trimmed; any float widened to DOUBLE (its exact value shows).
    quantity = {
        "text": f"trim({_ident('quantity')})",
        "float": f"CAST({_ident('quantity')} AS DOUBLE)",
    }.get(kinds["quantity"], _ident("quantity"))
    files = ", ".join(_literal(f) for f in table.files)
    source, row = ("_source", "_row") if table.staged else ("filename", "file_row_number + 1")
    options = "" if table.staged else ", filename = true, file_row_number = true"
    file_index, bucket = "file_index", ""
    if table.positions_given:
        source, row, file_index, options = "_source", "_row", "_file_index", ""
    if table.split:  # a row names its file by index only (a path on every row is costly)
        sources = ", ".join(_literal(f) for f in table.sources)
        source, row, file_index = f"[{sources}][_file_index + 1]", "_row", "_file_index"
        options, bucket = ", hive_partitioning = true", ", bucket::BIGINT AS _bucket"
    return f"""
SELECT {source} AS source, {file_index}::BIGINT AS file_index, {row}::BIGINT AS row,
       NULL::BIGINT AS invoice_index, NULL::BIGINT AS line_index, NULL::BIGINT AS window_index,
       customer_id, contract_id, product_id, {column("credit_type_id")} AS credit_type_id,
       {timestamp("inclusive_start_date")} AS inclusive_start, {timestamp("exclusive_end_date")} AS exclusive_end,
       {timestamp("invoice_inclusive_start_date")} AS invoice_start,
       {timestamp("invoice_exclusive_end_date")} AS invoice_end,
       {timestamp("issue_date")} AS issue_date,
       {text("inclusive_start_date")} AS start_text, {text("exclusive_end_date")} AS end_text,
       {text("invoice_inclusive_start_date")} AS invoice_start_text,
       {text("invoice_exclusive_end_date")} AS invoice_end_text, {text("issue_date")} AS issue_text,
       {quantity} AS quantity_raw,
       TRY_CAST({quantity} AS {QUANTITY_SQL}) AS quantity,
       upper(trim({column("breakdown_granularity")})) AS granularity_given,
       {GRANULARITY_SQL} AS granularity,
       {_group_sql(kinds, "pricing")} AS pricing_group_values,
       {group_key_sql(kinds, "pricing")} AS pricing_key,
       {_group_sql(kinds, "presentation")} AS presentation_group_values,
       {group_key_sql(kinds, "presentation")} AS presentation_key,
       lower(trim({column("billable_status")})) AS billable_status{bucket}
FROM read_parquet([{files}]{options})
"""


def positioned_rows_sql(table: UsageTable) -> str:
    """A table's rows as they are, each with where it was read: `_file_index` (into
    `table.sources`) and `_row` (1-based), for a copy that keeps them (Store.split_rows)."""
    files = ", ".join(_literal(f) for f in table.files)
    if table.staged:  # a staged CSV numbers its lines itself
        return (
            "SELECT * EXCLUDE (_source), file_index::BIGINT AS _file_index"
            f" FROM read_parquet([{files}])"
        )
    return (
        "SELECT COLUMNS(lambda c: c NOT IN ('filename', 'file_row_number')),"
        " file_index::BIGINT AS _file_index, (file_row_number + 1)::BIGINT AS _row"
        f" FROM read_parquet([{files}], file_row_number = true)"
    )


def _single_group_column(kinds: Mapping[str, str], group: str) -> str | None:
    """The one `<group>.<key>` column a table gives its group values in, if so."""
    keyed = [name for name in kinds if name.startswith(f"{group}.")]
    return keyed[0] if len(keyed) == 1 and f"{group}_group_values" not in kinds else None


def group_key_sql(kinds: dict[str, str], group: str) -> str:
    """What a row's rate is matched on (pricing) and its line keyed by (`<group>_key`): with one
    `<group>.<key>` column, its value as it is (writing a JSON text per row cost each scan a
    tenth of its time at 10M rows); otherwise the canonical JSON text itself."""
    single = _single_group_column(kinds, group)
    return f"{_ident(single)}::VARCHAR" if single else _group_sql(kinds, group)


def group_values_sql(kinds: Mapping[str, str] | None, group: str, key: str) -> str:
    """A group's values as canonical JSON text from its key (group_key_sql; None: rows whose key
    is the text already)."""
    single = None if kinds is None else _single_group_column(kinds, group)
    if single is None:
        return key
    name = _literal("{" + json.dumps(single[len(group) + 1 :]) + ":")
    return f"{name} || to_json({key}) || '}}'"  # null without a value, as the row's text


def rates_keyed_sql(kinds: Mapping[str, str] | None) -> str:
    """The contract rates with the `pricing_key` of rows read as `kinds` say (None: rows with
    canonical JSON, a JSON batch's or kept draft usage). A rate matches a row when the key is
    the same, null included (no pricing group values on either side)."""
    single = None if kinds is None else _single_group_column(kinds, "pricing")
    if single is None:
        return "SELECT *, pricing_group_values AS pricing_key FROM contract_rates"
    key = _literal(single[len("pricing.") :])
    # a rate with other keys than the column's matches no row of the table
    return f"""SELECT *, json_extract_string(pricing_group_values, [{key}])[1] AS pricing_key
FROM contract_rates
WHERE pricing_group_values IS NULL OR json_keys(pricing_group_values) = [{key}]"""


def _group_sql(kinds: dict[str, str], group: str) -> str:
    """Canonical JSON text of a row's group values (keys sorted, nulls dropped; null when empty),
    the same text `frames.canonical_json` writes for rates."""
    prefix = f"{group}."
    keyed = sorted(name for name in kinds if name.startswith(prefix))
    whole = f"{group}_group_values"
    if whole in kinds:
        as_map = f"CAST(CAST({_ident(whole)} AS JSON) AS MAP(VARCHAR, VARCHAR))"
        sorted_map = f"map_from_entries(list_sort(list_filter(map_entries({as_map}), lambda e: e.value IS NOT NULL)))"
        return f"nullif(to_json({sorted_map})::VARCHAR, '{{}}')"
    if not keyed:
        return "NULL::VARCHAR"
    if len(keyed) == 1:  # the same text, without joining one part (half the cost per row)
        return group_values_sql(kinds, group, f"{_ident(keyed[0])}::VARCHAR")
    parts = ", ".join(
        f"CASE WHEN {_ident(n)} IS NOT NULL THEN {_literal(json.dumps(n[len(prefix) :]) + ':')} || to_json({_ident(n)}::VARCHAR) END"
        for n in keyed
    )
    return f"nullif('{{' || concat_ws(',', {parts}) || '}}', '{{}}')"


def json_rows(invoices: pl.DataFrame, lines: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """A JSON batch as usage rows (frames.USAGE_ROWS): each subtotal window with its invoice's
    granularity, and each plain-quantity line as one NONE row spanning the line."""
    invoice_columns = invoices.select(
        "source",
        "invoice_index",
        "customer_id",
        "contract_id",
        "credit_type_id",
        pl.col("inclusive_start").alias("invoice_start"),
        pl.col("exclusive_end").alias("invoice_end"),
        pl.col("issued_at").alias("issue_date"),
        "billable_status",
        "granularity",
    )
    line_columns = lines.select(
        "invoice_index",
        "line_index",
        "product_id",
        "pricing_group_values",
        "presentation_group_values",
    )
    plain = lines.filter(pl.col("quantity").is_not_null()).select(
        "invoice_index",
        "line_index",
        pl.lit(-1, pl.Int64).alias("window_index"),
        "inclusive_start",
        "exclusive_end",
        pl.col("quantity").alias("quantity_raw"),
        pl.lit("NONE").alias("granularity_given"),
    )
    windowed = windows.join(
        invoice_columns.select("invoice_index", "granularity"), on="invoice_index"
    ).select(
        "invoice_index",
        "line_index",
        "window_index",
        "inclusive_start",
        "exclusive_end",
        pl.col("quantity").alias("quantity_raw"),
        pl.col("granularity").alias("granularity_given"),
    )
    rows = (
        pl.concat([plain, windowed])
        .join(line_columns, on=["invoice_index", "line_index"])
        .join(invoice_columns.drop("granularity"), on="invoice_index")
    )
    return rows.select(
        [
            pl.col(c).cast(t) if c in rows.columns else pl.lit(None, t).alias(c)
            for c, t in frames.USAGE_ROWS.items()
        ]
    )


# --- legacy invoices (for reconciliation) ---------------------------------------------------

LEGACY_REQUIRED = ("legacy_invoice_id", "total")
LEGACY_OPTIONAL = (
    "customer_id",
    "contract_id",
    "inclusive_start_date",
    "exclusive_end_date",
    "credit_type_id",
    "product_id",
    "quantity",
)


def read_legacy(paths: Sequence[Path]) -> tuple[pl.DataFrame, pl.DataFrame, list[dict[str, Any]]]:
    """Legacy invoices (rows without a product) and their lines (rows with one), from CSV or
    Parquet files; every problem becomes an issue row, as for any input."""
    dataset = Dataset()
    frames_read: list[pl.DataFrame] = []
    for path in paths:
        if not path.is_file():
            raise UsageError(f"no such file: {path}", path=str(path))
        try:
            if path.suffix == ".parquet":
                raw = pl.read_parquet(path)
                raw = raw.with_columns(
                    [
                        pl.col(c).cast(pl.String)
                        for c, t in raw.schema.items()
                        if not t.is_temporal()
                    ]
                )
            else:
                header = next(
                    csv.reader([path.read_bytes().split(b"\n", 1)[0].decode("utf-8-sig")])
                )
                raw = pl.read_csv(
                    path, schema=dict.fromkeys([h.strip() for h in header], pl.String())
                )
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, StopIteration) as exc:
            _issue(
                dataset,
                path,
                "CORRUPT_FILE",
                f"{path.name} cannot be read: {str(exc).splitlines()[0]}",
            )
            continue
        if _header_issues(dataset, path, list(raw.columns), LEGACY_REQUIRED, LEGACY_OPTIONAL):
            continue
        frames_read.append(_legacy_rows(dataset, path, raw))
    if not frames_read:
        return pl.DataFrame(), pl.DataFrame(), dataset.issues
    rows = pl.concat(frames_read, how="diagonal_relaxed")
    is_line = pl.col("product_id").is_not_null()
    invoices = rows.filter(~is_line).select(
        "legacy_invoice_id",
        "customer_id",
        "contract_id",
        pl.col("credit_type_id").fill_null(USD_CENTS_ID),
        "inclusive_start",
        "exclusive_end",
        "total",
    )
    lines = rows.filter(is_line).select("legacy_invoice_id", "product_id", "quantity", "total")
    return invoices, lines, dataset.issues


def _legacy_rows(dataset: Dataset, path: Path, raw: pl.DataFrame) -> pl.DataFrame:
    """Typed columns, and an issue for each value that does not parse (file, row, field)."""
    frame = raw.with_row_index("row", offset=1)
    for column in LEGACY_OPTIONAL:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    typed = {}
    for column in ("inclusive_start_date", "exclusive_end_date"):
        value = frame[column]
        if value.dtype.is_temporal():
            typed[column] = value.cast(pl.Datetime("us", "UTC"))
            continue
        text = value.str.strip_chars()
        parsed = text.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        offset = text.str.contains(
            r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? ?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
        )
        bad = frame.filter(text.is_not_null() & (parsed.is_null() | ~offset))
        for row, shown in bad.select("row", column).iter_rows():
            _issue(
                dataset,
                path,
                "INVALID_TIMESTAMP",
                f"{path.name}, row {row}: `{shown}` is not a UTC timestamp",
                row=row,
                field=column,
            )
        typed[column] = parsed
    for column in ("total", "quantity"):
        text = frame[column].cast(pl.String).str.strip_chars()
        bad = frame.filter(text.is_not_null() & ~text.str.contains(r"^-?[0-9]+(\.[0-9]+)?$"))
        for row, shown in bad.select("row", column).iter_rows():
            _issue(
                dataset,
                path,
                "INVALID_NUMBER",
                f"{path.name}, row {row}: {column} `{shown}` is not a number",
                row=row,
                field=column,
            )
        typed[column] = text.cast(pl.Decimal(38, 9), strict=False)
    invoice_row = frame["product_id"].is_null()
    for column in ("customer_id", "inclusive_start_date", "exclusive_end_date"):
        for (row,) in frame.filter(invoice_row & frame[column].is_null()).select("row").iter_rows():
            _issue(
                dataset,
                path,
                "MISSING_FIELD",
                f"{path.name}, row {row}: an invoice row needs {column}",
                row=row,
                field=column,
            )
    return frame.select(
        "legacy_invoice_id",
        "customer_id",
        "contract_id",
        "credit_type_id",
        "product_id",
        typed["inclusive_start_date"].alias("inclusive_start"),
        typed["exclusive_end_date"].alias("exclusive_end"),
        typed["total"].alias("total"),
        typed["quantity"].alias("quantity"),
    )
