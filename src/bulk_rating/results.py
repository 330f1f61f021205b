"""An analyst's query result, written as DuckDB streams it: CSV, JSON or Parquet, one Arrow record
batch at a time, so that a result of any size passes through bounded memory.

The text is what it was when the whole result was read into a Polars frame first: CSV as Polars
writes it, JSON as one array of objects with every DECIMAL an exact number (never through a
float), column names made unique as DuckDB makes them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa

from bulk_rating import lazy
from bulk_rating.errors import UsageError
from bulk_rating.money import dumps_exact

if TYPE_CHECKING:
    import polars as pl
    import pyarrow.parquet as pq

    from bulk_rating.store import Streamed
else:
    pl = lazy.Module("polars")  # for CSV and JSON: the table and Parquet need no Polars
    pq = lazy.Module("pyarrow.parquet")

# Rows DuckDB hands over at a time: eight of its vectors. Each batch passes through a few copies
# (DuckDB's, Arrow's, the writer's); measured on invoice_breakdowns, a CSV export peaks at about
# 300 MB with batches of 16,384 rows and 500 MB with 122,880, and takes as long.
BATCH_ROWS = 16_384
# Rows a Parquet row group holds (DuckDB's own row group size): batches are gathered up to it.
ROW_GROUP_ROWS = 122_880
# Rows turned into Python values at once for JSON: Python objects take about ten times the room
# of the same values in Arrow.
PYTHON_ROWS = 4_096
# Bytes gathered before a write to the file or the terminal.
WRITE_BUFFER = 1 << 20

CAST_IT = "cast it, e.g. to VARCHAR"


class Rows:
    """A result's columns under unique names, and its batches, which can be read once."""

    def __init__(self, streamed: Streamed) -> None:
        self.columns = unique_names(streamed.schema.names)
        self.schema = pa.schema(
            [
                field.with_name(name)
                for field, name in zip(streamed.schema, self.columns, strict=True)
            ]
        )
        unshowable = [
            f"`{field.name}` is {field.type}" for field in self.schema if not _showable(field.type)
        ]
        if unshowable:
            raise UsageError(
                f"a result column has a type that cannot be shown; {CAST_IT}"
                f" ({', '.join(unshowable)})"
            )
        self._batches = streamed.batches

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._batches:
            yield batch.rename_columns(self.columns)


def unique_names(names: list[str]) -> list[str]:
    """Column names as DuckDB's own results give them: a name met again (in any case) gets `_1`,
    `_2`, ... (the first suffix no other column has), so every column keeps its own key."""
    taken: dict[str, int] = {}
    unique = []
    for name in names:
        key = name.lower()
        if key in taken:
            candidate = f"{name}_{taken[key]}"
            while candidate.lower() in taken:
                taken[key] += 1
                candidate = f"{name}_{taken[key]}"
            name, key = candidate, candidate.lower()
        taken[key] = taken.get(key, 0) + 1
        unique.append(name)
    return unique


def _showable(kind: pa.DataType) -> bool:
    """Intervals and unions have no form in Polars or Parquet, nor one JSON readers agree on."""
    if pa.types.is_interval(kind) or pa.types.is_union(kind):
        return False
    return all(_showable(kind.field(i).type) for i in range(kind.num_fields))


def _nested(kind: pa.DataType) -> bool:
    return bool(kind.num_fields)  # lists, structs and maps


def write_csv(rows: Rows, sink: IO[bytes]) -> None:
    """A header line, then the rows, as Polars writes them (decimals at their full scale, UTC
    timestamps as 2024-06-01T00:00:00.000000+0000, an empty string as "", null as nothing)."""
    nested = [f"`{field.name}`" for field in rows.schema if _nested(field.type)]
    if nested:
        raise UsageError(
            f"CSV holds no lists, structs or maps ({', '.join(nested)}): {CAST_IT}, or use"
            " --format json or parquet"
        )
    header = True
    for batch in rows:
        sink.write(_csv(_polars(batch), header))
        header = False
    if header:  # no rows: the header alone
        sink.write(_csv(_polars(rows.schema.empty_table()), header))


def _csv(frame: pl.DataFrame, header: bool) -> bytes:
    # Through bytes, so that a closed pipe is the BrokenPipeError Python raises (Polars says it
    # as a bare OSError).
    text = io.BytesIO()
    frame.write_csv(text, include_header=header)
    return text.getvalue()


def _polars(data: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    try:
        frame = pl.from_arrow(data)
    except pl.exceptions.PolarsError as exc:
        raise UsageError(
            f"a result column has a type that cannot be shown; {CAST_IT} ({str(exc).splitlines()[0]})"
        ) from exc
    assert isinstance(frame, pl.DataFrame)
    return frame


def write_json(rows: Rows, sink: IO[bytes]) -> None:
    """One JSON array of objects, two spaces indented, written as the rows come: the same text as
    the whole array written at once."""
    sink.write(b"[")
    written = False
    for values in _python_rows(rows):
        if not values:
            continue
        text = dumps_exact(values)  # "[\n  {...},\n  {...}\n]": its items are the array's
        sink.write(("," if written else "").encode() + text[1:-2].encode())
        written = True
    sink.write(b"\n]\n" if written else b"]\n")


def _python_rows(rows: Rows) -> Iterator[list[dict[str, Any]]]:
    # Polars makes the Python values (as it did when the result was one frame), faster than Arrow
    for batch in rows:
        frame = _polars(batch)
        for start in range(0, frame.height, PYTHON_ROWS):
            yield frame.slice(start, PYTHON_ROWS).to_dicts()


def write_parquet(rows: Rows, path: Path) -> None:
    """A Parquet file (zstd, as Polars writes by default) in row groups of ROW_GROUP_ROWS."""
    with pq.ParquetWriter(path, rows.schema, compression="zstd") as writer:
        gathered: list[pa.RecordBatch] = []
        for batch in rows:
            gathered.append(batch)
            if sum(b.num_rows for b in gathered) >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(gathered, rows.schema))
                gathered = []
        if gathered:
            writer.write_table(pa.Table.from_batches(gathered, rows.schema))


def first_rows(rows: Rows, limit: int) -> tuple[list[tuple[Any, ...]], int]:
    """The first `limit` rows as Python values, and how many rows the result has: the rest are
    counted in Arrow, never turned into Python values."""
    shown: list[tuple[Any, ...]] = []
    total = 0
    for batch in rows:
        wanted = min(limit - len(shown), batch.num_rows)
        if wanted > 0:
            part = batch.slice(0, wanted)
            columns = [part.column(i).to_pylist() for i in range(part.num_columns)]
            shown.extend(zip(*columns, strict=True))
        total += batch.num_rows
    return shown, total


# The formats written to a stream (the terminal, a pipe); Parquet needs a file.
STREAMED: dict[str, Callable[[Rows, IO[bytes]], None]] = {"csv": write_csv, "json": write_json}


def write_file(rows: Rows, format: str, path: Path) -> None:
    if format == "parquet":
        write_parquet(rows, path)
        return
    with path.open("wb", buffering=WRITE_BUFFER) as sink:
        STREAMED[format](rows, sink)
