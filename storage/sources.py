"""A user's long-format file, read: CSV as text (so that every bad cell can be reported with its row) or Parquet
with its column types checked first.

The reader knows files, not datasets: it returns the rows as they are, under the columns ``series_id, timestamp,
value, row`` (``row`` counts from 1, the header excluded); the core validates and windows them. A file it cannot read
raises :class:`SourceError` with the problems found, each naming the file.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 1 << 20  # rows read at a time when streaming: a batch's frames, not the file, bound the memory


class SourceError(ValueError):
    """A file that cannot be read as long-format series; ``problems`` names each thing wrong."""

    def __init__(self, problems: list[str], listed: bool = False):
        super().__init__("\n  ".join(problems))
        self.problems = problems
        self.listed = listed  # checks of every column, reported as a list rather than one message


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def file_columns(path: str | Path) -> list[str]:
    """The column names of a CSV or Parquet file (its header or schema alone)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError([f"no file at {path}"])
    if is_csv(path):
        return [str(c) for c in _csv_text(path, header_only=True).columns]
    return _parquet_schema(path).names


def read_long(path: str | Path, id_column: str | None, time_column: str, value_column: str,
              single_id: str) -> pd.DataFrame:
    """The file's id, timestamp and value columns as ``series_id, timestamp, value, row`` (raw, unparsed);
    ``single_id`` names the one series of a file without an id column."""
    path = Path(path)
    if not path.is_file():
        raise SourceError([f"no file at {path}"])
    if is_csv(path):
        frame = _csv_text(path)
        columns = [str(c) for c in frame.columns]
    else:
        schema = _parquet_schema(path)
        columns = schema.names
    wanted = [c for c in (id_column, time_column, value_column) if c is not None]
    missing = [c for c in wanted if c not in columns]
    if missing:
        hint = " (a file of one series needs no id column: pass id_column=None)" if missing == [id_column] else ""
        raise SourceError([f"{path.name}: column(s) {', '.join(map(repr, missing))} not found; the file has "
                           f"columns {', '.join(map(repr, columns))}{hint}"])
    if not is_csv(path):
        frame = _parquet_columns(path, schema, id_column, time_column, value_column)
    if len(frame) == 0:
        raise SourceError([f"{path.name} has no data rows (a header or schema alone): nothing to ingest"])
    ids = frame[id_column] if id_column else pd.Series(single_id, index=frame.index)
    return pd.DataFrame({"series_id": ids, "timestamp": frame[time_column], "value": frame[value_column],
                         "row": np.arange(1, len(frame) + 1)}, copy=False)


def _not_utf8(path: Path, byte: int, offset: int, line: int) -> SourceError:
    return SourceError([f"{path.name} is not UTF-8 text: byte 0x{byte:02x} at offset {offset} (line {line}) does not "
                        f"decode; save the file as UTF-8"])


