"""Who hears that a request will be retried: a listener set for the code that sends it.

``Client`` calls ``notify_retry`` before it waits to retry a failed attempt (a 429, a 5xx, a lost
connection); a front end sets a listener around a reply with ``listen_for_retries(callback)`` to
say so while the cell would otherwise be blank. A context variable, so a listener hears only the
requests sent from its own thread or task, and a failing listener never breaks the request.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator

__all__ = ["RetryListener", "listen_for_retries", "notify_retry"]

#: ``callback(error, seconds, attempt, attempts)``: ``error`` failed attempt ``attempt`` of the
#: ``attempts`` retries allowed; the retry comes in ``seconds``.
RetryListener = Callable[[Exception, float, int, int], None]

_LISTENER: contextvars.ContextVar[RetryListener | None] = contextvars.ContextVar("oxen_retry", default=None)
_log = logging.getLogger("oxen_notebook")


@contextlib.contextmanager
def listen_for_retries(callback: RetryListener) -> Iterator[None]:
    """Call ``callback`` before each retry of a request sent inside the ``with`` block."""
    token = _LISTENER.set(callback)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def notify_retry(error: Exception, seconds: float, attempt: int, attempts: int) -> None:
    """Tell the listener, if there is one, that retry ``attempt`` of ``attempts`` comes in ``seconds``."""
    listener = _LISTENER.get()
    if listener is None:
        return
    try:
        listener(error, seconds, attempt, attempts)
    except Exception:
        _log.exception("a retry listener failed")
