"""``map(..., checkpoint=DIR)``: finished rows reach disk within a second, and a run resumes.

::

    DIR/manifest.json             what the run is (template, model, parameters, schema=, system
                                  prompt, attachments, the data's columns) and how far it got
    DIR/rows/part-000000.parquet  finished rows: __row__ (the row's position in the data), __key__
                                  (its key, ``_rowkeys``), the data's columns, then the result's
                                  (parsed= as JSON text)
    DIR/log/part-000000.parquet   the same rows' batch-log records: batch_id, row, message columns
    DIR/pending/rows-000007-002.parquet, log-000007-002.parquet
                                  rows finished since part 6, written about every second
    DIR/damaged/                  parts that could not be read, set aside (their rows ran again)

Every file is written whole or not at all (``_parts.write_part``). Log part N goes into place
before rows part N; on resume a log part without its rows part is removed (its rows run again).
A part is written every :data:`PART_ROWS` finished rows or :data:`PART_SECONDS`, whichever comes
first, and at the end of the run (also after a Ctrl-C or an exception). Between parts, the rows
finished since the last write go to ``pending/`` within :data:`SYNC_SECONDS` (the runner looks
every 0.25 s), so a killed process loses about a second of finished rows; part N, once written,
replaces pending files N-*, and a resumed run turns pending files left by a killed one into parts.

A resumed run matches finished rows to the data by key (``_rowkeys``), not by position: a row
already finished is never sent again, an edited, inserted or moved row is. A row that failed is
finished too (its error is stored), unless ``retry_errors``; a row cut short by an interrupt is not
stored and runs again. A part that cannot be read (cut short, damaged) is moved to ``damaged/``,
said in one line, and its rows run again.

Memory: the rows finished since the last part; on resume, about 33 bytes per finished row
(``_rowkeys.Finished``). Nothing else grows with the row count until the result is read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._errors import ParameterError
from .._records import Message
from ._parts import (
    KEY,
    ROW,
    DamagedPart,
    chunked,
    log_table,
    merged,
    part_number,
    read_part,
    rows_table,
    series,
    write_part,
)
from ._rowkeys import Finished
from ._sources import require_pyarrow

__all__ = ["PART_ROWS", "PART_SECONDS", "ROW", "SYNC_SECONDS", "Checkpoint", "fingerprint"]

PART_ROWS = 1_000
PART_SECONDS = 5.0
SYNC_SECONDS = 0.75
MANIFEST = "manifest.json"
LOCK = ".lock"  # held (flock) while a run has the folder open
PENDING = "pending"
DAMAGED = "damaged"
_FORMAT = 2  # 2: rows carry their key
#: What must be the same for a run to resume, and how an error names it.
_COMPARED = {
    "template": "template",
    "model": "model",
    "params": "parameters",
    "schema": "schema=",
    "system": "system prompt",
    "attachments": "images=/files=",
    "data": "data's columns",
}
_SHOWN = ("template", "model", "params")  # the others are hashes: named, not shown
_log = logging.getLogger("oxen_notebook")


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
    return {**{key: manifest.get(key) for key in _COMPARED if key != "data"}, "data": data.get("columns")}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"), key=part_number)


class Checkpoint:
    """One checkpoint folder: its manifest, the rows earlier runs finished, the parts being written.

    ``key_of`` gives the key of a row's stored data: what a part written before rows carried
    their key (format 1) is matched by."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: dict[str, Any],
        *,
        key_of: Callable[[dict[str, Any]], int],
        resume: bool = True,
        retry_errors: bool = False,
        part_rows: int = PART_ROWS,
        part_seconds: float = PART_SECONDS,
        sync_seconds: float = SYNC_SECONDS,
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
        self.pending_dir = self.path / PENDING
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.sync_seconds = sync_seconds
        self._key_of = key_of
        import numpy as np

        self.earlier = Finished(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
        self._earlier_parts = 0  # parts 0 .. N-1 are the earlier runs' (numbered in ``earlier``)
        self.finished = 0  # rows in the parts
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
        self._rows: list[tuple[int, int, dict[str, Any], dict[str, Any]]] = []
        self._log: list[tuple[str, int, Message]] = []
        self._tables: list[tuple[Any, Any]] = []  # rows since the last part already in pending files
        self._held = 0  # rows in those tables
        self._flushed_at = self._synced_at = time.monotonic()

    def _open(self, manifest: dict[str, Any], resume: bool, retry_errors: bool) -> None:
        new = {"format": _FORMAT, **_jsonable(manifest)}
        old = self._read_manifest(resume)
        if old is not None and resume:
            self._fold()
        # With no part yet there is nothing to keep: a call that failed before any row finished
        # (a mistyped model, say) does not hold the folder to its settings.
        if old is not None and resume and _parts(self.rows_dir):
            changed = [key for key in _COMPARED if _compared(old)[key] != _compared(new)[key]]
            if changed:
                raise ParameterError(self._changed(old, new, changed))
            self._clean()
            self._scan(retry_errors)
            new["created_at"] = old.get("created_at") or _now()
        else:
            if old is None:
                self._refuse_foreign()
            self._clear()
            new["created_at"] = _now()
        self.manifest = new
        for folder in (self.rows_dir, self.log_dir, self.pending_dir):
            folder.mkdir(parents=True, exist_ok=True)
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
        parts = len(_parts(self.rows_dir))
        return (
            f"checkpoint {os.fspath(self.path)!r} differs from this call in its {what}: resume=False "
            f"starts over (clearing its {parts} part{'s' * (parts != 1)}), or give another checkpoint folder."
        )

    def _refuse_foreign(self) -> None:
        """A folder with other things in it and no manifest is not ours to clear."""
        ours = ("rows", "log", PENDING, DAMAGED, LOCK)
        foreign = [p.name for p in self.path.iterdir() if p.name not in ours]
        if foreign:
            raise ParameterError(
                f"checkpoint={os.fspath(self.path)!r} holds other files ({', '.join(sorted(foreign)[:3])}) "
                f"and no {MANIFEST}: give an empty or new folder."
            )

    def _ours(self) -> list[Path]:
        folders = [f for f in (self.rows_dir, self.log_dir, self.pending_dir) if f.is_dir()]
        return [p for f in folders for p in [*f.glob("*.parquet"), *f.glob(".*.tmp")]]

    def _clear(self) -> None:
        """Remove the parts and the manifest (``resume=False``): only files a checkpoint writes."""
        for path in self._ours():
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.path / MANIFEST).unlink()

    def _fold(self) -> None:
        """Pending files a killed run left become parts, after its last one (those part N has
        replaced are removed); a pending rows file without its log is dropped (its rows run again)."""
        pending = sorted(self.pending_dir.glob("rows-*.parquet")) if self.pending_dir.is_dir() else []
        for folder in (self.rows_dir, self.log_dir) if pending else ():
            folder.mkdir(exist_ok=True)
        written = {p.name for p in self.rows_dir.glob("part-*.parquet")}
        last = _parts(self.rows_dir)
        number = part_number(last[-1]) + 1 if last else 0
        for rows in pending:
            log = self.pending_dir / ("log-" + rows.name[len("rows-") :])
            if f"part-{rows.name.split('-')[1]}.parquet" in written or not log.exists():
                rows.unlink()
                continue
            name = f"part-{number:06d}.parquet"
            os.replace(log, self.log_dir / name)  # the log first, as a part is written
            os.replace(rows, self.rows_dir / name)
            number += 1
        for path in self.pending_dir.glob("*") if self.pending_dir.is_dir() else []:
            path.unlink()  # logs without rows, temporary files

    def _clean(self) -> None:
        """Remove what a killed run left half-done: temporary files, log parts without rows."""
        rows = {p.name for p in self.rows_dir.glob("part-*.parquet")}
        for path in self._ours():
            if path.name.endswith(".tmp") or (path.parent == self.log_dir and path.name not in rows):
                path.unlink()

    def _set_aside(self, path: Path, error: DamagedPart) -> None:
        """Move a part that cannot be read (and its log) to ``damaged/``; say so in one line."""
        aside = self.path / DAMAGED
        aside.mkdir(exist_ok=True)
        for folder in (self.rows_dir, self.log_dir):
            with contextlib.suppress(FileNotFoundError):
                os.replace(folder / path.name, aside / f"{folder.name}-{path.name}")
        where = f"checkpoint {os.fspath(self.path)!r}: rows/{path.name}"
        _log.warning(
            "oxen_notebook: %s cannot be read (%s); moved to %s/, its rows run again.", where, error, DAMAGED
        )

    def _scan(self, retry_errors: bool) -> None:
        """Read every part's keys and positions (a damaged part set aside) into ``earlier``."""
        import numpy as np

        keys, positions, usable = [], [], []
        parts = _parts(self.rows_dir)
        for path in parts:  # in order: a row run again (retry_errors) counts as its last run
            try:
                table = read_part(path)  # the whole part: a damaged page anywhere shows here
                key = table.column(KEY).to_numpy() if KEY in table.column_names else self._keys(table)
            except DamagedPart as exc:
                self._set_aside(path, exc)
                continue
            keys.append(key)
            positions.append(table.column(ROW).to_numpy())
            ok = table.column("error").is_null().to_numpy(zero_copy_only=False)
            usable.append(ok if retry_errors else np.ones(len(ok), bool))
            self.finished += len(key)
        self._part = self._earlier_parts = part_number(parts[-1]) + 1 if parts else 0
        if keys:
            self.earlier = Finished(np.concatenate(keys), np.concatenate(positions), np.concatenate(usable))

    def _keys(self, table: Any) -> Any:
        """The keys of a part written before rows carried theirs, from its data's columns."""
        import numpy as np

        from ._results import MAP_COLUMNS
        from ._typed import PARSED

        data = table.drop_columns([n for n in table.column_names if n in (ROW, PARSED, *MAP_COLUMNS)])
        return np.array([self._key_of(row) for row in data.to_pylist()], dtype=np.int64)

    def reuse(self, index: int, key: int) -> bool:
        """Whether row ``index`` of the data (its key ``key``) is finished already: if so it is
        not sent again, and its stored row answers it."""
        return self.earlier.claim(index, key)

    @property
    def reused(self) -> int:
        """Rows an earlier run finished that answer rows of this run's data."""
        return self.earlier.reused

    def _write_manifest(self) -> None:
        self.manifest.update(rows_done=self.finished, parts=self._part, updated_at=_now())
        text = json.dumps(self.manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        temporary = self.path / f".{MANIFEST}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.path / MANIFEST)

    # -- writing ----------------------------------------------------------------------------------

    def add(
        self,
        index: int,
        key: int,
        data: dict[str, Any],
        result: dict[str, Any],
        records: list[Message],
        batch_id: str,
    ) -> None:
        """Row ``index`` finished: keep it for the next pending file and part (written when due)."""
        if not self._rows:
            self._synced_at = time.monotonic()  # the oldest row not on disk: its clock starts
        self._rows.append((index, key, data, result))
        self._log.extend((batch_id, index, message) for message in records)
        if self.due():
            self.flush()

    def _part_due(self) -> bool:
        held = self._held + len(self._rows)
        return held >= self.part_rows or (
            held > 0 and time.monotonic() - self._flushed_at >= self.part_seconds
        )

    def due(self) -> bool:
        """Whether rows have waited long enough: for their part, or for a pending file."""
        waited = bool(self._rows) and time.monotonic() - self._synced_at >= self.sync_seconds
        return waited or self._part_due()

    def _tabled(self) -> None:
        """The rows not in a table yet, as one (rows and log): each row is converted once."""
        if self._rows:
            self._tables.append((log_table(self._log), rows_table(self._rows)))
            self._held += len(self._rows)
            self._rows.clear()
            self._log.clear()

    def flush(self) -> None:
        """Write what is due: the next part, or the rows finished since the last write to ``pending/``."""
        if self._part_due():
            self.close()
        elif self._rows:
            self._tabled()
            log, rows = self._tables[-1]
            name = f"{self._part:06d}-{len(self._tables) - 1:03d}.parquet"
            write_part(self.pending_dir, f"log-{name}", log)
            write_part(self.pending_dir, f"rows-{name}", rows)

    def close(self) -> None:
        """Write the rows finished since the last part, and their log, as part N."""
        self._tabled()
        if not self._tables:
            return
        name = f"part-{self._part:06d}.parquet"
        write_part(self.log_dir, name, merged([log for log, _ in self._tables]))
        write_part(self.rows_dir, name, merged([rows for _, rows in self._tables]))  # now they are finished
        for path in self.pending_dir.glob(f"*-{self._part:06d}-*.parquet"):
            path.unlink()
        self._part += 1
        self.finished += self._held
        self._tables.clear()
        self._held = 0
        self._flushed_at = time.monotonic()
        self._write_manifest()

    # -- reading back ---------------------------------------------------------------------------

    def results(self, dtypes: dict[str, str]) -> dict[str, Any]:
        """The columns of the rows that answer this run's data, in the data's order (a row run
        again: its last run), as pandas Series (:data:`ROW` an array of positions), those named in
        ``dtypes`` in those dtypes. A row of an earlier run answers the row it was matched to; one
        matched to none (its row was edited or removed, or not reached before an interrupt) is
        left out.

        A column at a time, read from every part and made into its Series before the next is
        read: at the peak, memory holds the result and one column twice, not the result twice."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = _parts(self.rows_dir)
        schemas = [pq.read_schema(path) for path in parts]
        sizes = [pq.read_metadata(path).num_rows for path in parts]
        chunks, start = [], 0
        for path, size in zip(parts, sizes, strict=True):
            if part_number(path) < self._earlier_parts:  # an earlier run's: where it answers now
                chunks.append(self.earlier.moved[start : start + size])
                start += size
            else:
                chunks.append(read_part(path, [ROW]).column(ROW).to_numpy())
        positions = np.concatenate(chunks or [np.zeros(0, np.int64)])
        del chunks
        take = None  # the parts' rows are in order, each once, all answering a row: none is moved
        if len(positions) and not (positions[0] >= 0 and bool((positions[1:] > positions[:-1]).all())):
            order = np.argsort(positions, kind="stable")
            order = order[positions[order] >= 0]
            ranked = positions[order]
            last = np.ones(len(ranked), dtype=bool)
            last[:-1] = ranked[1:] != ranked[:-1]  # of a row run twice, its last run
            take, positions = pa.array(order[last]), ranked[last]
            del order, ranked, last

        def column(name: str) -> list[Any]:
            return [
                read_part(path, [name]).column(name) if name in schema.names else pa.nulls(size)
                for path, schema, size in zip(parts, schemas, sizes, strict=True)
            ]

        columns: dict[str, Any] = {ROW: positions}
        for name in dict.fromkeys(n for schema in schemas for n in schema.names if n not in (ROW, KEY)):
            columns[name] = series(pa, chunked(pa, column(name), dtypes.get(name)), take, dtypes.get(name))
        return columns

    def log_reader(self, batch_id: str) -> Callable[[], list[tuple[int, Message]]]:
        """What ``BatchLog.link`` reads when the batch log is exported: this run's records (a log
        part that cannot be read is left out, said in one line)."""
        folder, where = self.log_dir, os.fspath(self.path)

        def read() -> list[tuple[int, Message]]:
            import pyarrow.compute as pc

            entries = []
            for path in _parts(folder):
                try:
                    table = read_part(path)
                except DamagedPart as exc:
                    _log.warning(
                        "oxen_notebook: checkpoint %r: log/%s cannot be read (%s)", where, path.name, exc
                    )
                    continue
                table = table.filter(pc.equal(table.column("batch_id"), batch_id))
                entries.extend((row["row"], Message.from_dict(row)) for row in table.to_pylist())
            return entries

        return read


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
