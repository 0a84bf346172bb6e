"""An evaluation while it runs: each variant's requests done, errors, score so far (with its
interval) and the cost spent, redrawn at most every ``EVERY`` seconds.

:class:`Live` is the runner's row sink (``add`` is called on the batch's loop as each request
finishes; it only appends) and its progress display (``update`` on the caller's thread, where the
scoring and drawing happen). In a notebook it draws into one ipywidgets ``HTML`` (escaped text
only); in a terminal, one line on stderr; with ``progress=False``, nothing; with a callable, it is
called with the batch's :class:`~oxen_notebook._batch.BatchProgress`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._batch import EndedRows
from .._frontend import in_notebook
from .._math import escape_text
from . import _stats

if TYPE_CHECKING:
    from .._batch import BatchProgress
    from ._scorers import Scorer

__all__ = ["Live"]

EVERY = 0.5


class Live(EndedRows):
    """Row sink (the rows ended, taken on the caller's thread) and progress display of one
    evaluation (see the module)."""

    def __init__(
        self,
        progress: bool | Callable[[BatchProgress], Any],
        arms: list[str],
        owners: list[list[tuple[str, dict[str, Any]]]],
        scorer: Scorer,
        estimate: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self._callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self._show = bool(progress) and self._callback is None
        self._arms = arms
        self._owners = owners  # job index -> the (arm, data row) pairs its reply answers
        self._scorer = scorer
        self._spent = 0.0
        self._tally = {arm: [0, 0, 0, 0.0] for arm in arms}  # done, errors, scored, score sum
        self._drawn = 0.0
        self._widget: Any = None
        self._estimate = ""
        if self._show and in_notebook():
            try:
                import ipywidgets as widgets
                from IPython.display import display

                self._widget = widgets.HTML()
                display(self._widget)
            except ImportError:
                self._widget = None
        if self._show and estimate is not None:  # what is about to be sent, before it is
            self._estimate = estimate()
            if self._estimate:
                self._draw_line(self._estimate)

    # -- the progress display (the caller's thread) ---------------------------------------------

    def update(self, stats: BatchProgress) -> None:
        if self._callback is not None:
            self._callback(stats)
            return
        now = time.monotonic()
        if not self._show or now - self._drawn < EVERY:
            return
        self._drawn = now
        self._draw(stats, final=False)

    def end(self, stats: BatchProgress, note: str | None) -> None:
        if self._callback is not None:  # the last word: every request finished (or the note says why not)
            self._callback(stats)
        if self._show:
            self._draw(stats, final=True, note=note)

    def _score_new(self) -> None:
        for index, outcome in self.take():
            self._spent += sum(m.cost_usd for m in outcome.replies if m.cost_usd is not None)
            message = outcome.message
            for arm, row in self._owners[index]:
                tally = self._tally[arm]
                tally[0] += 1
                if outcome.state != "done" or message is None:
                    tally[1] += 1
                    continue
                try:
                    score = self._scorer.grade(message.content, row, outcome.parsed)
                except Exception:
                    continue
                if score is not None and not (isinstance(score, float) and math.isnan(score)):
                    tally[2] += 1
                    tally[3] += float(score)

    def _lines(self, stats: BatchProgress, note: str | None) -> tuple[str, list[str]]:
        self._score_new()
        head = f"evaluating · {stats.line()} · ${self._spent:,.4f} spent"
        if note:
            head += f" · {note}"
        rows = []
        for arm, (done, errors, scored, total) in self._tally.items():
            if scored:
                interval = _stats.wilson(round(total), scored) if self._scorer.binary else None
                score = f"{total / scored:.3f}"
                if interval is not None:
                    score += f" [{interval.low:.3f}, {interval.high:.3f}]"
            else:
                score = "–"
            rows.append(f"{arm}: {done:,} done · {errors:,} errors · {self._scorer.name} {score}")
        return head, rows

    def _draw_line(self, line: str) -> None:
        if self._widget is not None:
            self._widget.value = f"<div class='oxen-eval-live'>{escape_text(line)}</div>"
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def _draw(self, stats: BatchProgress, *, final: bool, note: str | None = None) -> None:
        head, rows = self._lines(stats, note)
        if self._widget is not None:
            items = "".join(f"<li>{escape_text(row)}</li>" for row in rows)
            before = f"<p>{escape_text(self._estimate)}</p>" if self._estimate else ""
            self._widget.value = (
                f"<div class='oxen-eval-live'>{before}<b>{escape_text(head)}</b><ul>{items}</ul></div>"
            )
            return
        text = head + " | " + " | ".join(rows)
        sys.stderr.write(("\r" + text[:200]) + ("\n" if final else ""))
        sys.stderr.flush()
