"""The notebook's failed cells, as context for a prompt: ``{Err}``, ``{Err[n]}`` and ``%oxen fix``.

IPython's ``post_run_cell`` event hands over each cell's result; a cell that raised (or did not
compile) is kept as a :class:`CellFailure`: the exception's type and message, its traceback
trimmed to the user's frames (IPython's own frames dropped, runs of library frames folded into one
line, the frame that raised always kept; no ANSI codes), and the cell's source. ``%%oxen`` cells
and Ctrl-C are not kept: they are not the user's code failing.
"""

from __future__ import annotations

import contextlib
import re
import string
import sys
import sysconfig
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CellFailure", "CellFailures", "check_references", "fix_prompt"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What IPython and ipykernel name a cell's code: "<ipython-input-3-…>", ".../ipykernel_123/456.py".
_CELL_FILE = re.compile(r"(<ipython-input-\d+-[0-9a-f]+>|ipykernel_\d+[/\\]\d+\.py)$")
_LIBRARY_DIRS = tuple(
    {
        str(Path(p).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_path(key))
    }
)
_MAX_SOURCE_LINES = 80


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _is_library(filename: str) -> bool:
    if filename.startswith("<frozen") or filename.startswith("<string>"):
        return True
    try:
        resolved = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return resolved.startswith(_LIBRARY_DIRS)


def _package(filename: str) -> str:
    """``pandas`` for ``.../site-packages/pandas/core/frame.py``: how a folded run is named."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            at = parts.index(marker)
            if at + 1 < len(parts):
                return Path(parts[at + 1]).stem
    return "the standard library"


@dataclass(frozen=True)
class CellFailure:
    """One failed cell: ``In[cell]``'s source, and its exception as text a model can read."""

    cell: int | None
    source: str
    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException, source: str, cell: int | None) -> CellFailure:
        return cls(cell, source, type(exc).__name__, _message(exc), _user_traceback(exc, cell))

    def __str__(self) -> str:
        where = f"cell In[{self.cell}]" if self.cell is not None else "cell"
        lines = self.source.rstrip("\n").splitlines()
        source = "\n".join(lines[:_MAX_SOURCE_LINES])
        if len(lines) > _MAX_SOURCE_LINES:
            source += f"\n# … {len(lines) - _MAX_SOURCE_LINES} more lines not shown"
        parts = [f"The notebook {where} failed with {self.type}: {self.message}"]
        if source:
            parts.append(f"The cell's code:\n```python\n{source}\n```")
        if self.traceback:
            parts.append(f"Traceback (most recent call last; the user's frames):\n```\n{self.traceback}\n```")
        return "\n\n".join(parts)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.msg:  # str() adds the cell's internal file name
        return strip_ansi(exc.msg)
    return strip_ansi(str(exc))


