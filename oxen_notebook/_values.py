"""Values in prompts: what a ``{field}`` in a ``%%oxen`` cell or a ``map``/``compare`` template becomes.

A value is rendered as compact text a model reads well, bounded in rows and characters:

- a **DataFrame**: a line with its shape (``DataFrame: 1,000,000 rows × 4 columns``), the index
  when it is not the default, each column with its dtype and missing count
  (``- price (float64, 12 missing)``), then its first and last rows as a Markdown table, half
  and half, with a ``… 999,980 rows not shown …`` row between; at most 20 columns (a line says
  how many were left out; the column list still names them all), cells cut at 60 characters,
  ``|`` and newlines escaped. Over the character budget the column list gives way first, then
  the innermost rows (the marker row counts them);
- a **Series**: its name, length, dtype and missing count, then its first and last values;
- a **numpy array**: its shape and dtype, then numpy's own summarized print;
- a **dict, list, tuple or set**: compact JSON, one item a line when it is long; each container
  (nested ones too) shows at most the row count of items, then ``… N more items``;
- a **str**: as it is;
- anything else (numbers, ``None``, objects): ``format(value, spec)``, exactly as Python would.

Only what is shown is formatted: a 10-million-row frame costs its head, its tail and one vectorized
missing count per column; a million-item list costs its first items. Every result is at most
``chars`` characters; text cut there ends with ``… [cut: 12,345 of 16,345 characters not shown]``,
and the marker counts inside the budget.

The format spec after the colon::

    {df}          at most 20 rows (values, items) and 4,000 characters: the Session's
                  context_rows and context_chars
    {df:50}       50 rows (values, items) and no character limit: asked for 50 rows, you get
                  them (the table stays within 20 columns and 60-character cells)
    {df:0}        the shape and the columns only
    {df:all}      everything: every row and no character limit; {text:all} sends a long
                  string whole
    {price:.2f}   on a number, a string or any other scalar: Python's own format spec, then
                  cut to the character budget ({price:all}: no cut)

On a DataFrame, Series, array or collection a spec that is neither a whole number nor ``all`` is
a :class:`~oxen_notebook.ParameterError` saying what to write instead, in a cell as in a template.
Conversions work as in ``str.format``: ``{df!r}`` is the value's ``repr()``, then cut like a string.
"""

from __future__ import annotations

import functools
import itertools
import json
import string
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import ParameterError

__all__ = ["fill", "render_value"]

_CELL_WIDTH = 60  # a table cell or a column name is cut here
_MAX_COLUMNS = 20  # the row table shows at most this many columns
_FORMATTER = string.Formatter()
_NUMBERS = (int, float, bool)


def render_value(value: Any, spec: str = "", *, rows: int | None = 20, chars: int | None = 4000) -> str:
    """``value`` as compact, model-friendly text of at most ``chars`` characters (``None``: no limit).

    ``rows`` bounds the rows of a DataFrame, the values of a Series or array axis, and the items
    of a collection; ``spec`` is the format spec of a ``{field:spec}`` (see the module's docstring).
    """
    _check_limits(rows, chars)
    return _render(value, spec, rows, chars, "value")


