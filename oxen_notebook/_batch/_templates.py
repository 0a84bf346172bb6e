"""Templates over data: which fields a template uses, the data as rows, and filling one row."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._values import fill as fill_values
from ._sources import is_path, parquet_frame
from ._types import Job

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["check_template", "fill", "fill_jobs", "job_for", "table"]


def _fields(template: str) -> tuple[set[str], bool]:
    """The named fields a template uses, and whether it has positional ones (``{}``, ``{0}``)."""
    names: set[str] = set()
    positional = False
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ParameterError(f"the template is not a valid format string: {exc}.") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = name.split(".")[0].split("[")[0]
        if root == "" or root.isdigit():
            positional = True
        else:
            names.add(root)
    return names, positional


def table(data: Any) -> tuple[pd.DataFrame, list[dict[str, Any]], bool]:
    """The data as a DataFrame, its rows as dicts, and whether rows are bare strings. An iterable
    (a generator too) or a Parquet file's path is read whole: ``_sources`` reads lazily."""
    import pandas as pd

    if is_path(data):
        data = parquet_frame(data)
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        return frame, frame.to_dict(orient="records"), False
    if isinstance(data, pd.Series):
        name = data.name if isinstance(data.name, str) else "text"
        frame = data.to_frame(name)
        return frame, [{name: v, "text": v} for v in data.tolist()], True
    if isinstance(data, (bytes, Mapping)) or not isinstance(data, Iterable):
        raise ParameterError(
            "data must be a DataFrame, a Series, a list or iterable of dicts or of strings, or a "
            f"Parquet file's path; got {type(data).__name__}."
        )
    items = list(data)
    if all(isinstance(item, str) for item in items):
        return pd.DataFrame({"text": items}), [{"text": item} for item in items], True
    if all(isinstance(item, dict) for item in items):
        return pd.DataFrame(items), [dict(item) for item in items], False
    raise ParameterError("data must be a list of all dicts or all strings, not a mix.")


def fill(
    template: str, row: dict[str, Any], positional: bool, *, rows: int | None = 20, chars: int | None = 4000
) -> str:
    """``template`` filled from one row (``{}`` from its ``text``), each value rendered within
    ``rows`` and ``chars`` as ``_values.render_value`` does; a field that does not resolve raises."""
    args = (row["text"],) if positional else ()
    names = row if all(type(k) is str for k in row) else {str(k): v for k, v in row.items()}
    return fill_values(template, names, positional=args, rows=rows, chars=chars, strict=True)


def check_template(template: str, columns: set[str], strings: bool) -> bool:
    if not isinstance(template, str) or not template.strip():
        raise ParameterError("template is empty: give a prompt such as 'Classify: {text}'.")
    names, positional = _fields(template)
    if positional and not strings:
        raise ParameterError(
            "the template uses {} but the rows have named columns: name the column, as in {review}."
        )
    missing = sorted(names - columns)
    if missing:
        raise ParameterError(
            f"the template uses {', '.join('{' + m + '}' for m in missing)} but the data has no such "
            f"column; columns: {', '.join(sorted(columns)) or 'none'}."
        )
    return positional


def job_for(
    template: str, row: dict[str, Any], positional: bool, model: str | None, params: dict[str, Any],
    limits: dict[str, int | None], system: str | None = None,
) -> Job:  # fmt: skip
    """The row's :class:`Job`: the template filled (an unfillable row becomes a Job with its error)."""
    try:
        return Job(fill(template, row, positional, **limits), model, dict(params), system=system)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        return Job(
            None, model, dict(params), error=f"the template could not be filled: {exc!r}", system=system
        )


def fill_jobs(
    session: Any, template: str, frame: pd.DataFrame, rows: list[dict[str, Any]], strings: bool,
    model: str | None, params: dict[str, Any], system: str | None = None,
) -> list[Job]:  # fmt: skip
    """Every row's :class:`Job` for ``template`` (checked against the data's columns first), with
    the Session's context limits, as ``map`` fills them."""
    columns = {str(c) for c in frame.columns} | ({"text"} if strings else set())
    positional = check_template(template, columns, strings)
    limits = {"rows": session.context_rows, "chars": session.context_chars}
    return [job_for(template, row, positional, model, params, limits, system) for row in rows]
