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
    CacheMissError,
    InsufficientCreditsError,
    MissingAPIKeyError,
    MissingDependencyError,
    NotFoundError,
    OxenError,
    ParameterError,
    RateLimitError,
    ReplyConsumedError,
    SchemaError,
    ServerError,
    SessionBusyError,
    StreamError,
    ToolLoopError,
)
from ._events import Event
from ._models import list_models, model_info
from ._records import Message
from ._registry import default_session, named_session
from ._reply import AsyncReply, Reply
from ._session import Session
from ._settings import DEFAULT_MODEL, SessionSettings
from ._turn import AsyncTurn, Turn

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
    "AsyncTurn",
    "AuthenticationError",
    "BadRequestError",
    "CacheMissError",
    "ChatPanel",
    "EvalResult",
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
    "ReplyConsumedError",
    "SchemaError",
    "ServerError",
    "Session",
    "SessionBusyError",
    "SessionSettings",
    "StreamError",
    "ToolLoopError",
    "Turn",
    "Variant",
    "default_session",
    "list_models",
    "load_ipython_extension",
    "model_info",
    "named_session",
    "scorers",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext oxen_notebook``: register ``%%oxen`` / ``%oxen``."""
    from ._magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from ._magics import unload_ipython_extension as unload

    unload(ipython)


_EVALUATION = ("EvalResult", "Variant", "scorers")


def __getattr__(name: str) -> Any:
    if name == "ChatPanel":  # ipywidgets loads only when the panel is asked for
        from ._panel import ChatPanel

        ChatPanel.__module__ = __name__
        return ChatPanel
    if name in _EVALUATION:  # numpy loads only when evaluation is asked for
        from . import _eval

        value = getattr(_eval, name)
        if isinstance(value, type):
            value.__module__ = __name__
        return value
    raise AttributeError(f"module 'oxen_notebook' has no attribute {name!r}")


# help() and tracebacks show the public path, as httpx does.
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = __name__
del _name, _value
