"""A ``--schema`` cell's parsed value, shown: a field/value table for one object, a DataFrame's
table for a list, pretty-printed JSON in a terminal. Values are escaped; nested ones are compact
JSON."""

from __future__ import annotations

import json
from typing import Any

from .._math import escape_text

__all__ = ["object_bundle", "object_text"]

_LEFT = ' style="text-align:left;vertical-align:top"'


def object_text(value: Any) -> str:
    """A parsed value (as JSON-able Python) pretty-printed as JSON: the terminal's view."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def object_bundle(value: Any) -> dict[str, str]:
    """A parsed value (as JSON-able Python) as a display bundle: a field/value table for one
    object, a DataFrame's ``to_html`` for a list, ``text/plain`` the pretty JSON."""
    if isinstance(value, list):
        table = _frame_html(value)
    elif isinstance(value, dict):
        rows = "".join(
            f"<tr><th{_LEFT}>{escape_text(str(name))}</th>"
            f'<td style="text-align:left;white-space:pre-wrap">{escape_text(_cell_text(item))}</td></tr>'
            for name, item in value.items()
        )
        head = f"<thead><tr><th{_LEFT}>field</th><th{_LEFT}>value</th></tr></thead>"
        table = f'<table class="oxen-object">{head}<tbody>{rows}</tbody></table>'
    else:
        table = f"<pre>{escape_text(object_text(value))}</pre>"
    return {"text/html": table, "text/plain": object_text(value)}


def _cell_text(value: Any) -> str:
    """Strings as they are; numbers, booleans, null and nested values as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _frame_html(items: list[Any]) -> str:
    import pandas as pd

    rows = [
        {str(k): _cell_text(v) for k, v in item.items()}
        if isinstance(item, dict)
        else {"value": _cell_text(item)}
        for item in items
    ]
    table = pd.DataFrame(rows).to_html(index=False, na_rep="", border=0)  # escape=True, the default
    # Model text: no $ or \\ of it may reach the notebook's math typesetter (see _math).
    return table.replace("\\", "<span>\\</span>").replace("$", "<span>$</span>")
