"""``evaluate(checkpoint=DIR)``: every finished request on disk within about a second, so a run
stopped any way (an error, Ctrl-C, a killed kernel) goes on where it stopped.

Requests are keyed by what they send (the filled prompt, model, system prompt, parameters and
repeat), not by their position: a row edited, added, removed or moved between two runs is sent
again if and only if its request changed, and a stored reply is never shown next to a row it did
not answer. The log is ``requests.jsonl`` in ``DIR``, one JSON line a request, appended, flushed at
once and fsynced at most every ``SYNC_EVERY`` seconds; a line cut short by a crash is skipped on
reading (and said). Failed requests count as finished unless ``retry_errors=True``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ParameterError

if TYPE_CHECKING:
    from .._batch import Job, Outcome

__all__ = ["RequestLog", "Sinks"]

LOG = "requests.jsonl"
SYNC_EVERY = 1.0
_log = logging.getLogger("oxen_notebook")


class RequestLog:
    """The finished requests of a checkpointed evaluation: read at the start, appended as they end."""

    def __init__(self, folder: Any, keys: list[str | None], *, resume: bool, retry_errors: bool) -> None:
        if not isinstance(folder, (str, os.PathLike)):
            raise ParameterError(
                f"checkpoint={folder!r} is invalid: give a folder's path, such as 'runs/eval'."
            )
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ParameterError(f"checkpoint={str(folder)!r} is a file: give a folder's path.")
        self.path = self.folder / LOG
        self.keys: list[str | None] = list(keys)  # the runner's job index -> its request key
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = 0
        if resume and self.path.exists():
            self._read(retry_errors)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w" if not resume else "a", encoding="utf-8")
        self._synced = time.monotonic()

    def _read(self, retry_errors: bool) -> None:
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                    key, values = entry["key"], entry["values"]
                except (ValueError, KeyError, TypeError):
                    self.torn += 1
                    continue
                if retry_errors and values.get("error") is not None:
                    self.done.pop(key, None)
                    continue
                self.done[key] = values
        if self.torn:
            _log.warning(
                "oxen_notebook: %s: skipped %d damaged line(s); those requests run again",
                self.path,
                self.torn,
            )

    def stored(self, key: str) -> dict[str, Any] | None:
        return self.done.get(key)

    # -- the runner's sink ------------------------------------------------------------------------

    def add_values(self, index: int, values: dict[str, Any]) -> None:
        if self.keys[index] is None:  # an unfillable row: nothing was sent
            return
        parsed = values.get("parsed")
        if hasattr(parsed, "model_dump"):
            parsed = parsed.model_dump(mode="json")
        record = {"key": self.keys[index], "values": {**values, "parsed": parsed}}
        self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._file.flush()
        if time.monotonic() - self._synced >= SYNC_EVERY:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class Sinks:
    """Several row sinks as one (the live view and the request log)."""

    def __init__(self, *sinks: Any, values: Any) -> None:
        self.sinks = [s for s in sinks if s is not None]
        self.values = values  # Outcome -> its values, for the log

    def add(self, index: int, job: Job, outcome: Outcome) -> None:
        for sink in self.sinks:
            if isinstance(sink, RequestLog):
                sink.add_values(index, self.values(outcome))
            else:
                sink.add(index, job, outcome)

    def due(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
