"""Progress for batches: an ipywidgets bar in a notebook, a text bar in a terminal, or a callback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .._frontend import in_notebook
from .._math import escape_text

__all__ = ["BatchProgress", "make_progress"]


@dataclass
class BatchProgress:
    """Where a batch stands: rows finished (``done``, including ``failed``) out of ``total``
    (``None`` while it is not known: a generator's rows)."""

    total: int | None
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started (until it ended)."""
        return (self.ended or time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        """Rows finished per second."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (``None`` before the first row finishes)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 and self.total is not None else None

    def line(self) -> str:
        """``412/1000 · 3 failed · 85.2 rows/s · ETA 7s``."""
        parts = [f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,} rows"]
        if self.failed:
            parts.append(f"{self.failed:,} failed")
        parts.append(f"{self.rate:.1f} rows/s")
        if self.ended is None:
            eta = self.eta
            parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA ?" if self.total else "")
        else:
            parts.append(f"in {_duration(self.elapsed)}")
        return " · ".join(part for part in parts if part)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _Display:
    def update(self, stats: BatchProgress) -> None: ...

    def close(self, stats: BatchProgress, note: str | None) -> None: ...


class _Callback(_Display):
    def __init__(self, callback: Callable[[BatchProgress], Any]) -> None:
        self.callback = callback

    def update(self, stats: BatchProgress) -> None:
        self.callback(stats)

    def close(self, stats: BatchProgress, note: str | None) -> None:
        pass


class _TextBar(_Display):
    width = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def _write(self, stats: BatchProgress, end: str) -> None:
        total = stats.total
        filled = int(self.width * stats.done / total) if total else self.width * (total == 0)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {stats.line()}{end}")
        self.stream.flush()

    def update(self, stats: BatchProgress) -> None:
        self._write(stats, "")

    def close(self, stats: BatchProgress, note: str | None) -> None:
        self._write(stats, f" · {note}\n" if note else "\n")


class _WidgetBar(_Display):
    def __init__(self, total: int | None) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=max(total or 0, 1), description="oxen map")
        self.known = total is not None
        self.label = widgets.HTML()
        self.box = widgets.HBox([self.bar, self.label])
        display(self.box)

    def update(self, stats: BatchProgress) -> None:
        with self.bar.hold_sync():
            if not self.known:  # a generator's rows: the bar shows only that rows are finishing
                self.bar.max = max(stats.done, 1)
            self.bar.value = stats.done
        self.label.value = escape_text(stats.line())

    def close(self, stats: BatchProgress, note: str | None) -> None:
        self.update(stats)
        self.bar.bar_style = "warning" if note else ("danger" if stats.failed else "success")
        if note:
            self.label.value = escape_text(f"{stats.line()} · {note}")


def make_progress(progress: bool | Callable[[BatchProgress], Any], total: int | None) -> _Display:
    """A widget bar in a notebook kernel (a text bar if ipywidgets is missing), a text bar on
    stderr elsewhere, nothing for ``False``, or ``progress(stats)`` for a callable."""
    if callable(progress) and not isinstance(progress, bool):
        return _Callback(progress)
    if not progress:
        return _Display()
    if in_notebook():
        try:
            return _WidgetBar(total)
        except ImportError:
            pass
    return _TextBar(sys.stderr)
