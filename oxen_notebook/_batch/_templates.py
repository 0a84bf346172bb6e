"""Templates over data: which fields a template uses, the data as rows, and filling one row."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._values import fill as fill_values
from ._sources import is_path, parquet_frame
from ._types import Job

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RowTemplate", "check_template", "fill", "table"]


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


@dataclass(frozen=True)
class RowTemplate:
    """A template checked against the data's columns, and what each row's :class:`Job` carries
    besides its filled prompt: the model, the parameters (shared by the rows, checked once), the
    system prompt, and how much of a value a ``{field}`` shows (``rows``, ``chars``)."""

    template: str
    positional: bool
    model: str | None
    params: Mapping[str, Any]
    rows: int | None = 20
    chars: int | None = 4000
    system: str | None = None

    @classmethod
    def checked(
        cls,
        template: str,
        data: tuple[Iterable[Any], bool],
        session: Any,
        *,
        model: str | None,
        params: Mapping[str, Any],
        system: str | None = None,
    ) -> RowTemplate:
        """``template`` over ``data`` (its columns, and whether its rows are bare strings, which
        ``{text}`` and ``{}`` name), with the Session's context limits."""
        columns, strings = data
        names = {str(c) for c in columns} | ({"text"} if strings else set())
        positional = check_template(template, names, strings)
        return cls(template, positional, model, params, session.context_rows, session.context_chars, system)

    def job(self, row: dict[str, Any]) -> Job:
        """The row's :class:`Job`: the template filled (an unfillable row becomes a Job with its error)."""
        try:
            prompt = fill(self.template, row, self.positional, rows=self.rows, chars=self.chars)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            error = f"the template could not be filled: {exc!r}"
            return Job(None, self.model, self.params, error=error, system=self.system)
        return Job(prompt, self.model, self.params, system=self.system)

    def jobs(self, rows: Iterable[dict[str, Any]]) -> list[Job]:
        return [self.job(row) for row in rows]
