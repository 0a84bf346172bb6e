"""``{name}`` fields in a cell, filled from the notebook's variables."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

__all__ = ["interpolate"]


_FORMATTER = string.Formatter()


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}``, ``{obj.attr}``, ``{obj[key]}``, ``{In[3]}`` from ``namespace``.

    Nothing is called or evaluated beyond attribute and item lookups. Fields that do not resolve
    stay as written; ``{{`` and ``}}`` give literal braces; unbalanced braces leave the text as is.
    """
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError:
        return text
    out: list[str] = []
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field or not (field[0].isalpha() or field[0] == "_"):
            out.append(written)
            continue
        try:
            value, _ = _FORMATTER.get_field(field, (), namespace)
            value = _FORMATTER.convert_field(value, conversion)
            out.append(format(value, spec or ""))
        except Exception:  # any lookup or format failure: keep what the user wrote
            out.append(written)
    return "".join(out)
