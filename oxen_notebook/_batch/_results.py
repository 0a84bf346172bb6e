"""A map's result: :data:`MAP_COLUMNS` for each row's outcome, with their pandas dtypes, after
the data's columns (and the schema's, ``_typed.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._types import NOT_SENT

if TYPE_CHECKING:
    import pandas as pd

    from ._typed import BatchSchema
    from ._types import Outcome

__all__ = ["DTYPES", "MAP_COLUMNS", "outcome_values", "result_columns", "row_values"]

MAP_COLUMNS = [
    "reply",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "cost_usd",
    "cached",
    "error",
]


def _total(values: list[Any]) -> Any:
    """The sum of what is known (a failed request has no tokens or cost), or ``None``."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def result_columns(
    frame: pd.DataFrame, outcomes: list[Outcome], schema: BatchSchema | None = None
) -> pd.DataFrame:
    """``frame`` with the schema's columns (if any), then :data:`MAP_COLUMNS`, one row per outcome."""
    import pandas as pd

    rows = [row_values(outcome) for outcome in outcomes]
    values = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in MAP_COLUMNS]
    if schema is not None:
        parsed = [outcome.parsed if outcome.state == "done" else None for outcome in outcomes]
        for name, column in schema.frame_columns(parsed, frame.index).items():
            frame[name] = column
    for name, column in zip(MAP_COLUMNS, values, strict=True):
        frame[name] = pd.Series(column, index=frame.index, dtype="object").astype(DTYPES[name])
    return frame


DTYPES = {
    "reply": "string",
    "finish_reason": "string",
    "prompt_tokens": "Int64",
    "completion_tokens": "Int64",
    "latency_s": "Float64",
    "cost_usd": "Float64",
    "cached": "boolean",
    "error": "string",
}


def row_values(outcome: Outcome) -> list[Any]:
    """The row's :data:`MAP_COLUMNS` values."""
    message = outcome.message
    if outcome.state in ("not sent", "running"):  # never started: the batch was interrupted
        outcome.state, outcome.error = "interrupted", NOT_SENT
    done = outcome.state == "done"
    if message is None:
        reply, finish = None, "interrupted" if outcome.state == "interrupted" else "error"
    else:
        reply, finish = message.content if message.content or done else None, message.finish_reason
    replies = outcome.replies
    return [
        reply,
        finish,
        _total([m.prompt_tokens for m in replies]),
        _total([m.completion_tokens for m in replies]),
        _total([m.duration_s for m in replies]),
        _total([m.cost_usd for m in replies]),
        bool(replies) and all(m.cached for m in replies),
        None if done else outcome.error,
    ]


def outcome_values(outcome: Outcome) -> dict[str, Any]:
    """The row's :data:`MAP_COLUMNS` by name, and ``parsed`` (a ``schema=`` row's value)."""
    values = dict(zip(MAP_COLUMNS, row_values(outcome), strict=True))
    values["parsed"] = outcome.parsed if outcome.state == "done" else None
    return values
