"""What ``map`` reads its rows from, one row at a time: a DataFrame or Series, a list or any
iterable of dicts or strings (a generator is never read whole), or a Parquet file, read in record
batches with pyarrow. A checkpointed run holds one batch at a time; the others read everything
into the result frame as before (``_templates.table``).

A source also says what it is for a checkpoint's manifest: its kind and its columns (a resumed run
over other columns is refused; its rows are matched one by one, ``_rowkeys``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependencyError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BATCH_ROWS", "Source", "is_path", "open_source", "parquet_frame", "require_pyarrow"]

BATCH_ROWS = 1_000  # rows per Parquet record batch, and per DataFrame slice turned into dicts
_SAMPLE = 100  # the first rows of an iterable, read ahead to tell dicts from strings
_KINDS = "a DataFrame, a Series, a list or iterable of dicts or of strings, or a Parquet file's path"


def require_pyarrow(what: str) -> Any:
    """``pyarrow``, or a one-line error saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs pyarrow: pip install pyarrow (or pip install 'oxen-notebook[scale]')."
        ) from None
    return pyarrow


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


def _parquet_file(path: Any) -> Any:
    require_pyarrow("reading a Parquet file")
    import pyarrow
    import pyarrow.parquet as pq

    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ParameterError(f"data={name!r} is not a file: give {_KINDS}.")
    try:
        return pq.ParquetFile(name)
    except (pyarrow.ArrowException, OSError) as exc:
        raise ParameterError(f"data={name!r} is not a Parquet file: {str(exc).splitlines()[0]}") from None


def parquet_frame(path: Any) -> pd.DataFrame:
    """A whole Parquet file as a DataFrame (for a run without a checkpoint)."""
    return _parquet_file(path).read().to_pandas()


@dataclass
class Source:
    """Rows to fill a template from, in order, each read once."""

    kind: str  # frame, series, strings, dicts, parquet
    columns: list[str]  # the data's columns, as the result has them
    strings: bool  # the rows are bare strings: a template may use {} and {text}
    total: int | None  # the row count when it is known before reading (not a generator's)
    description: dict[str, Any]  # what a checkpoint's manifest records
    frame: pd.DataFrame | None = None  # an in-memory frame: the result keeps its index and dtypes
    _rows: Iterator[dict[str, Any]] = field(default=iter(()), repr=False)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as the template sees it (a string as ``{"text": s}``)."""
        return self._rows

    def stored(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's data as a checkpoint stores it (a Series row without its ``text`` alias)."""
        return {self.columns[0]: row[self.columns[0]]} if self.kind == "series" else row


def open_source(data: Any) -> Source:
    """``data`` as a lazy :class:`Source`; a bad kind of data is a one-line ``ParameterError``."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return _frame_source(data)
    if isinstance(data, pd.Series):
        name = data.name if isinstance(data.name, str) else "text"
        rows = ({name: v, "text": v} for v in data.tolist())
        return Source("series", [name], True, len(data), _describe("series", [name]), None, rows)
    if is_path(data):
        return _parquet_source(data)
    if isinstance(data, (bytes, Mapping)) or not isinstance(data, Iterable):
        raise ParameterError(f"data must be {_KINDS}; got {type(data).__name__}.")
    total = len(data) if isinstance(data, Sequence) else None
    items = iter(data)
    head = list(itertools.islice(items, _SAMPLE))  # read ahead: at most _SAMPLE rows
    strings = all(isinstance(item, str) for item in head)
    if not strings and not all(isinstance(item, dict) for item in head):
        raise ParameterError("data must be all dicts or all strings, not a mix.")
    sample = [{"text": item} for item in head] if strings else [dict(item) for item in head]
    columns = ["text"] if strings else list(dict.fromkeys(k for row in sample for k in row))
    kind = "strings" if strings else "dicts"
    rows = _checked(itertools.chain(head, items), strings)
    return Source(kind, columns, strings, total, _describe(kind, columns), None, rows)


def _checked(items: Iterator[Any], strings: bool) -> Iterator[dict[str, Any]]:
    expected = str if strings else dict
    for position, item in enumerate(items):
        if not isinstance(item, expected):
            raise ParameterError(
                f"row {position} of the data is a {type(item).__name__}, not a "
                f"{expected.__name__} like the rows before it: give all dicts or all strings."
            )
        yield {"text": item} if strings else item


def _describe(kind: str, columns: list[str], **more: Any) -> dict[str, Any]:
    return {"kind": kind, "columns": [str(c) for c in columns], **more}


def _frame_source(frame: pd.DataFrame) -> Source:
    def rows() -> Iterator[dict[str, Any]]:
        for start in range(0, len(frame), BATCH_ROWS):  # a slice at a time: no copy of the whole
            yield from frame.iloc[start : start + BATCH_ROWS].to_dict(orient="records")

    columns = list(frame.columns)
    return Source("frame", columns, False, len(frame), _describe("frame", columns), frame, rows())


def _parquet_source(path: Any) -> Source:
    file = _parquet_file(path)
    name = os.fspath(path)
    columns = list(file.schema_arrow.names)
    stat = os.stat(name)
    total = file.metadata.num_rows

    def rows() -> Iterator[dict[str, Any]]:
        for batch in file.iter_batches(batch_size=BATCH_ROWS):
            yield from batch.to_pylist()

    described = _describe("parquet", columns, path=name, size=stat.st_size, mtime=stat.st_mtime, rows=total)
    return Source("parquet", columns, False, total, described, None, rows())
