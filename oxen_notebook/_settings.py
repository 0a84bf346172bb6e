"""``SessionSettings``: how a Session behaves, as one frozen value that pickles without the key.

A Session shows its current settings as ``Session.settings``, and ``Session.from_settings`` makes
one from them: a Dask worker's session (``_batch/_dask.py``) and the command line's are made so,
and a copy takes every setting at once, so none is dropped on the way.

Not settings, on purpose: the API key (a worker finds its own, ``OXEN_API_KEY`` or the Oxen CLI's
config on its machine, so no key is ever in a task graph), the system prompt (the conversation's
first message: history), the journal (a file that the process which opened it appends to) and the
cache's open connections (the cache is here as its file and mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._limits import DEFAULT_DEADLINE

if TYPE_CHECKING:
    from ._cache import ResponseCache
    from ._routing import ClientPool

__all__ = ["DEFAULT_MODEL", "SessionSettings"]

DEFAULT_MODEL = "gpt-5-2-chat-latest"


class _Configured(Protocol):
    """What :meth:`SessionSettings.of` reads: a Session's public state."""

    model: str
    base_url: str
    source: str
    validate_schema: bool
    context_rows: int | None
    context_chars: int | None
    max_turns: int | None
    defaults: dict[str, Any]
    cache: ResponseCache | None
    clients: ClientPool  # the hosted API's client holds the timeouts, retries and deadline


@dataclass(frozen=True)
class SessionSettings:
    """Everything ``Session(...)`` takes but the system prompt, the API key and the journal.

    ``base_url`` ``None`` is ``OXEN_BASE_URL``, then Oxen's hosted API; ``cache`` is the response
    cache's file and mode, or ``None``; ``defaults`` are the request parameters of every request.
    """

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_retries: int = 2
    deadline: float | None = DEFAULT_DEADLINE
    source: str = "api"
    validate_schema: bool = True
    cache: tuple[str, str] | None = None
    context_rows: int | None = 20
    context_chars: int | None = 4000
    max_turns: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, session: _Configured) -> SessionSettings:
        """``session``'s settings now (a Session's model and defaults may change after it is made)."""
        client, cache = session.clients.hosted, session.cache
        return cls(
            model=session.model,
            base_url=session.base_url,
            timeout=client.timeout,
            connect_timeout=client.connect_timeout,
            max_retries=client.max_retries,
            deadline=client.deadline,
            source=session.source,
            validate_schema=session.validate_schema,
            cache=(str(cache.path), cache.mode) if cache is not None else None,
            context_rows=session.context_rows,
            context_chars=session.context_chars,
            max_turns=session.max_turns,
            defaults=dict(session.defaults),
        )
