"""How an evaluation's summary reads: plain text for a terminal, a sanitized HTML table in a notebook.

Every text cell (variant names, notes) is escaped with ``_math.escape_text``, as model text is
everywhere else: no tag, ``$`` or ``\\`` in a name reaches the page or its typesetter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._math import escape_text
from .._records import is_missing
from .._style import style_tag

if TYPE_CHECKING:
    from ._result import EvalResult

__all__ = ["number", "summary_html", "summary_text"]


def number(value: Any, digits: int = 3) -> str:
    """A cell of the summary or the grid: a float to ``digits`` places, an int with separators,
    "–" for a missing value."""
    if is_missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _money(value: Any) -> str:
    if is_missing(value):
        return "–"
    return f"${value:,.4f}"


def _lines(result: EvalResult) -> tuple[list[str], list[list[str]], list[str]]:
    """The header, the cells of each variant's row, and the notes under the table."""
    scorer = result.scorers[0]
    header = ["", "variant", "model", "n", "errors", scorer, "95 % interval", "cost", "per correct", "p50 s"]
    rows = []
    notes = []
    for record in result.summary.to_dict(orient="records"):
        rows.append(
            [
                "★" if record["best"] else "",
                record["variant"],
                str(record["model"]),
                number(record["n"]),
                number(record["errors"]),
                number(record[scorer]),
                f"[{number(record[f'{scorer}_low'])}, {number(record[f'{scorer}_high'])}]",
                _money(record["cost_usd"]),
                _money(record["cost_per_correct"]),
                number(record["latency_p50_s"], 2),
            ]
        )
        if record["note"]:
            notes.append(f"{record['variant']}: {record['note']}")
        if not record["complete"] and not record["best"]:
            notes.append(f"{record['variant']}: incomplete ({record['errors']:,} rows not answered)")
    if result.budget is not None:
        limit, spent = result.budget
        complete = [r["variant"] for r in result.summary.to_dict(orient="records") if r["complete"]]
        notes.append(f"budget ${limit:,.2f}: ${spent:,.4f} spent; complete: {', '.join(complete) or 'none'}")
    return header, rows, notes


def summary_text(result: EvalResult) -> str:
    header, rows, notes = _lines(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    table = [
        " ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    title = f"evaluation · {len(result.data):,} rows × {len(result.variants)} variants"
    if result.settings.repeats > 1:
        title += f" × {result.settings.repeats} repeats"
    return "\n".join([title, *table, *notes])


def summary_html(result: EvalResult) -> str:
    header, rows, notes = _lines(result)
    head = "".join(f"<th>{escape_text(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape_text(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    title = escape_text(f"evaluation · {len(result.data):,} rows × {len(result.variants)} variants")
    listed = "".join(f"<li>{escape_text(note)}</li>" for note in notes)
    # The stylesheet comes first: the grid below shows replies (code, tables) too.
    return style_tag() + (
        f'<div class="oxen-eval"><p><b>{title}</b></p><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>" + (f"<ul>{listed}</ul>" if listed else "") + "</div>"
    )
