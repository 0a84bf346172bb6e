"""An error as a notebook shows it: a callout with one sentence and one action.

``error_callout(error)`` is the HTML (the magic shows it in a cell, the panel in its box; the classes
are styled by ``_style``); ``error_parts(error)`` the two texts it is made of, for a terminal. An
error's message is "what happened — what to do" (``_errors``); here the "what to do" is the one for a
notebook (``%oxen models`` rather than a shell command). ``retry_html`` is the note a cell shows while
a rate-limited request waits to be retried.
"""

from __future__ import annotations

import re

from ._errors import (
    AuthenticationError,
    InsufficientCreditsError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ._math import escape_text

__all__ = ["error_callout", "error_parts", "retry_html", "retry_text"]

#: What to do in a notebook, one action, where the general hint names the command line too or
#: offers several.
_NOTEBOOK_ACTIONS = {
    NotFoundError: "Run %oxen models to see the model ids you can use.",
    AuthenticationError: (
        "Set OXEN_API_KEY to a key from https://www.oxen.ai/settings/profile, then run the cell again."
    ),
    MissingAPIKeyError: "Run %oxen login, then run the cell again.",
    InsufficientCreditsError: "Add credits to your Oxen.ai account at https://www.oxen.ai.",
    RateLimitError: "Wait a moment, then run the cell again.",
    ServerError: "Run the cell again shortly.",
}
_CODE = re.compile(r"`([^`<>]{1,200})`")


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def error_parts(error: BaseException) -> tuple[str, str]:
    """``(what happened, what to do)``: each one sentence (the second may be empty)."""
    message = str(error)
    what, _, action = message.partition(" — ")
    if isinstance(error, MissingAPIKeyError):
        what = what.partition(":")[0]  # its ways to set a key are the action's
    request_id = getattr(error, "request_id", None)
    if request_id and action.endswith(f" (request id {request_id})"):  # the id stays with the what
        action = action[: -len(f" (request id {request_id})")]
        what = f"{what} (request id {request_id})"
    for cls, notebook_action in _NOTEBOOK_ACTIONS.items():
        if isinstance(error, cls):
            action = notebook_action
    return _sentence(what), _sentence(action)


def error_callout(error: BaseException, *, kind: str = "error") -> str:
    """The callout for ``error``: an icon, what happened, what to do (``kind``: error or warn)."""
    what, action = error_parts(error)
    icon = "!" if kind == "error" else "⚠"
    action_html = f' <span class="oxen-callout-action">{_code(action)}</span>' if action else ""
    return (
        f'<div class="oxen-callout oxen-callout-{kind}" role="alert">'
        f'<span class="oxen-callout-icon" aria-hidden="true">{icon}</span>'
        f'<div class="oxen-callout-text"><span class="oxen-callout-what">{_code(what)}</span>{action_html}</div></div>'
    )


def _code(text: str) -> str:
    """``text`` escaped, with its `backticked` parts as code."""
    return _CODE.sub(r"<code>\1</code>", escape_text(text))


def retry_text(seconds: float, attempt: int, attempts: int, what: str = "rate-limited") -> str:
    """``rate-limited, retrying in 3 s (1/2)``."""
    return f"{what}, retrying in {max(1, round(seconds))} s ({attempt}/{attempts})"


def retry_html(seconds: float, attempt: int, attempts: int, what: str = "rate-limited") -> str:
    """The retry note as HTML (small, dimmed)."""
    return f'<div class="oxen-retrying">{escape_text(retry_text(seconds, attempt, attempts, what))}</div>'
