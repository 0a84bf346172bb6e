"""Many one-shot requests at once: ``Session.map``, ``Session.compare``, their progress display.

The batch layer sits above the Session and uses it only through :class:`BatchSession`, the small
protocol declared in ``_runner.py``: ``astream(..., history=False)``, the model catalogue, the clients
and the batch log.
"""

from __future__ import annotations

from ._commit import commit_results
from ._compare import compare_html, run_compare
from ._estimate import Estimate, estimate_map
from ._map import run_map
from ._progress import BatchProgress, make_progress
from ._results import MAP_COLUMNS

__all__ = [
    "MAP_COLUMNS", "BatchProgress", "Estimate", "commit_results", "compare_html", "estimate_map",
    "make_progress", "run_compare", "run_map",
]  # fmt: skip
