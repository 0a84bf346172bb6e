"""How a failed cell shows: in a notebook a callout (one sentence, one action) and a one-line
error; in a terminal one line; never a traceback. And the note a cell shows while its request
waits to be retried."""

from __future__ import annotations

from typing import Any

from .._callout import error_callout, error_parts, retry_html, retry_text
from .._errors import OxenError, RateLimitError
from .._frontend import in_notebook
from .._style import style_tag
from .._terminal import visible

__all__ = ["OxenCellError", "OxenInterrupted", "RetryNote", "cell_error"]


class OxenCellError(Exception):
    """A failed ``%%oxen`` cell: shown as one line, never a traceback. ``brief``: the line when a
    callout in the cell already says it all (what happened, what to do)."""

    def __init__(self, message: str, name: str = "OxenError", *, brief: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.brief = brief

    def _render_traceback_(self) -> list[str]:
        # Server text in the message is shown, not run: only the colour codes are ours.
        return [f"\x1b[31m{visible(self.name)}\x1b[0m: {visible(self.brief or str(self))}"]


class OxenInterrupted(KeyboardInterrupt):
    """The reply was interrupted: a one-line note replaces the traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[33mInterrupted\x1b[0m: {visible(str(self))}"]


def cell_error(exc: OxenError, *, rich: bool | None = None) -> OxenCellError:
    """The cell failure for an :class:`OxenError` (raise it ``from None``). In a notebook (``rich``,
    default: when the shell is a kernel) the callout is shown now, and the error's line is short."""
    if rich is None:
        rich = in_notebook()
    if not rich:
        return OxenCellError(str(exc), type(exc).__name__)
    from IPython.display import display

    what, _ = error_parts(exc)
    display({"text/html": style_tag() + error_callout(exc), "text/plain": ""}, raw=True)
    return OxenCellError(str(exc), type(exc).__name__, brief=what.rstrip("."))


class RetryNote:
    """ "rate-limited, retrying in 3 s (1/2)" in the cell while a request waits to be retried
    (``_retries.listen_for_retries(note.show)``); :meth:`clear` hides it (the reply started)."""

    def __init__(self, *, rich: bool) -> None:
        self.rich = rich
        self.display_id: str | None = None

    def show(self, error: Exception, seconds: float, attempt: int, attempts: int) -> None:
        what = "rate-limited" if isinstance(error, RateLimitError) else "the request failed"
        text = retry_text(seconds, attempt, attempts, what)
        if not self.rich:
            print(f"[{text}]", flush=True)
            return
        import uuid

        from IPython.display import display, update_display

        bundle: dict[str, Any] = {
            "text/html": style_tag() + retry_html(seconds, attempt, attempts, what),
            "text/plain": text,
        }
        if self.display_id is None:
            self.display_id = f"oxen-retry-{uuid.uuid4().hex}"
            display(bundle, raw=True, display_id=self.display_id)
        else:
            update_display(bundle, raw=True, display_id=self.display_id)

    def clear(self) -> None:
        """Hide the note (an output the sheet hides: only clear_output removes one, and it clears all)."""
        if self.display_id is not None:
            from IPython.display import update_display

            hidden = {"text/html": '<div class="oxen-hidden"></div>', "text/plain": ""}
            update_display(hidden, raw=True, display_id=self.display_id)
            self.display_id = None