def _first_undecodable(path: Path, block: int = 1 << 24) -> SourceError | None:
    """The refusal of a file that is not UTF-8, naming its first byte that does not decode; read block by block."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 0  # bytes passed to the decoder so far, and the newlines among them
    with path.open("rb") as file:
        while True:
            data = file.read(block)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                # the decoder tried the bytes it held back (part of one character, no newline) and then this block
                held = len(exc.object) - len(data)
                return _not_utf8(path, exc.object[exc.start], offset - held + exc.start,
                                 lines + exc.object.count(b"\n", 0, exc.start) + 1)
            if not data:
                return None
            offset += len(data)
            lines += data.count(b"\n")


def _csv_text(path: Path, header_only: bool = False) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")  # not utf-8-sig: its error offsets would not count the byte order mark
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, raw[exc.start], exc.start, raw.count(b"\n", 0, exc.start) + 1) from None
    try:
        return pd.read_csv(io.StringIO(text.removeprefix("\ufeff")), dtype=str, keep_default_na=False,
                           nrows=0 if header_only else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SourceError([f"{path.name} is not a readable CSV file: {exc}".rstrip()]) from None


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError([f"{path.name} is not a readable Parquet file: {exc}"]) from None


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


# Parquet columns are typed: a column of the wrong type is refused as a whole rather than cell by cell
COLUMN_TYPES = {
    "series id": (lambda t: _is_text(t) or pa.types.is_integer(t) or pa.types.is_null(t), "not text or whole numbers"),
    "timestamp": (lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t) or _is_text(t) or pa.types.is_null(t),
                  "neither timestamps nor text"),
    "value": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
              or pa.types.is_null(t), "not numbers"),
}


def _check_parquet_types(path: Path, schema: pa.Schema, id_column: str | None, time_column: str,
                         value_column: str) -> None:
    """Refuse columns of the wrong type (or that appear more than once), every one of them at once."""
    problems = []
    for role, column in (("series id", id_column), ("timestamp", time_column), ("value", value_column)):
        if column is None:
            continue
        if schema.names.count(column) > 1:
            problems.append(f"{path.name}: column {column!r} appears {schema.names.count(column)} times")
            continue
        kind = schema.field(column).type
        if pa.types.is_dictionary(kind):  # categorical columns: their values carry the type
            kind = kind.value_type
        accepts, expected = COLUMN_TYPES[role]
        if not accepts(kind):
            problems.append(f"{path.name}: {role} column {column!r} holds {kind}, {expected}")
    if problems:
        raise SourceError(problems, listed=True)


def _parquet_columns(path: Path, schema: pa.Schema, id_column: str | None, time_column: str,
                     value_column: str) -> pd.DataFrame:
    """Read the id, timestamp and value columns after checking their types (and that each appears once)."""
    _check_parquet_types(path, schema, id_column, time_column, value_column)
    wanted = list(dict.fromkeys(c for c in (id_column, time_column, value_column) if c))
    # an id repeats once per step: read as a dictionary, each distinct id is one Python string, not one per row
    dictionary = [id_column] if id_column and _is_text(schema.field(id_column).type) else []
    try:
        return pq.read_table(path, columns=wanted, read_dictionary=dictionary).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise SourceError([f"{path.name} is not a readable Parquet file: {exc}"]) from None


def read_long_batches(path: str | Path, id_column: str | None, time_column: str, value_column: str,
                      single_id: str, batch_rows: int | None = None) -> Iterator[pa.Table]:
    """The rows of :func:`read_long`, streamed: Arrow tables of at most ``batch_rows`` rows with the columns
    ``series_id, timestamp, value, row``, in file order (``batch_rows`` default: ``BATCH_ROWS``); the file is
    never held whole.

    The cells are those :func:`read_long` gives once converted to pandas (a CSV's as text, a Parquet file's of
    their checked types), and every refusal is the same; the checks of the columns run before the first batch.
    """
    path, batch_rows = Path(path), batch_rows or BATCH_ROWS
    if not path.is_file():
        raise SourceError([f"no file at {path}"])
    wanted = [c for c in (id_column, time_column, value_column) if c is not None]
    if is_csv(path):
        columns = _csv_header(path)
    else:
        schema = _parquet_schema(path)
        columns = schema.names
    missing = [c for c in wanted if c not in columns]
    if missing:
        hint = " (a file of one series needs no id column: pass id_column=None)" if missing == [id_column] else ""
        raise SourceError([f"{path.name}: column(s) {', '.join(map(repr, missing))} not found; the file has "
                           f"columns {', '.join(map(repr, columns))}{hint}"])
    if is_csv(path):
        batches = _csv_batches(path, batch_rows)
    else:
        _check_parquet_types(path, schema, id_column, time_column, value_column)
        batches = _parquet_batches(path, schema, list(dict.fromkeys(wanted)), id_column, batch_rows)
    rows = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        ids = batch.column(id_column) if id_column else pa.array([single_id] * batch.num_rows, pa.string())
        yield pa.table({"series_id": ids, "timestamp": batch.column(time_column),
                        "value": batch.column(value_column),
                        "row": pa.array(np.arange(rows + 1, rows + batch.num_rows + 1))})
        rows += batch.num_rows
    if rows == 0:
        raise SourceError([f"{path.name} has no data rows (a header or schema alone): nothing to ingest"])


def _csv_header(path: Path) -> list[str]:
    try:
        return [str(c) for c in pd.read_csv(path, dtype=str, keep_default_na=False, nrows=0).columns]
    except UnicodeDecodeError:
        raise _first_undecodable(path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SourceError([f"{path.name} is not a readable CSV file: {exc}".rstrip()]) from None


def _csv_batches(path: Path, batch_rows: int) -> Iterator[pa.Table]:
    """A CSV file's cells as text, ``batch_rows`` rows at a time (pandas drops a byte order mark itself)."""
    try:
        with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=batch_rows) as chunks:
            for chunk in chunks:
                yield pa.table({str(c): pa.array(chunk[c].to_numpy(dtype=object), pa.string())
                                for c in chunk.columns})
    except UnicodeDecodeError:
        raise _first_undecodable(path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SourceError([f"{path.name} is not a readable CSV file: {exc}".rstrip()]) from None


def _parquet_batches(path: Path, schema: pa.Schema, columns: list[str], id_column: str | None,
                     batch_rows: int) -> Iterator[pa.Table]:
    """A Parquet file's columns a row group at a time (a large one in batches of ``batch_rows``): ``iter_batches``
    over the whole file keeps what it read allocated until it ends, so memory grew with the file."""
    dictionary = [id_column] if id_column and _is_text(schema.field(id_column).type) else []
    try:
        with pq.ParquetFile(path, read_dictionary=dictionary) as file:
            for group in range(file.metadata.num_row_groups):
                if file.metadata.row_group(group).num_rows <= batch_rows:
                    yield file.read_row_group(group, columns=columns)
                    continue
                for batch in file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                    yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as exc:
        raise SourceError([f"{path.name} is not a readable Parquet file: {exc}"]) from None
