"""The ``%%oxen`` cell magic and the ``%oxen`` line commands: thin views on a Session."""

from __future__ import annotations

from ._cell import OxenMagics, load_ipython_extension, unload_ipython_extension
from ._errors import OxenCellError, OxenInterrupted, cell_error
from ._interpolate import interpolate
from ._views import strip_fences

__all__ = [
    "OxenCellError",
    "OxenInterrupted",
    "OxenMagics",
    "cell_error",
    "interpolate",
    "load_ipython_extension",
    "strip_fences",
    "unload_ipython_extension",
]
