"""``schema=`` in a batch: what each row asks for, and the typed columns its value becomes.

A row's validated value fills one column per top-level field of the schema (pandas' nullable
dtypes: ``Int64``, ``Float64``, ``boolean``, ``string``, ``category``, else ``object``) and
``parsed`` (the value itself: a model, dataclass or dict). A ``list[X]`` schema keeps one row per
data row with the list in ``parsed``: exploding it would repeat the row's cost and tokens once per
item, so that sums over the result would count them several times. Field names that clash with a
column already in the result are refused before anything is sent: a silent prefix would change a
name the user's code reads, and an overwrite would lose data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._ask import check_max_repairs
from .._errors import ParameterError
from .._schema import OutputSchema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PARSED", "BatchSchema"]

PARSED = "parsed"


class BatchSchema:
    """One batch's ``schema=``: built once (a pydantic schema each time would cost per row)."""

    def __init__(self, spec: Any, max_repairs: int = 1) -> None:
        self.max_repairs = check_max_repairs(max_repairs)
        self.output = OutputSchema.from_spec(spec)
        self.is_list = self.output.is_list
        #: field -> pandas dtype; none for a list schema (its items are in ``parsed``).
        self.fields: dict[str, str] = {} if self.is_list else self.output.columns()

    def check_names(self, data: Iterable[Any], own: Iterable[str]) -> None:
        """Refuse, in one line and before anything is sent, a field named like one of the data's
        columns or of the batch's ``own`` (``reply``, ``error``, ...), and a data column ``parsed``."""
        columns = {str(name) for name in data}
        if PARSED in columns:
            raise ParameterError(f"the data has a column {PARSED!r}, which schema= fills: rename it.")
        ours = {*own, PARSED}
        for name in self.fields:
            if name in columns:
                raise ParameterError(
                    f"the schema's field {name!r} clashes with the data's column {name!r}: rename the "
                    "column (df.rename(columns={...})) or the field."
                )
            if name in ours:
                raise ParameterError(
                    f"the schema's field {name!r} clashes with the result's column {name!r}: rename the "
                    f"field (a pydantic Field(alias={name!r}) keeps the name the model writes)."
                )

    def frame_columns(self, values: list[Any], index: Any) -> dict[str, pd.Series]:
        """The added columns, for one value per row (``None`` where the row failed: NA)."""
        import pandas as pd

        out = {} if self.is_list else self.output.frame_columns(values, index=index)
        out[PARSED] = pd.Series(values, index=index, dtype="object", name=PARSED)
        return out
