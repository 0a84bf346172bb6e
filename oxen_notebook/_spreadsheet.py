"""Conversation exports as CSV that a spreadsheet opens without running anything.

Model text that begins like a formula (``=HYPERLINK(...)``) would run when the CSV is opened in a
spreadsheet. OWASP's CSV-injection rule: such a cell gets a ``'`` in front, and every cell is
quoted. Only the CSV text is changed; the DataFrame it is made from is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMULA_STARTS", "spreadsheet_csv"]


#: How a cell that a spreadsheet would run as a formula begins (OWASP's CSV-injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def spreadsheet_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text that a spreadsheet opens without running anything (OWASP's rule):
    a text cell that begins like a formula gets a ``'`` in front, and every cell is quoted, so a
    separator inside a cell starts no new one. The frame itself is left as it is."""
    import csv

    import pandas as pd

    safe = frame.rename(columns=lambda name: _inert(str(name)))
    for name in safe.columns:
        if safe[name].dtype == object or isinstance(safe[name].dtype, pd.StringDtype):
            safe[name] = safe[name].map(_inert, na_action="ignore")
    return safe.to_csv(index=False, quoting=csv.QUOTE_ALL)
