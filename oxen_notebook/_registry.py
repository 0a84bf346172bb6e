"""The process-wide sessions: the default one (shared by ``%%oxen`` and ``ChatPanel()``) and
named ones. This module is not reloaded by ``%reload_ext oxen_notebook`` (only the package's
``__init__`` is), so the conversations survive a reload."""

from __future__ import annotations

from typing import Any

from ._session import Session

__all__ = ["all_sessions", "default_session", "existing_session", "named_session", "sessions"]

#: Every session made by :func:`named_session`, by name.
sessions: dict[str, Session] = {}


def named_session(name: str = "default", **kwargs: Any) -> Session:
    """The process-wide session called ``name``, made with ``kwargs`` the first time."""
    session = sessions.get(name)
    if session is None:
        session = sessions[name] = Session(**kwargs)
    return session


def default_session(**kwargs: Any) -> Session:
    """The session the ``%%oxen`` magic and ``ChatPanel()`` share."""
    return named_session("default", **kwargs)


def existing_session(name: str = "default") -> Session | None:
    """The session called ``name`` if it was made, without making it."""
    return sessions.get(name)


def all_sessions() -> list[Session]:
    """Every named session made so far."""
    return list(sessions.values())