def _where(filename: str) -> str:
    """A library frame's file from its package on (``pandas/core/frame.py``), else its name."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    return Path(filename).name


def _user_traceback(exc: BaseException, cell: int | None) -> str:
    """The traceback's frames from the first frame of the user's code on, library runs folded."""
    here = f"In[{cell}]" if cell is not None else "the cell"
    tail = f"{type(exc).__name__}: {_message(exc)}"
    if isinstance(exc, SyntaxError):  # the cell did not compile: its frames are IPython's
        lines = [f"  {here}, line {exc.lineno}"] if exc.lineno else []
        if exc.text:
            lines.append(f"    {exc.text.rstrip()}")
            if exc.offset:
                lines.append("    " + " " * (exc.offset - 1 - (len(exc.text) - len(exc.text.lstrip()))) + "^")
        return "\n".join([*lines, tail])
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if not _is_library(f.filename)), None)
    if first is None:  # raised inside a library called from nowhere we know: keep the last frame
        first = max(len(frames) - 1, 0)
    frames = frames[first:]
    cell_file = frames[0].filename if frames and _CELL_FILE.search(frames[0].filename) else None
    out: list[str] = []
    folded: list[str] = []

    def fold() -> None:
        if folded:
            names = ", ".join(dict.fromkeys(folded))
            out.append(f"  … {len(folded)} frame{'s' if len(folded) > 1 else ''} in {names} …")
            folded.clear()

    for index, frame in enumerate(frames):
        last = index == len(frames) - 1
        if _is_library(frame.filename) and not last:
            folded.append(_package(frame.filename))
            continue
        fold()
        if frame.filename == cell_file:
            where = here
        elif _CELL_FILE.search(frame.filename):
            where = "an earlier cell"
        else:
            where = f'File "{_where(frame.filename)}"'
        out.append(f"  {where}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            out.append(f"    {frame.line.strip()}")
    fold()
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and (type(cause), _message(cause)) != (type(exc), _message(exc)):
        out.append(f"  (raised while handling {type(cause).__name__}: {_message(cause)})")
    out.append(tail)
    return "\n".join(out)


class CellFailures:
    """The kernel's failed cells, newest last (at most ``limit``), as ``{Err}`` reads them.

    ``failures[n]`` is cell ``In[n]``'s failure (``n > 0``), or the ``n``-th from the end
    (``n < 0``: ``failures[-1]`` is the last); formatting the object itself gives the last one.
    """

    def __init__(self, limit: int = 50) -> None:
        self._failures: deque[CellFailure] = deque(maxlen=limit)

    def register(self, shell: Any) -> None:
        shell.events.register("post_run_cell", self.record)

    def unregister(self, shell: Any) -> None:
        with contextlib.suppress(ValueError):  # not registered
            shell.events.unregister("post_run_cell", self.record)

    def record(self, result: Any) -> None:
        """IPython's ``post_run_cell`` callback."""
        exc = result.error_before_exec or result.error_in_exec
        source = getattr(result.info, "raw_cell", "") or ""
        if (
            exc is None
            or isinstance(exc, KeyboardInterrupt)
            or source.lstrip().startswith(("%oxen", "%%oxen"))
        ):
            return
        self._failures.append(CellFailure.from_exception(exc, source, result.execution_count))

    def __len__(self) -> int:
        return len(self._failures)

    @property
    def last(self) -> CellFailure | None:
        if self._failures:
            return self._failures[-1]
        exc = getattr(sys, "last_value", None)  # a failure before the extension was loaded
        if isinstance(exc, Exception):
            return CellFailure.from_exception(exc, "", None)
        return None

    def __getitem__(self, index: int) -> CellFailure:
        if isinstance(index, str) and index.lstrip("-").isdigit():  # "{Err[-2]}": format gives "-2"
            index = int(index)
        if not isinstance(index, int):
            raise KeyError(f"Err[{index!r}]: give a cell number, such as Err[3], or Err[-1] for the last.")
        if index < 0:
            if -index > len(self._failures):
                raise IndexError(f"Err[{index}]: only {len(self._failures)} failed cells are known.")
            return self._failures[index]
        for failure in self._failures:
            if failure.cell == index:
                return failure
        known = ", ".join(str(f.cell) for f in self._failures if f.cell is not None) or "none"
        raise KeyError(f"Err[{index}]: cell {index} did not fail (cells that failed: {known}).")

    def __format__(self, spec: str) -> str:
        last = self.last
        if last is None:
            raise LookupError(
                "{Err}: no cell has failed yet in this kernel; run the failing cell first "
                "(or write {{Err}} for literal braces)."
            )
        return format(last, spec)

    def __repr__(self) -> str:
        return f"<{len(self._failures)} failed cells; {{Err}} is the last, {{Err[n]}} cell n's>"


def fix_prompt(failure: CellFailure) -> str:
    """What ``%oxen fix`` sends: the failure and how to answer."""
    return (
        "Fix this notebook cell. In one or two sentences say why it failed, then give the whole "
        "corrected cell in a single ```python code block (no other code blocks).\n\n" + str(failure)
    )


def check_references(text: str, failures: CellFailures) -> None:
    """Raise ``LookupError`` (one line) for an ``{Err}`` / ``{Err[n]}`` in ``text`` that names no
    failure, so the prompt is not sent with the field left as written."""
    formatter = string.Formatter()
    try:
        fields = [field for _, field, _, _ in formatter.parse(text) if field]
    except ValueError:
        return
    for field in fields:
        if field != "Err" and not field.startswith(("Err[", "Err.")):
            continue
        try:
            value, _ = formatter.get_field(field, (), {"Err": failures})
            format(value, "")
        except LookupError as exc:
            raise LookupError(str(exc).strip("'\"")) from None
