"""A checkpoint's Parquet files: finished rows and their batch-log records as Arrow tables, written
whole or not at all, read back a column at a time.

Every file is written under a hidden temporary name, flushed and fsynced, then renamed into place,
with a checksum per page, so that a file cut short or damaged on disk is an error when it is read
(:class:`DamagedPart`), never another row's values.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._records import COLUMNS, JSON_COLUMNS, Message, is_missing

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "KEY",
    "ROW",
    "DamagedPart",
    "chunked",
    "log_table",
    "part_number",
    "read_part",
    "rows_table",
    "series",
    "write_part",
]

ROW = "__row__"  # the row's position in the data
KEY = "__key__"  # the row's key (``_rowkeys.row_key``): what matches it to the data on resume


class DamagedPart(Exception):
    """A part that cannot be read: cut short, or damaged on disk (its message: the first line of
    pyarrow's or the OS's error)."""


def part_number(path: Path) -> int:
    return int(path.name.split("-")[1].split(".")[0])


def write_part(folder: Path, name: str, table: Any) -> None:
    """``table`` as ``folder/name``: written under a hidden name, fsynced, then renamed."""
    import pyarrow.parquet as pq

    temporary = folder / f".{name}.tmp"
    with open(temporary, "wb") as file:
        pq.write_table(table, file, write_page_checksum=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, folder / name)


def read_part(path: Path, columns: list[str] | None = None) -> Any:
    """A part's table (its page checksums verified); a damaged file raises :class:`DamagedPart`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns, use_threads=False, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DamagedPart((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None


def rows_table(rows: list[tuple[int, int, dict[str, Any], dict[str, Any]]]) -> Any:
    """``(position, key, data, result)`` rows as a table: :data:`ROW`, :data:`KEY`, the data's
    columns, then the result's."""
    import pyarrow as pa

    results = list(rows[0][3])
    reserved = {*results, ROW, KEY}
    names = [n for n in dict.fromkeys(k for _, _, data, _ in rows for k in data) if str(n) not in reserved]
    columns = {
        ROW: pa.array([position for position, _, _, _ in rows], pa.int64()),
        KEY: pa.array([key for _, key, _, _ in rows], pa.int64()),
    }
    for name in names:
        columns[str(name)] = _column(pa, [data.get(name) for _, _, data, _ in rows])
    for name in results:
        columns[name] = _column(pa, [result[name] for _, _, _, result in rows])
    return pa.table(columns)


def log_table(entries: list[tuple[str, int, Message]]) -> Any:
    """``(batch_id, position, message)`` entries as a table: ``batch_id``, ``row``, the message's
    recorded columns."""
    import pyarrow as pa

    records = [_record(message) for _, _, message in entries]
    columns = {
        "batch_id": pa.array([batch for batch, _, _ in entries], pa.string()),
        "row": pa.array([row for _, row, _ in entries], pa.int64()),
    }
    for name, kind in _log_types(pa).items():
        values = [record.get(name) for record in records]
        if name in JSON_COLUMNS:
            values = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values]
        columns[name] = pa.array(values, kind)
    return pa.table(columns)


def merged(tables: list[Any]) -> Any:
    """Tables of rows one after another as one table: each column of the type they share (else the
    widest, else text), a column some lack null there."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    if all(t.schema == tables[0].schema for t in tables):
        return pa.concat_tables(tables)
    names = list(dict.fromkeys(name for table in tables for name in table.column_names))
    columns = {
        name: chunked(
            pa, [t.column(name) if name in t.column_names else pa.nulls(len(t)) for t in tables], None
        )
        for name in names
    }
    return pa.table(columns)


_ARROW_TYPES = {"string": "string", "Int64": "int64", "Float64": "float64", "boolean": "bool_"}


def chunked(pa: Any, columns: list[Any], dtype: str | None) -> Any:
    """One column's pieces (arrays, chunked arrays) from every part as one chunked array, of the
    type ``dtype`` reads from; the data's columns of the type they share (else the widest, else
    text). No value is copied unless its type changes."""
    types = list(dict.fromkeys(c.type for c in columns))
    if dtype is not None:
        kind = getattr(pa, _ARROW_TYPES[dtype])()
    elif len(types) == 1:
        kind = types[0]
    else:
        try:
            schemas = [pa.schema([("c", t)]) for t in types]
            kind = pa.unify_schemas(schemas, promote_options="permissive")[0].type
        except (pa.ArrowException, TypeError, ValueError):  # a column whose type changed between parts
            kind = pa.string()
    pieces = [p for c in columns for p in (c.chunks if isinstance(c, pa.ChunkedArray) else [c])]
    return pa.chunked_array([p if p.type == kind else p.cast(kind) for p in pieces], kind)


def series(pa: Any, column: Any, take: Any, dtype: str | None) -> pd.Series:
    import pandas as pd

    if take is not None:
        column = column.take(take)
    if dtype is None:
        return column.to_pandas()
    return pd.Series(pd.api.types.pandas_dtype(dtype).__from_arrow__(column), copy=False)


def _column(pa: Any, values: list[Any]) -> Any:
    """An Arrow array of ``values``, as text if Arrow cannot store them as they are."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if is_missing(v) else str(v) for v in values], pa.string())


def _record(message: Message) -> dict[str, Any]:
    """The message's recorded columns (``to_dict`` would deep-copy its attachments' bytes too)."""
    record = {name: getattr(message, name) for name in COLUMNS}
    record["created_at"] = message.created_at.isoformat()
    return record


def _log_types(pa: Any) -> dict[str, Any]:
    """The Arrow type of each recorded message column (JSON columns as text, times as ISO text)."""
    kinds = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    annotations = {f.name: str(f.type).split("|")[0].strip() for f in fields(Message)}
    types = {name: kinds.get(annotations[name], pa.string()) for name in COLUMNS}
    return {**types, **{name: pa.string() for name in JSON_COLUMNS}}
