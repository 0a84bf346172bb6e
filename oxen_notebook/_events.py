"""What views subscribe to: the :class:`Event`, the event names, and the observer registry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ParameterError

if TYPE_CHECKING:
    from ._records import Message
    from ._reply import AsyncReply, Reply
    from ._session import Session

__all__ = ["EVENTS", "Event", "Observers"]

#: ``message`` (a record joined the history), ``start``, ``delta``, ``finish`` (a reply streamed),
#: ``history`` (the history was replaced or cut: undo, reset, a new system prompt, load),
#: ``update`` (a record in the history gained something after it finished: its ``parsed`` value,
#: a schema error, tool-call ids).
EVENTS = ("message", "start", "delta", "finish", "history", "update")
_log = logging.getLogger("oxen_notebook")


@dataclass
class Event:
    """What observers receive. ``type`` is one of ``message``, ``start``, ``delta``, ``finish``,
    ``history``, ``update``; the other fields are set where they apply."""

    type: str
    session: Session
    reply: Reply | AsyncReply | None = None
    message: Message | None = None
    delta: str | None = None
    error: Exception | None = None


class Observers:
    """Callbacks per event name. A failing callback is logged, never raised into the caller."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Event], Any]]] = {name: [] for name in EVENTS}

    def on(self, event: str, callback: Callable[[Event], Any], remove: bool = False) -> None:
        """Register ``callback`` for ``event`` (once), or remove it with ``remove=True``."""
        if event not in self._callbacks:
            raise ParameterError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}.")
        callbacks = self._callbacks[event]
        if remove:
            if callback in callbacks:
                callbacks.remove(callback)
        elif callback not in callbacks:
            callbacks.append(callback)

    def listening(self, callback: Callable[[Event], Any]) -> bool:
        """Whether ``callback`` is registered for any event."""
        return any(callback in callbacks for callbacks in self._callbacks.values())

    def wants(self, event: str) -> bool:
        """Whether anyone listens to ``event`` (saves building events nobody reads)."""
        return bool(self._callbacks[event])

    def emit(self, event: Event) -> None:
        for callback in list(self._callbacks[event.type]):
            try:
                callback(event)
            except Exception:
                _log.exception("an oxen_notebook %r observer failed", event.type)