def fill(
    template: str,
    namespace: Mapping[str, Any],
    *,
    positional: Sequence[Any] = (),
    rows: int | None = 20,
    chars: int | None = 4000,
    strict: bool = False,
) -> str:
    """Fill ``{name}``, ``{obj.attr}``, ``{obj[key]}``, ``{In[3]}``, ``{x!r}`` and ``{x:spec}`` from
    ``namespace`` (and ``{}``/``{0}`` from ``positional``), each value rendered by :func:`render_value`.

    Nothing is called or evaluated beyond attribute and item lookups. ``strict=False`` (a notebook
    cell): a field that does not resolve stays as written, ``{{``/``}}`` are literal braces, and
    unbalanced braces leave the text as it is. ``strict=True`` (a template): a field that does not
    resolve, or a bad format string, is a :class:`~oxen_notebook.ParameterError`. Either way a spec
    that cannot apply to a DataFrame, Series, array or collection is one.
    """
    _check_limits(rows, chars)
    parts = _parse(template)
    if parts is None:
        if strict:
            try:
                list(_FORMATTER.parse(template))
            except ValueError as exc:
                raise ParameterError(f"the template is not a valid format string: {exc}.") from None
        return template
    out: list[str] = []
    auto = 0
    for literal, field, spec, conversion, written, how in parts:
        if literal:
            out.append(literal)
        if field is None:
            continue
        if how == _INDEX:
            if not positional and not strict:
                out.append(written)  # {0} or {} with nothing positional: not a field of ours
                continue
            if not field:  # {} numbers itself, as in str.format
                field, auto = str(auto), auto + 1
        elif how == _OTHER and not strict:
            out.append(written)  # JSON, {"a": 1}: not a field of ours
            continue
        try:
            if how == _NAME:
                value = namespace[field]
            elif how == _INDEX:
                value = positional[int(field)]
            else:
                value = _FORMATTER.get_field(field, positional, namespace)[0]
            if conversion:
                value = _FORMATTER.convert_field(value, conversion)
        except Exception as exc:  # any lookup failure: the field does not resolve
            if strict:
                raise ParameterError(f"the template's {written} could not be filled: {exc!r}.") from None
            out.append(written)
            continue
        if "{" in spec:  # a nested field in the spec, as in {x:{width}}
            spec = fill(spec, namespace, positional=positional, rows=None, chars=None, strict=strict)
        try:
            out.append(_render(value, spec, rows, chars, field))
        except ParameterError:
            raise  # a spec that cannot apply to a frame or collection: say so, strict or not
        except Exception as exc:  # a format failure: keep what the user wrote
            if strict:
                raise ParameterError(f"the template's {written} could not be formatted: {exc}.") from None
            out.append(written)
    return "".join(out)


# -- filling ------------------------------------------------------------------------------------

_NAME, _INDEX, _PATH, _OTHER = range(4)  # {name}; {0} or {}; {obj.attr} or {x[k]}; neither
_Part = tuple[str, "str | None", str, "str | None", str, int]


