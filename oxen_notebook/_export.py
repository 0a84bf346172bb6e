"""A Session to and from values and files: its settings (:class:`SessionSettings`), its
conversation as a DataFrame or a save file, and its usage. :class:`~oxen_notebook.Session`
inherits these, as it inherits ``_prototyping``'s batch methods; the files are ``_persist``'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._cache import ResponseCache
from ._history import History
from ._persist import SavedConversation, read_conversation, write_conversation
from ._records import messages_from_dataframe, messages_to_dataframe
from ._settings import SessionSettings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Exports"]

_S = TypeVar("_S", bound="Exports")  # the Session, which inherits these


class Exports:
    """``settings``/``from_settings``, ``to_dataframe``/``from_dataframe``, ``save``/``load``,
    ``usage``/``usage_summary``, for :class:`Session`."""

    @classmethod
    def from_settings(
        cls: type[_S], settings: SessionSettings, system: str | None = None, *, api_key: str | None = None
    ) -> _S:
        """A new Session with ``settings`` (another Session's ``.settings``, say): the key as
        ``Session()`` finds it unless given, a history of its own."""
        cache = ResponseCache(*settings.cache) if settings.cache is not None else None
        session = cls(
            settings.model,
            system,
            api_key=api_key,
            base_url=settings.base_url,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            max_retries=settings.max_retries,
            deadline=settings.deadline,
            source=settings.source,
            validate_schema=settings.validate_schema,
            cache=cache,
            context_rows=settings.context_rows,
            context_chars=settings.context_chars,
            **settings.defaults,
        )
        session.max_turns = settings.max_turns
        return session

    @property
    def settings(self) -> SessionSettings:
        """How this session behaves now, as one value without the key (see :class:`SessionSettings`)."""
        return SessionSettings.of(self)

    # -- export and persistence (files in _persist.py) ------------------------------------------

    def to_dataframe(self, *, batch: bool = False) -> pd.DataFrame:
        """One row per message: ids, turn, role, content, model, UTC time, params, usage, timing.

        ``batch=True`` gives the batch log instead: the rows :meth:`map` and :meth:`compare` sent,
        with ``batch_id`` and ``row`` (the row's position in the data) first."""
        if batch:
            return self.batch_log.frame()
        return messages_to_dataframe(self.messages)

    @classmethod
    def from_dataframe(cls: type[_S], frame: pd.DataFrame, **kwargs: Any) -> _S:
        """A session holding the conversation in ``frame`` (as written by :meth:`to_dataframe`)."""
        return cls._restore(SavedConversation(messages_from_dataframe(frame)), kwargs)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the conversation to JSON (no key, ever; no ``extra_headers``, whose values may be
        secrets: give them again to ``load``). ``Session.load(path)`` reads it back."""
        defaults = {name: value for name, value in self.defaults.items() if name != "extra_headers"}
        saved = SavedConversation(self.messages, self.model, self.conversation_id, defaults)
        return write_conversation(path, saved)

    @classmethod
    def load(cls: type[_S], path: str | os.PathLike[str], **kwargs: Any) -> _S:
        """Read a file written by :meth:`save`, or a ``journal`` JSONL file."""
        saved = read_conversation(path)
        for name, value in saved.defaults.items():
            kwargs.setdefault(name, value)
        return cls._restore(saved, kwargs)

    @classmethod
    def _restore(cls: type[_S], saved: SavedConversation, kwargs: dict[str, Any]) -> _S:
        models = [m.model for m in saved.messages if m.model]
        if "model" not in kwargs and (saved.model or models):
            kwargs["model"] = saved.model or models[-1]
        session = cls(**kwargs)
        if saved.messages:
            session.conversation_id = saved.messages[-1].conversation_id or session.conversation_id
        if saved.conversation_id:
            session.conversation_id = saved.conversation_id
        session.history = History(session.conversation_id, saved.messages)
        return session

    # -- usage (the batch methods are in _prototyping.py) ---------------------------------------

    def usage(self) -> pd.DataFrame:
        """Requests, cache hits, tokens and estimated cost per model so far (every entry point).
        The cost is ``<NA>`` for models whose prices are not published."""
        return self.ledger.frame()

    def usage_summary(self) -> str:
        """The running totals in one line, e.g. ``"12 requests (3 cached) · 4,210 tokens · $0.0123"``."""
        return self.ledger.summary()
