"""The variant x row grid of an evaluation as HTML: a cell per (row, variant), coloured by score,
that opens (``<details>``, no script) on the full prompt, the reply, the target and every score.

Three sections: all rows, the rows where the variants disagree, the rows with an error; each shows
at most ``LIMIT`` rows (``EvalResult.rows`` has all). Model text goes through ``render_markdown``
(Markdown to sanitized HTML, math vetted), as replies do everywhere; every other text through
``escape_text``. Colours are translucent, so they read on light and dark themes alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .._math import escape_text
from .._render import render_markdown
from ._view import number

if TYPE_CHECKING:
    from ._result import EvalResult

__all__ = ["grid_html"]

LIMIT = 200


def _colour(score: float) -> str:
    if math.isnan(score):
        return "rgba(128,128,128,0.15)"
    red, green = (220, 60, 60), (40, 160, 80)
    mix = [round(r + (g - r) * score) for r, g in zip(red, green, strict=True)]
    return f"rgba({mix[0]},{mix[1]},{mix[2]},0.28)"


def _cell(result: EvalResult, record: dict[str, Any] | None, score: float) -> str:
    if record is None:
        return '<td style="background:rgba(128,128,128,0.15)">–</td>'
    label = "error" if record["error"] is not None else ("–" if math.isnan(score) else f"{score:.2f}")
    parts = [
        f"<p><b>prompt</b></p><pre style='white-space:pre-wrap'>{escape_text(record['prompt'] or '')}</pre>"
    ]
    if record["error"] is not None:
        parts.append(f"<p><b>error</b>: {escape_text(record['error'])}</p>")
    else:
        parts.append(f"<p><b>reply</b></p><div>{render_markdown(record['reply'] or '')}</div>")
    if "target" in record:
        parts.append(f"<p><b>target</b>: {escape_text(str(record['target']))}</p>")
    scores = ", ".join(f"{name} = {number(record[name])}" for name in result.scorers)
    parts.append(f"<p><b>scores</b>: {escape_text(scores)}</p>")
    if record.get("scorer_error"):
        parts.append(f"<p><b>scorer error</b>: {escape_text(record['scorer_error'])}</p>")
    return (
        f'<td style="background:{_colour(score)};vertical-align:top"><details><summary>{escape_text(label)}'
        f"</summary>{''.join(parts)}</details></td>"
    )


def _table(
    result: EvalResult, rows: np.ndarray, matrix: np.ndarray, firsts: dict[tuple[int, str], dict]
) -> str:
    head = "<th>row</th>" + "".join(f"<th>{escape_text(name)}</th>" for name in result.variants)
    body = []
    for row in rows[:LIMIT]:
        cells = "".join(
            _cell(result, firsts.get((int(row), name)), float(matrix[row, j]))
            for j, name in enumerate(result.variants)
        )
        body.append(f"<tr><td>{int(row)}</td>{cells}</tr>")
    more = (
        f"<p>the first {LIMIT:,} of {len(rows):,} rows: EvalResult.rows has all.</p>"
        if len(rows) > LIMIT
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def grid_html(result: EvalResult) -> str:
    """The three sections (all rows, disagreements, errors), each a ``<details>``."""
    matrix = result.matrix()
    firsts = {
        (record["row"], record["variant"]): record
        for record in result.rows[result.rows["repeat"] == 0].to_dict(orient="records")
    }
    for record in firsts.values():  # pandas' missing values as None / NaN for the cells
        for key in ("error", "reply", "prompt", "scorer_error"):
            if record.get(key) is not None and not isinstance(record[key], str):
                record[key] = None
    every = np.arange(len(result.data))
    known = np.where(np.isnan(matrix), -1.0, matrix)
    differ = every[(known != known[:, :1]).any(axis=1)] if matrix.shape[1] > 1 else every[:0]
    errors = result.rows.loc[result.rows["error"].notna(), "row"].unique()
    sections = [
        ("all rows", every, True),
        ("disagreements", differ, False),
        ("errors", np.sort(errors), False),
    ]
    return "".join(
        f"<details{' open' if opened else ''}><summary>{escape_text(f'{title} ({len(rows):,})')}</summary>"
        f"{_table(result, rows, matrix, firsts) if len(rows) else '<p>none</p>'}</details>"
        for title, rows, opened in sections
    )
