"""A ``--schema`` cell's parsed value, shown: a field/value table for one object, a DataFrame's
table for a list, pretty-printed JSON in a terminal. Values are escaped; nested ones are compact
JSON. :func:`shown_frame` is a DataFrame of model or server text (``%oxen models``, ``%oxen
history``) that shows itself as safely: its HTML vetted for the math typesetter (``_math``), its
text with control characters shown, not run (``_terminal``)."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from .._math import escape_text, vet_html
from .._terminal import visible

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["object_bundle", "object_text", "shown_frame"]

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
    # escape=True (the default); model text: no $ or \\ of it may reach the math typesetter (_math).
    return vet_html(pd.DataFrame(rows).to_html(index=False, na_rep="", border=0))


def shown_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (not copied), showing itself safely; what is derived from it is a plain DataFrame."""
    return _shown_frame_class()(frame)


@functools.cache
def _shown_frame_class() -> type[pd.DataFrame]:
    import pandas as pd

    class ShownFrame(pd.DataFrame):
        """A DataFrame of model or server text: its notebook HTML vetted, its text made visible."""

        @property
        def _constructor(self) -> type[pd.DataFrame]:
            return pd.DataFrame

        def _repr_html_(self) -> str | None:
            html = vet_html(super()._repr_html_() or "")
            if not html or "id" not in self.columns:
                return html or None
            # Model ids are never broken mid-name: the id column does not wrap (the index is a th).
            column = list(self.columns).index("id") + 1
            rule = f".oxen-ids tbody td:nth-of-type({column}) {{ white-space: nowrap; }}"
            return f'<div class="oxen-ids"><style>{rule}</style>{html}</div>'

        def __repr__(self) -> str:
            return visible(super().__repr__())

    return ShownFrame
