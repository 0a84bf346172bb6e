"""``{name}`` fields in a cell, filled from the notebook's variables (``_values.fill``, lenient)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import ParameterError
from .._values import fill
from ._errors import cell_error

__all__ = ["interpolate"]


def interpolate(
    text: str, namespace: Mapping[str, Any], *, rows: int | None = 20, chars: int | None = 4000
) -> str:
    """Replace ``{name}``, ``{obj.attr}``, ``{obj[key]}``, ``{In[3]}`` from ``namespace``, each value
    rendered compactly (a DataFrame as its shape, columns, head and tail; see ``render_value``).

    Nothing is called or evaluated beyond attribute and item lookups. Fields that do not resolve
    stay as written; ``{{`` and ``}}`` give literal braces; unbalanced braces leave the text as is.
    ``{df:50}`` shows 50 rows, ``{df:all}`` all of it; a spec that cannot apply to a frame or a
    collection fails the cell with one line (an ``OxenCellError`` named ``ParameterError``).
    """
    try:
        return fill(text, namespace, rows=rows, chars=chars)
    except ParameterError as exc:
        raise cell_error(exc) from None
