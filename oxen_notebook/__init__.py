"""Chat with Oxen.ai's models from Jupyter: a streaming ``%%oxen`` magic, a chat panel, and a
``Session`` that records every message and exports the conversation to a pandas DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    MissingAPIKeyError,
    MissingDependencyError,
    NotFoundError,
    OxenError,
    ParameterError,
    RateLimitError,
    ServerError,
    SessionBusyError,
    StreamError,
)
from ._models import list_models, model_info
from ._records import Message
from ._reply import AsyncReply, Reply
from ._session import DEFAULT_MODEL, Event, Session

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncReply",
    "AuthenticationError",
    "BadRequestError",
    "ChatPanel",
    "Event",
    "InsufficientCreditsError",
    "Message",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "OxenError",
    "ParameterError",
    "RateLimitError",
    "Reply",
    "ServerError",
    "Session",
    "SessionBusyError",
    "StreamError",
    "default_session",
    "list_models",
    "load_ipython_extension",
    "model_info",
    "named_session",
    "unload_ipython_extension",
]

# Kept across %reload_ext oxen_notebook, so a reload does not drop the conversations.
_sessions: dict[str, Session] = globals().get("_sessions", {})


def named_session(name: str = "default", **kwargs: Any) -> Session:
    """The process-wide session called ``name``, made with ``kwargs`` the first time."""
    session = _sessions.get(name)
    if session is None:
        session = _sessions[name] = Session(**kwargs)
    return session


def default_session(**kwargs: Any) -> Session:
    """The session the ``%%oxen`` magic and ``ChatPanel()`` share."""
    return named_session("default", **kwargs)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext oxen_notebook``: register ``%%oxen`` / ``%oxen``."""
    from ._magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from ._magics import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name == "ChatPanel":
        from ._panel import ChatPanel

        return ChatPanel
    raise AttributeError(f"module 'oxen_notebook' has no attribute {name!r}")
