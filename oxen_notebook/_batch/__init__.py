"""Many one-shot requests at once: ``Session.map``, ``Session.compare``, their progress display.

The batch layer sits above the Session and uses it only through :class:`BatchSession`, the small
protocol declared in ``_types.py``: ``astream_ask(ask)`` (a one-shot :class:`Ask`), the model catalogue, the clients
and the batch log.
"""

from __future__ import annotations

from ._budget import Budget, Rate, check_limit, priced_rate
from ._commit import commit_results, commit_tables, read_commit_metadata, template_sha256
from ._compare import compare_html, run_compare
from ._estimate import Estimate, PromptCounter, estimate_map, pricing_problem, reply_rule
from ._map import execute, run_map
from ._progress import BatchProgress, make_progress
from ._results import MAP_COLUMNS, outcome_values
from ._templates import RowTemplate
from ._templates import table as read_table
from ._typed import BatchSchema
from ._types import BatchSession, EndedRows, Job, Outcome, RowSink

__all__ = [
    "MAP_COLUMNS",
    "BatchProgress",
    "BatchSchema",
    "BatchSession",
    "Budget",
    "EndedRows",
    "Estimate",
    "Job",
    "Outcome",
    "PromptCounter",
    "Rate",
    "RowSink",
    "RowTemplate",
    "check_limit",
    "commit_results",
    "commit_tables",
    "compare_html",
    "estimate_map",
    "execute",
    "make_progress",
    "outcome_values",
    "priced_rate",
    "pricing_problem",
    "read_commit_metadata",
    "read_table",
    "reply_rule",
    "run_compare",
    "run_map",
    "template_sha256",
]
