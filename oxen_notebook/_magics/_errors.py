"""How a failed cell shows: one line, never a traceback."""

from __future__ import annotations

from .._errors import OxenError
from .._terminal import visible

__all__ = ["OxenCellError", "OxenInterrupted", "cell_error"]


class OxenCellError(Exception):
    """A failed ``%%oxen`` cell: shown as one line, never a traceback."""

    def __init__(self, message: str, name: str = "OxenError") -> None:
        super().__init__(message)
        self.name = name

    def _render_traceback_(self) -> list[str]:
        # Server text in the message is shown, not run: only the colour codes are ours.
        return [f"\x1b[31m{visible(self.name)}\x1b[0m: {visible(str(self))}"]


class OxenInterrupted(KeyboardInterrupt):
    """The reply was interrupted: a one-line note replaces the traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[33mInterrupted\x1b[0m: {visible(str(self))}"]


def cell_error(exc: OxenError) -> OxenCellError:
    """The one-line cell failure for an :class:`OxenError` (raise it ``from None``)."""
    return OxenCellError(str(exc), type(exc).__name__)
