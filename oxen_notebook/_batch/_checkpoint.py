"""``map(..., checkpoint=DIR)``: finished rows go to Parquet parts as they come, and a run resumes.

::

    DIR/manifest.json             what the run is (template, model, parameters, schema=, system
                                  prompt, attachments, the data's columns and fingerprint) and how
                                  far it got (rows_done, parts)
    DIR/rows/part-000000.parquet  finished rows: __row__ (the row's position in the data), the
                                  data's columns, then the result's (parsed= as JSON text)
    DIR/log/part-000000.parquet   the same rows' batch-log records: batch_id, row, message columns

A part is written under a hidden name (``.part-000000.parquet.tmp``: readers of the folder skip
it), flushed to disk, and renamed into place with ``os.replace``, so a killed process leaves whole
parts or none. Log part N goes into place before rows part N; on resume a log part without its
rows part is removed (its rows run again). The rows parts are the truth: a row is finished once it
is in one, and a resumed run never sends it again. A row that failed is finished too (its error is
stored), unless ``retry_errors``; a row cut short by an interrupt is not stored and runs again. A
part is written every :data:`PART_ROWS` finished rows or :data:`PART_SECONDS`, whichever comes
first, and at the end of the run (also after a Ctrl-C or an exception).

Memory: the rows finished since the last part, and on resume one byte per row of the data (which
rows are done). Nothing else grows with the row count until the result is read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._records import COLUMNS, JSON_COLUMNS, Message, is_missing
from ._sources import require_pyarrow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PART_ROWS", "PART_SECONDS", "ROW", "Checkpoint", "fingerprint"]

PART_ROWS = 1_000
PART_SECONDS = 5.0
ROW = "__row__"
MANIFEST = "manifest.json"
LOCK = ".lock"  # held (flock) while a run has the folder open
_FORMAT = 1
#: What must be the same for a run to resume, and how an error names it.
_COMPARED = {
    "template": "template",
    "model": "model",
    "params": "parameters",
    "schema": "schema=",
    "system": "system prompt",
    "attachments": "images=/files=",
    "data": "data (its columns or first rows)",
}
_SHOWN = ("template", "model", "params")  # the others are hashes: named, not shown


def fingerprint(value: Any) -> str | None:
    """A short stable hash of a JSON-able value (``None`` stays ``None``)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compared(manifest: dict[str, Any]) -> dict[str, Any]:
    data = manifest.get("data") or {}
    return {
        **{key: manifest.get(key) for key in _COMPARED if key != "data"},
        "data": [data.get("columns"), data.get("first_rows_sha256")],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _part_number(path: Path) -> int:
    return int(path.name.split("-")[1].split(".")[0])


class Checkpoint:
    """One checkpoint folder: its manifest, which rows are done, the parts being written."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: dict[str, Any],
        *,
        resume: bool = True,
        retry_errors: bool = False,
        part_rows: int = PART_ROWS,
        part_seconds: float = PART_SECONDS,
    ) -> None:
        require_pyarrow("checkpoint=")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ParameterError(
                f"checkpoint={path!r} is invalid: give a folder path, such as 'runs/classify'."
            )
        if not isinstance(resume, bool) or not isinstance(retry_errors, bool):
            raise ParameterError("resume= and retry_errors= take True or False.")
        self.path = Path(path)
        self.rows_dir = self.path / "rows"
        self.log_dir = self.path / "log"
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        import numpy as np

        self._done = np.zeros(0, dtype=bool)
        self.finished = 0  # rows in the parts (a failed row to retry is not counted)
        self.resumed = 0  # rows an earlier run finished
        self._part = 0
        if self.path.exists() and not self.path.is_dir():
            raise ParameterError(f"checkpoint={os.fspath(self.path)!r} is a file: give a folder path.")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _hold(self.path / LOCK)
        try:
            self._open(manifest, resume, retry_errors)
        except BaseException:
            self.release()
            raise
        self._rows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        self._log: list[tuple[str, int, Message]] = []
        self._flushed_at = time.monotonic()

    def _open(self, manifest: dict[str, Any], resume: bool, retry_errors: bool) -> None:
        new = {"format": _FORMAT, **_jsonable(manifest)}
        old = self._read_manifest(resume)
        # With no part yet there is nothing to keep: a call that failed before any row finished
        # (a mistyped model, say) does not hold the folder to its settings.
        if old is not None and resume and any(self.rows_dir.glob("part-*.parquet")):
            changed = [key for key in _COMPARED if _compared(old)[key] != _compared(new)[key]]
            if changed:
                raise ParameterError(self._changed(old, new, changed))
            self._clean()
            self._scan(retry_errors)
            self.resumed = self.finished
            new["created_at"] = old.get("created_at") or _now()
        else:
            if old is None:
                self._refuse_foreign()
            self._clear()
            new["created_at"] = _now()
        self.manifest = new
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

    def release(self) -> None:
        """Let another run open the folder (a process that dies lets go of it too)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- the manifest, and what a resumed run finds ---------------------------------------------

    def _read_manifest(self, resume: bool) -> dict[str, Any] | None:
        try:
            text = (self.path / MANIFEST).read_text()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
        except ValueError:
            if not resume:
                return {}
            raise ParameterError(
                f"checkpoint {os.fspath(self.path)!r} has a {MANIFEST} that is not JSON: resume=False "
                "starts over."
            ) from None
        return manifest if isinstance(manifest, dict) else {}

    def _changed(self, old: dict[str, Any], new: dict[str, Any], changed: list[str]) -> str:
        described = []
        for key in changed:
            label = _COMPARED[key]
            if key in _SHOWN:
                label += f" ({_short(old.get(key))} there, {_short(new.get(key))} now)"
            described.append(label)
        what = described[0] if len(described) == 1 else ", ".join(described[:-1]) + " and " + described[-1]
        parts = len(list(self.rows_dir.glob("part-*.parquet")))
        return (
            f"checkpoint {os.fspath(self.path)!r} differs from this call in its {what}: resume=False "
            f"starts over (clearing its {parts} part{'s' * (parts != 1)}), or give another checkpoint folder."
        )

    def _refuse_foreign(self) -> None:
        """A folder with other things in it and no manifest is not ours to clear."""
        foreign = [p.name for p in self.path.iterdir() if p.name not in ("rows", "log", LOCK)]
        if foreign:
            raise ParameterError(
                f"checkpoint={os.fspath(self.path)!r} holds other files ({', '.join(sorted(foreign)[:3])}) "
                f"and no {MANIFEST}: give an empty or new folder."
            )

    def _ours(self) -> list[Path]:
        return [p for folder in (self.rows_dir, self.log_dir) if folder.is_dir()
                for p in [*folder.glob("part-*.parquet"), *folder.glob(".part-*.tmp")]]  # fmt: skip

    def _clear(self) -> None:
        """Remove the parts and the manifest (``resume=False``): only files a checkpoint writes."""
        for path in self._ours():
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.path / MANIFEST).unlink()

    def _clean(self) -> None:
        """Remove what a killed run left half-done: temporary files, log parts without rows."""
        rows = {p.name for p in self.rows_dir.glob("part-*.parquet")}
        for path in self._ours():
            if path.name.endswith(".tmp") or (path.parent == self.log_dir and path.name not in rows):
                path.unlink()

    def _scan(self, retry_errors: bool) -> None:
        import numpy as np
        import pyarrow.parquet as pq

        done = self._done
        parts = sorted(self.rows_dir.glob("part-*.parquet"), key=_part_number)
        for path in parts:  # in order: a row run again (retry_errors) counts as its last run
            table = pq.read_table(path, columns=[ROW, "error"])
            rows = table.column(ROW).to_numpy()
            if not len(rows):
                continue
            if rows.max() >= len(done):
                done = np.concatenate([done, np.zeros(int(rows.max()) + 1 - len(done), dtype=bool)])
            ok = table.column("error").is_null().to_numpy(zero_copy_only=False)
            done[rows] = ok if retry_errors else True
        self._done = done
        self.finished = int(done.sum())
        self._part = _part_number(parts[-1]) + 1 if parts else 0

    def is_done(self, index: int) -> bool:
        """Whether row ``index`` of the data is finished already (it is not sent again)."""
        return index < len(self._done) and bool(self._done[index])

    def _write_manifest(self) -> None:
        self.manifest.update(rows_done=self.finished, parts=self._part, updated_at=_now())
        text = json.dumps(self.manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        temporary = self.path / f".{MANIFEST}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.path / MANIFEST)

    # -- writing parts ----------------------------------------------------------------------------

    def add(
        self, index: int, data: dict[str, Any], result: dict[str, Any], records: list[Message], batch_id: str
    ) -> None:
        """Row ``index`` finished: keep it for the next part (written when it is due)."""
        self._rows.append((index, data, result))
        self._log.extend((batch_id, index, message) for message in records)
        if len(self._rows) >= self.part_rows or self.due():
            self.flush()

    def due(self) -> bool:
        """Whether finished rows have waited :data:`PART_SECONDS` for their part."""
        return bool(self._rows) and time.monotonic() - self._flushed_at >= self.part_seconds

    def flush(self) -> None:
        """Write the rows finished since the last part, and their log, as part N."""
        if not self._rows:
            return
        name = f"part-{self._part:06d}.parquet"
        log, rows = self._log_table(), self._rows_table()
        self._write(self.log_dir, name, log)
        self._write(self.rows_dir, name, rows)  # now the rows are finished
        self._part += 1
        self.finished += len(self._rows)
        self._rows.clear()
        self._log.clear()
        self._flushed_at = time.monotonic()
        self._write_manifest()

    def _write(self, folder: Path, name: str, table: Any) -> None:
        import pyarrow.parquet as pq

        temporary = folder / f".{name}.tmp"
        with open(temporary, "wb") as file:
            pq.write_table(table, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, folder / name)

    def _rows_table(self) -> Any:
        import pyarrow as pa

        results = list(self._rows[0][2])
        names = [n for n in dict.fromkeys(k for _, data, _ in self._rows for k in data)
                 if str(n) not in results and str(n) != ROW]  # fmt: skip
        columns = {ROW: pa.array([index for index, _, _ in self._rows], pa.int64())}
        for name in names:
            columns[str(name)] = _column(pa, [data.get(name) for _, data, _ in self._rows])
        for name in results:
            columns[name] = _column(pa, [result[name] for _, _, result in self._rows])
        return pa.table(columns)

    def _log_table(self) -> Any:
        import pyarrow as pa

        records = [_record(message) for _, _, message in self._log]
        columns = {
            "batch_id": pa.array([batch for batch, _, _ in self._log], pa.string()),
            "row": pa.array([row for _, row, _ in self._log], pa.int64()),
        }
        for name, kind in _log_types(pa).items():
            values = [record.get(name) for record in records]
            if name in JSON_COLUMNS:
                values = [
                    None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values
                ]
            columns[name] = pa.array(values, kind)
        return pa.table(columns)

    def close(self) -> None:
        self.flush()

    # -- reading back ---------------------------------------------------------------------------

    def results(self, dtypes: dict[str, str]) -> dict[str, Any]:
        """Every finished row's columns in the data's order (a row run again: its last run), as
        pandas Series (:data:`ROW` an array), those named in ``dtypes`` in those dtypes.

        A column at a time, read from every part and made into its Series before the next is
        read: at the peak, memory holds the result and one column twice, not the result twice."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.rows_dir.glob("part-*.parquet"), key=_part_number)
        schemas = [pq.read_schema(path) for path in parts]
        counts = [pq.read_metadata(path).num_rows for path in parts]

        def column(name: str) -> list[Any]:
            return [pq.read_table(path, columns=[name], use_threads=False).column(name) if name in schema.names
                    else pa.nulls(rows) for path, schema, rows in zip(parts, schemas, counts, strict=True)]  # fmt: skip

        positions = np.concatenate([c.to_numpy() for c in column(ROW)] or [np.zeros(0, np.int64)])
        take = None  # the parts' rows are in order, each once: no column is moved
        if len(positions) > 1 and not bool((positions[1:] > positions[:-1]).all()):
            order = np.argsort(positions, kind="stable")
            ranked = positions[order]
            last = np.append(ranked[1:] != ranked[:-1], True)  # of a row run twice, its last run
            take, positions = pa.array(order[last]), ranked[last]
            del order, ranked, last
        columns: dict[str, Any] = {ROW: positions}
        for name in dict.fromkeys(n for schema in schemas for n in schema.names if n != ROW):
            columns[name] = _series(pa, _chunked(pa, column(name), dtypes.get(name)), take, dtypes.get(name))
        return columns

    def log_reader(self, batch_id: str) -> Callable[[], list[tuple[int, Message]]]:
        """What ``BatchLog.link`` reads when the batch log is exported: this run's records."""
        folder = self.log_dir

        def read() -> list[tuple[int, Message]]:
            import pyarrow.parquet as pq

            entries = []
            for path in sorted(folder.glob("part-*.parquet"), key=_part_number):
                table = pq.read_table(path, filters=[("batch_id", "==", batch_id)])
                entries.extend((row["row"], Message.from_dict(row)) for row in table.to_pylist())
            return entries

        return read


_ARROW_TYPES = {"string": "string", "Int64": "int64", "Float64": "float64", "boolean": "bool_"}


def _chunked(pa: Any, chunks: list[Any], dtype: str | None) -> Any:
    """One column's chunks from every part as one chunked array, of the type ``dtype`` reads
    from; the data's columns of the type they share (else the widest, else text)."""
    if dtype is not None:
        kind = getattr(pa, _ARROW_TYPES[dtype])()
        return pa.chunked_array([c.cast(kind) for c in chunks], kind)
    types = list(dict.fromkeys(c.type for c in chunks))
    if len(types) == 1:
        return pa.chunked_array(chunks, types[0])
    try:
        kind = pa.unify_schemas([pa.schema([("c", t)]) for t in types], promote_options="permissive")[0].type
        return pa.chunked_array([c.cast(kind) for c in chunks], kind)
    except (pa.ArrowException, TypeError, ValueError):  # a column whose type changed between parts
        return pa.chunked_array([c.cast(pa.string()) for c in chunks], pa.string())


def _series(pa: Any, column: Any, take: Any, dtype: str | None) -> pd.Series:
    import pandas as pd

    if take is not None:
        column = column.take(take)
    if dtype is None:
        return column.to_pandas()
    return pd.Series(pd.api.types.pandas_dtype(dtype).__from_arrow__(column), copy=False)


def _hold(path: Path) -> int | None:
    """An exclusive lock on ``path`` for this run, which the OS drops if the process dies (none
    where there is no ``flock``: Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise ParameterError(
            f"checkpoint {os.fspath(path.parent)!r} is in use by another run (another kernel or "
            "process): wait for it to end, or give another folder."
        ) from None
    return descriptor


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