@functools.lru_cache(maxsize=256)
def _parse(template: str) -> tuple[_Part, ...] | None:
    """A template's parts, each field with its text as written and how it is looked up; ``None``
    if the braces do not balance. Cached: ``map`` fills one template once per row."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError:
        return None
    parts: list[_Part] = []
    for literal, field, spec, conversion in parsed:
        spec = spec or ""
        written, how = "", _OTHER
        if field is not None:
            written = (
                "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            )
            if field.isidentifier():
                how = _NAME
            elif field == "" or field.isdigit():
                how = _INDEX
            elif field[0].isalpha() or field[0] == "_" or field[0].isdigit():
                how = _PATH
        parts.append((literal, field, spec, conversion, written, how))
    return tuple(parts)


def _check_limits(rows: int | None, chars: int | None) -> None:
    for name, limit in (("rows", rows), ("chars", chars)):
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ParameterError(f"{name}={limit!r} is invalid: expected a whole number >= 0, or None.")


# -- rendering ----------------------------------------------------------------------------------


def _kind(value: Any) -> str | None:
    """``"frame"``, ``"series"``, ``"array"``, ``"collection"``, or ``None`` for a scalar; pandas
    and numpy are looked up only if something imported them already."""
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return "collection"
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(value, pd.DataFrame):
            return "frame"
        if isinstance(value, pd.Series):
            return "series"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return "array"
    return None


_KIND_NAMES = {
    "frame": "a DataFrame",
    "series": "a Series",
    "array": "an array",
    "collection": "a collection",
}


def _limits(
    spec: str, kind: str, rows: int | None, chars: int | None, field: str
) -> tuple[int | None, int | None]:
    if not spec:
        return rows, chars
    if spec == "all":
        return None, None
    if spec.isdigit():
        return int(spec), None
    raise ParameterError(
        f"{{{field}:{spec}}}: {_KIND_NAMES[kind]} takes a row count or all, not {spec!r}: "
        f"write {{{field}}}, {{{field}:50}} for 50 rows, or {{{field}:all}} for all of it."
    )


def _render(value: Any, spec: str, rows: int | None, chars: int | None, field: str) -> str:
    if type(value) is str:  # the common case of a map row: no lookups
        if not spec:
            return value if chars is None or len(value) <= chars else _cut(value, chars)
        if spec == "all":
            return value
        return _cut(format(value, spec), chars)
    if type(value) in _NUMBERS:
        text = format(value, "" if spec == "all" else spec)
        return text if chars is None or spec == "all" or len(text) <= chars else _cut(text, chars)
    kind = _kind(value)
    if kind is None:
        if spec == "all":
            return format(value, "")
        return _cut(format(value, spec), chars)
    rows, chars = _limits(spec, kind, rows, chars, field)
    if kind == "frame":
        return _frame(value, rows, chars)
    if kind == "series":
        return _series(value, rows, chars)
    if kind == "array":
        return _array(value, rows, chars)
    return _collection(value, rows, chars)


def _cut(text: str, chars: int | None) -> str:
    """``text`` in at most ``chars`` characters: cut (at a line's end when one is near) with a
    marker that says how much was left out."""
    if chars is None or len(text) <= chars:
        return text
    total = len(text)
    longest = f"… [cut: {total:,} of {total:,} characters not shown]"
    if len(longest) + 1 > chars:  # no room for the marker
        return text[: max(chars - 1, 0)] + "…" if chars else ""
    keep = chars - len(longest) - 1
    newline = text.rfind("\n", 0, keep + 1)
    if newline > 0 and keep - newline <= 200:
        keep, joint = newline, "\n"  # the newline itself is not shown
    else:
        joint = "" if text[keep - 1 : keep].isspace() else " "
    return f"{text[:keep]}{joint}… [cut: {total - keep:,} of {total:,} characters not shown]"


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _short(text: str, width: int = _CELL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Any) -> str:
    """One table cell: cut to the cell width, ``|`` and newlines escaped."""
    if isinstance(value, float):
        text = _float(value)
    elif isinstance(value, str):
        text = value[: _CELL_WIDTH + 1]
    elif isinstance(value, (dict, list, tuple, set, frozenset)):
        text = _json(value, 5, _CELL_WIDTH + 1)
    else:
        text = str(value)
    text = _short(text)
    if "|" in text or "\n" in text or "\r" in text:
        text = text.replace("|", "\\|").replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return text


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    text = float.__repr__(value)
    return text if len(text) <= 12 else format(value, ".8g")


def _head_tail(n: int, rows: int | None) -> tuple[int, int]:
    if rows is None or n <= rows:
        return n, 0
    return (rows + 1) // 2, rows // 2


def _missing(column: Any) -> int:
    """The missing values of a Series: vectorized, and free where the dtype cannot hold any."""
    import pandas as pd

    dtype = column.dtype
    if getattr(dtype, "kind", "") in "iub" and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return 0  # numpy ints and bools have no missing value
    array = column.array
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        return int(array.__arrow_array__().null_count)  # kept by Arrow: no scan
    if not isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "fcmM":
        import numpy as np

        values = column.to_numpy(copy=False)  # a view: no Series of booleans in between
        return int(np.count_nonzero(np.isnat(values) if dtype.kind in "mM" else np.isnan(values)))
    return int(column.isna().sum())


def _is_default_index(index: Any) -> bool:
    import pandas as pd

    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None


class _Table:
    """A head-and-tail Markdown table: only the two slices it is given are ever formatted."""

    def __init__(
        self, names: list[str], head: Any, tail: Any, n: int, index_shown: bool, word: str = "row"
    ) -> None:
        self.word = word
        self.header = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        self.width = len(names)
        self.n = n
        self.head = _row_lines(head, index_shown)
        self.tail = _row_lines(tail, index_shown)
        self._sizes: tuple[int, list[int], list[int]] | None = None

    def lines(self, h: int, t: int) -> list[str]:
        """The table with the first ``h`` head rows and the last ``t`` tail rows."""
        hidden = self.n - h - t
        middle = [self.marker(hidden)] if hidden else []
        return [*self.header, *self.head[:h], *middle, *self.tail[len(self.tail) - t :]]

    def marker(self, hidden: int) -> str:
        return f"| … {_count(hidden, self.word)} not shown … |" + " |" * (self.width - 1)

    def size(self, h: int, t: int) -> int:
        """The characters of ``lines(h, t)``, each with its newline, without joining them."""
        if self._sizes is None:
            head = list(itertools.accumulate((len(line) + 1 for line in self.head), initial=0))
            tail = list(itertools.accumulate((len(line) + 1 for line in reversed(self.tail)), initial=0))
            self._sizes = (_size(self.header), head, tail)
        header, head, tail = self._sizes
        hidden = self.n - h - t
        return header + head[h] + tail[t] + (len(self.marker(hidden)) + 1 if hidden else 0)


def _row_lines(frame: Any, index_shown: bool) -> list[str]:
    columns: list[list[str]] = []
    if index_shown:
        index = frame.index
        for level in range(index.nlevels):
            columns.append([_cell(v) for v in index.get_level_values(level).tolist()])
    for _, column in frame.items():  # a column at a time (iloc[:, i] costs far more)
        columns.append([_cell(v) for v in column.tolist()])
    return ["| " + " | ".join(cells) + " |" for cells in zip(*columns, strict=True)]


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _fit(top: list[str], listing: list[str], more: int, note: list[str], table: _Table | None,
         chars: int | None) -> str:  # fmt: skip
    """Join the parts; over ``chars``, the column list gives way to half the budget, then the
    innermost rows go (the marker row counts them), then more of the column list."""

    def columns(k: int) -> list[str]:
        hidden = more + len(listing) - k
        return listing[:k] + ([f"- … {_count(hidden, 'more column')}"] if hidden else [])

    listed = list(itertools.accumulate((len(line) + 1 for line in listing), initial=0))

    def columns_size(k: int) -> int:
        hidden = more + len(listing) - k
        return listed[k] + (len(f"- … {_count(hidden, 'more column')}") + 1 if hidden else 0)

    k = len(listing)
    h, t = (len(table.head), len(table.tail)) if table is not None else (0, 0)
    if chars is not None:
        fixed = _size(top) + _size(note)

        def size(k: int, h: int, t: int) -> int:
            return fixed + columns_size(k) + (table.size(h, t) if table is not None else 0)

        if size(k, h, t) > chars:
            while k > 1 and columns_size(k) > chars // 2:
                k -= 1
            while h + t > 2 and size(k, h, t) > chars:
                h, t = (h - 1, t) if h > t else (h, t - 1)
            while k > 1 and size(k, h, t) > chars:
                k -= 1
    rows = table.lines(h, t) if table is not None else []
    return _cut("\n".join([*top, *columns(k), *note, *rows]), chars)


def _listing(frame: Any, chars: int | None) -> tuple[list[str], int]:
    """``- name (dtype, N missing)`` per column, as many as ``chars`` could hold; and how many more."""
    lines: list[str] = []
    used = 0
    for position, (name, column) in enumerate(frame.items()):
        if chars is not None and used > chars:
            return lines, frame.shape[1] - position
        missing = _missing(column)
        line = f"- {_short(str(name))} ({column.dtype}{f', {missing:,} missing' if missing else ''})"
        lines.append(line.replace("\n", "\\n"))
        used += len(line) + 1
    return lines, 0


def _index_names(index: Any) -> list[str]:
    return [_cell("(index)" if name is None else str(name)) for name in index.names]


def _index_line(index: Any) -> str:
    names = ", ".join(_short("(unnamed)" if name is None else str(name)) for name in index.names)
    dtype = "MultiIndex" if index.nlevels > 1 else str(index.dtype)
    return f"Index: {names} ({dtype})".replace("\n", "\\n")


def _frame(frame: Any, rows: int | None, chars: int | None) -> str:
    n, m = frame.shape
    top = [f"DataFrame: {_count(n, 'row')} × {_count(m, 'column')}"]
    index_shown = not _is_default_index(frame.index)
    if index_shown:
        top.append(_index_line(frame.index))
    listing, more = _listing(frame, chars)
    if listing:
        top.append("Columns:")
    shown = min(m, _MAX_COLUMNS)
    table, note = None, []
    if n and m and rows != 0:
        if shown < m:
            note = [f"The rows show the first {shown} of {m:,} columns ({m - shown:,} left out)."]
        names = _index_names(frame.index) if index_shown else []
        names += [_cell(str(name)) for name in frame.columns[:shown]]
        h, t = _head_tail(n, rows)
        table = _Table(names, frame.iloc[:h, :shown], frame.iloc[n - t :, :shown], n, index_shown)
    elif n and m:
        note = [f"({_count(n, 'row')} not shown)"]
    return _fit(top, listing, more, note, table, chars)


def _series(series: Any, rows: int | None, chars: int | None) -> str:
    n = len(series)
    missing = _missing(series)
    name = "" if series.name is None else f" {_short(str(series.name))}"
    top = [f"Series{name}: {_count(n, 'value')}, {series.dtype}{f', {missing:,} missing' if missing else ''}"]
    table, note = None, []
    if n and rows != 0:
        index_shown = not _is_default_index(series.index)
        names = _index_names(series.index) if index_shown else []
        names.append(_cell("value" if series.name is None else str(series.name)))
        h, t = _head_tail(n, rows)
        head, tail = series.iloc[:h].to_frame("value"), series.iloc[n - t :].to_frame("value")
        table = _Table(names, head, tail, n, index_shown, "value")
    elif n:
        note = [f"({_count(n, 'value')} not shown)"]
    return _fit(top, [], 0, note, table, chars)


def _array(array: Any, rows: int | None, chars: int | None) -> str:
    import numpy as np

    shape = " × ".join(f"{d:,}" for d in array.shape) or "()"
    top = f"ndarray: shape {shape}, {array.dtype}"
    if rows is None:
        body = np.array2string(array, threshold=sys.maxsize, max_line_width=110)
    else:
        edge = max(rows // 2, 1)
        body = np.array2string(array, threshold=max(rows, 1), edgeitems=edge, max_line_width=110)
    return _cut(f"{top}\n{body}", chars)


def _collection(value: Any, rows: int | None, chars: int | None) -> str:
    text = _json(value, rows, chars)
    if len(text) > 100:  # one item a line reads better than one long line
        text = _json(value, rows, chars, lines=True)
    return _cut(text, chars)


def _json(value: Any, rows: int | None, budget: int | None, *, lines: bool = False) -> str:
    """Compact JSON of ``value``; containers show at most ``rows`` items (``… N more items``), and
    writing stops before ``budget`` characters: only what is shown is ever formatted."""
    if isinstance(value, dict):
        opening, closing = "{", "}"
        items: Iterable[Any] = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        opening, closing = "[", "]"
        items = value
    else:
        return _json_scalar(value, rows, budget)
    total = len(value)
    parts: list[str] = []
    used = 2 + _MARKER_ROOM
    for item in itertools.islice(items, total if rows is None else min(rows, total)):
        room = None if budget is None else max(budget - used, 0)
        if isinstance(value, dict):
            key, item = item
            text = f"{json.dumps(key if isinstance(key, str) else str(key), ensure_ascii=False)}: "
            text += _json(item, rows, room)
        else:
            text = _json(item, rows, room)
        if parts and budget is not None and used + len(text) + 2 > budget:
            break  # the marker below says how many are left out
        parts.append(text)
        used += len(text) + 3  # ", " or ",\n" and the indent
    if len(parts) < total:
        parts.append(f"… {_count(total - len(parts), 'more item')}")
    if lines:
        return opening + "\n" + ",\n".join(" " + part for part in parts) + "\n" + closing
    return opening + ", ".join(parts) + closing


_MARKER_ROOM = 30  # kept free for "… N more items"


def _json_scalar(value: Any, rows: int | None, budget: int | None) -> str:
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return json.dumps(value.item())
    if isinstance(value, str):
        text = value
    elif _kind(value) is not None:  # a DataFrame, Series or array inside a collection
        text = _render(value, "", rows, budget, "value")
    else:
        text = str(value)
    return json.dumps(_cut(text, budget), ensure_ascii=False)
