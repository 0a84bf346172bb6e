"""The Session: a conversation with a model, its records, and the events views subscribe to."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._auth import Secret
from ._cache import ResponseCache, open_cache, remember
from ._client import DEFAULT_BASE_URL, Client
from ._errors import OxenError, ParameterError, SessionBusyError
from ._images import image_url
from ._params import check_against_schema, validate_params
from ._records import Message, messages_from_dataframe, messages_to_dataframe, new_id
from ._reply import AsyncReply, Reply, _Exchange
from ._usage import UsageLedger

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_MODEL", "Event", "Session"]

DEFAULT_MODEL = "gpt-5-2-chat-latest"
EVENTS = ("message", "start", "delta", "finish", "history")
_log = logging.getLogger("oxen_notebook")
_SAVE_VERSION = 1


def is_local_model(model: str) -> bool:
    """``local`` or ``local:/path/to/model.gguf``: the embedded llama.cpp model."""
    return model == "local" or model.startswith("local:")


@dataclass
class Event:
    """What observers receive. ``type`` is one of ``message``, ``start``, ``delta``, ``finish``,
    ``history``; the other fields are set where they apply."""

    type: str
    session: Session
    reply: _Exchange | None = None
    message: Message | None = None
    delta: str | None = None
    error: OxenError | None = None


class Session:
    """A conversation with a chat model, streamed, recorded, and exportable.

    ``Session(model, system, **defaults)``; ``api_key`` defaults to ``OXEN_API_KEY``, then the Oxen
    CLI's ``auth_config.toml``; ``base_url`` to ``OXEN_BASE_URL``, then Oxen's hosted API.
    ``model="local"`` (or ``"local:/path/model.gguf"``) uses the embedded llama.cpp model instead.
    ``defaults`` are request parameters (``temperature``, ``max_tokens``, ...) for every request;
    per-call keywords override them. ``journal="chat.jsonl"`` appends each message as it finishes.
    ``cache=True`` answers repeated ``temperature=0`` requests from a local SQLite cache
    (``"refresh"`` re-asks and overwrites, ``"always"`` caches any temperature, or give a file path).
    ``max_turns`` (attribute, default ``None``: all) caps how many earlier turns a request sends.
    """

    max_turns: int | None = None

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        system: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        journal: str | os.PathLike[str] | None = None,
        source: str = "api",
        validate_schema: bool = True,
        cache: bool | str | os.PathLike[str] | ResponseCache | None = None,
        **defaults: Any,
    ) -> None:
        if not model or not isinstance(model, str):
            raise ParameterError("model must be a model id such as 'gpt-5-2-chat-latest' or 'local'.")
        self.model = model
        self.defaults = validate_params(defaults)
        self.source = source
        self.validate_schema = validate_schema
        self.conversation_id = new_id()
        self.base_url = (base_url or os.environ.get("OXEN_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._client_options = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_retries": max_retries,
        }
        self._hosted = Client(
            self.base_url, api_key=Secret(api_key) if api_key else None, **self._client_options
        )
        self._local: Client | None = None
        self._messages: list[Message] = []
        self._state = threading.RLock()
        self._busy = threading.Lock()
        self._busy_thread: int | None = None
        self._observers: dict[str, list[Callable[[Event], Any]]] = {name: [] for name in EVENTS}
        self._schemas: dict[str, dict | None] = {}
        self._model_infos: dict[str, dict[str, Any]] = {}
        self.cache = open_cache(cache)
        self._usage = UsageLedger()
        self._batch_log: list[tuple[str, int, Message]] = []
        self.journal = Path(journal) if journal else None
        if system:
            self.system = system

    def __repr__(self) -> str:
        turns = sum(1 for m in self._messages if m.role == "user")
        return f"Session(model={self.model!r}, turns={turns}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connections (a closed session reopens them if used again)."""
        self._hosted.close()
        if self._local is not None:
            self._local.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- configuration --------------------------------------------------------------------------

    @property
    def system(self) -> str | None:
        """The system prompt: the first message when its role is ``system``."""
        with self._state:
            first = self._messages[0] if self._messages else None
            return first.content if first and first.role == "system" else None

    @system.setter
    def system(self, text: str | None) -> None:
        with self._state:
            if self._messages and self._messages[0].role == "system":
                del self._messages[0]
            if text:
                self._messages.insert(0, self._record(role="system", content=text, turn=0))
        self._emit("history")

    @property
    def api_key(self) -> Secret | None:
        return self._hosted.api_key

    @api_key.setter
    def api_key(self, value: str | Secret | None) -> None:
        self._hosted.api_key = Secret(value) if isinstance(value, str) else value

    def _client_for(self, model: str) -> Client:
        if not is_local_model(model):
            return self._hosted
        from ._local import LOCAL_BASE_URL, local_transports

        with self._state:
            if self._local is None:
                sync, asynchronous = local_transports()
                self._local = Client(
                    LOCAL_BASE_URL,
                    transport=sync,
                    async_transport=asynchronous,
                    key_required=False,
                    **self._client_options,
                )
            return self._local

    def model_info(self, model: str | None = None) -> dict[str, Any]:
        """Details of a model (``GET /models/{id}``), with its request schema under ``request_schema``."""
        from ._models import model_info

        model = model or self.model
        return model_info(model, client=self._client_for(model))

    def list_models(self, **filters: Any) -> pd.DataFrame:
        """The models the API offers, as a DataFrame (see :func:`oxen_notebook.list_models`)."""
        from ._models import list_models

        return list_models(client=self._hosted, **filters)

    def _schema(self, model: str) -> dict | None:
        if not self.validate_schema:
            return None
        if model not in self._schemas:
            try:
                self._model_infos[model] = self.model_info(model)
                self._schemas[model] = self._model_infos[model].get("request_schema")
            except OxenError:
                self._schemas[model] = None
        return self._schemas[model]

    # -- history --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        """A copy of the conversation's records, oldest first."""
        with self._state:
            return list(self._messages)

    def _record(self, **fields: Any) -> Message:
        fields.setdefault("conversation_id", self.conversation_id)
        return Message(**fields)

    def history_for_request(self) -> list[dict[str, Any]]:
        """The messages the next request sends: turns that failed with no text are left out."""
        with self._state:
            failed = {
                m.turn
                for m in self._messages
                if m.role == "assistant" and m.finish_reason == "error" and not m.content
            }
            kept = [m for m in self._messages if m.turn not in failed or m.role == "system"]
            if self.max_turns is not None:
                turns = sorted({m.turn for m in kept if m.role != "system"})
                recent = set(turns[len(turns) - self.max_turns :] if self.max_turns > 0 else ())
                kept = [m for m in kept if m.role == "system" or m.turn in recent]
            return [m.to_api() for m in kept]

    def _next_turn(self) -> int:
        return max((m.turn for m in self._messages), default=0) + 1

    def undo(self) -> list[Message]:
        """Remove the last exchange (the last user message and what followed); return it."""
        self._check_idle("undo")
        with self._state:
            last = max((i for i, m in enumerate(self._messages) if m.role == "user"), default=None)
            if last is None:
                return []
            removed = self._messages[last:]
            del self._messages[last:]
        self._emit("history")
        return removed

    def reset(self) -> None:
        """Start a new conversation: new id, no history, the same system prompt and defaults."""
        self._check_idle("reset")
        with self._state:
            system = self.system
            self.conversation_id = new_id()
            self._messages = []
            if system:
                self._messages.append(self._record(role="system", content=system, turn=0))
        self._emit("history")

    def _check_idle(self, action: str) -> None:
        if self._busy.locked():
            raise SessionBusyError(f"cannot {action} while a reply is streaming; stop it first.")

    def add_message(self, role: str, content: str, **fields: Any) -> Message:
        """Append a message yourself (e.g. a ``tool`` result); it is sent with the next request."""
        if role not in ("user", "assistant", "tool", "system"):
            raise ParameterError(f"role={role!r} is invalid: expected user, assistant, tool or system.")
        with self._state:
            turn = self._next_turn() if role == "user" else max(self._next_turn() - 1, 1)
            message = self._record(role=role, content=content, turn=turn, source=self.source)
            for name, value in fields.items():
                setattr(message, name, value)
            self._messages.append(message)
        self._journal(message)
        self._emit("message", message=message)
        return message

    # -- requests -------------------------------------------------------------------------------

    def _prepare(
        self, prompt: str, images: list[Any] | None, history: bool, source: str | None,
        model: str | None, params: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParameterError("prompt is empty: give the text to send.")
        model = model or self.model
        clean = validate_params({**self.defaults, **params})
        extra_body = clean.pop("extra_body", {})
        headers = clean.pop("extra_headers", None)
        check_against_schema(clean, self._schema(model), model)
        urls = [image_url(image, i) for i, image in enumerate(images or [])]
        user = self._record(
            role="user",
            content=prompt,
            model=model,
            params=clean,
            images=urls,
            source=source or self.source,
        )
        body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, **clean}
        body.update(extra_body)
        return {"model": model, "user": user, "history": history, "body": body, "headers": headers}

    def stream(
        self,
        prompt: str,
        *,
        images: list[Any] | None = None,
        history: bool = True,
        source: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> Reply:
        """A :class:`Reply` that streams text deltas when iterated. ``history=False`` sends the
        prompt alone (with the system prompt) and keeps it out of the conversation."""
        return Reply(self, self._prepare(prompt, images, history, source, model, params))

    def astream(
        self,
        prompt: str,
        *,
        images: list[Any] | None = None,
        history: bool = True,
        source: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> AsyncReply:
        """The async twin of :meth:`stream`: ``async for delta in session.astream(prompt)``."""
        return AsyncReply(self, self._prepare(prompt, images, history, source, model, params))

    def ask(self, prompt: str, **kwargs: Any) -> Reply:
        """Send a prompt and wait for the whole reply (``reply.text``, ``.usage``, ``.finish_reason``)."""
        return self.stream(prompt, **kwargs).consume()

    async def aask(self, prompt: str, **kwargs: Any) -> AsyncReply:
        """The async twin of :meth:`ask`."""
        return await self.astream(prompt, **kwargs).consume()

    # -- the reply's side of the exchange (called by Reply) --------------------------------------

    def _begin(self, reply: _Exchange) -> None:
        if not reply.request["history"]:  # one-shot requests touch no history: no lock
            self._started(reply, None)
            return
        me = threading.get_ident()
        if self._busy_thread == me:
            raise SessionBusyError(
                "a reply is still streaming on this session in this thread; finish or close it first."
            )
        self._busy.acquire()
        self._started(reply, me)

    async def _abegin(self, reply: _Exchange) -> None:
        if not reply.request["history"]:
            self._started(reply, None)
            return
        import asyncio

        # Poll rather than block: the holder may be a task on this same loop.
        while not self._busy.acquire(blocking=False):
            await asyncio.sleep(0.005)
        self._started(reply, threading.get_ident())

    def _started(self, reply: _Exchange, thread: int | None) -> None:
        if thread is not None:
            self._busy_thread = thread
        request = reply.request
        user: Message = request["user"]
        with self._state:
            if request["history"]:
                messages = self.history_for_request()
                user.turn = self._next_turn()
                user.conversation_id = self.conversation_id
                self._messages.append(user)
            else:
                system = self.system
                messages = [{"role": "system", "content": system}] if system else []
            messages.append(user.to_api())
        request["body"]["messages"] = messages
        if request["history"]:
            self._journal(user)
            self._emit("message", message=user)
        self._emit("start", reply=reply)

    def _delta(self, reply: _Exchange, delta: str) -> None:
        if self._observers["delta"]:
            self._emit("delta", reply=reply, delta=delta)

    def _end(self, reply: _Exchange) -> None:
        message = reply.message
        assert message is not None
        user: Message = reply.request["user"]
        message.turn = user.turn
        message.conversation_id = user.conversation_id or self.conversation_id
        try:
            self._usage.record(self, message, cached=reply.cached)
            remember(reply)
        except Exception:
            _log.exception("oxen_notebook could not account for a reply")
        try:
            if reply.request["history"]:
                with self._state:
                    self._messages.append(message)
                self._journal(message)
                self._emit("message", message=message)
        finally:
            if reply.request["history"]:
                self._busy_thread = None
                self._busy.release()
        self._emit("finish", reply=reply, message=message, error=reply.error)

    # -- observers ------------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[[Event], Any], remove: bool = False) -> None:
        """Call ``callback(Event)`` on ``event`` (message, start, delta, finish, history)."""
        if event not in self._observers:
            raise ParameterError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}.")
        callbacks = self._observers[event]
        if remove:
            if callback in callbacks:
                callbacks.remove(callback)
        elif callback not in callbacks:
            callbacks.append(callback)

    def _emit(self, kind: str, **fields: Any) -> None:
        callbacks = self._observers[kind]
        if not callbacks:
            return
        event = Event(kind, self, **fields)
        for callback in list(callbacks):
            try:
                callback(event)
            except Exception:
                _log.exception("an oxen_notebook %r observer failed", kind)

    # -- export and persistence -----------------------------------------------------------------

    def to_dataframe(self, *, batch: bool = False) -> pd.DataFrame:
        """One row per message: ids, turn, role, content, model, UTC time, params, usage, timing.

        ``batch=True`` gives the batch log instead: the rows :meth:`map` and :meth:`compare` sent,
        with ``batch_id`` and ``row`` (the row's position in the data) first."""
        if batch:
            from ._batch import batch_log_frame

            return batch_log_frame(self)
        return messages_to_dataframe(self.messages)

    # -- prototyping at scale (machinery in _batch.py and _usage.py) -------------------------------

    def map(
        self,
        data: Any,
        template: str,
        *,
        concurrency: int = 8,
        on_error: str = "record",
        progress: bool | Callable[..., Any] = True,
        **params: Any,
    ) -> pd.DataFrame:
        """Send ``template``, filled from each row of ``data`` (a DataFrame, a list of dicts, or a
        list of strings for ``{}``/``{text}``), as one-shot requests, ``concurrency`` at a time.

        Returns the data in its order with ``reply``, ``finish_reason``, token, ``latency_s``,
        ``cost_usd``, ``cached`` and ``error`` columns. ``on_error="raise"`` stops at the first
        failure; Ctrl-C cancels the requests in flight and returns the rows that finished."""
        from ._batch import run_map

        return run_map(
            self, data, template, concurrency=concurrency, on_error=on_error, progress=progress, **params
        )

    def compare(
        self,
        template: str,
        *,
        models: list[str] | None = None,
        params: list[dict[str, Any]] | None = None,
        show: bool = True,
        **variables: Any,
    ) -> pd.DataFrame:
        """Send one prompt (``template`` filled with ``variables``) to several ``models`` and/or
        parameter sets (``params=[{"temperature": 0}, {"temperature": 1}]``) at once; return one
        row per variant and, with ``show``, display the replies side by side."""
        from ._compare import run_compare

        return run_compare(self, template, models=models, params=params, show=show, **variables)

    def usage(self) -> pd.DataFrame:
        """Requests, cache hits, tokens and estimated cost per model so far (every entry point).
        The cost is ``<NA>`` for models whose prices are not published."""
        return self._usage.frame()

    def usage_summary(self) -> str:
        """The running totals in one line, e.g. ``"12 requests (3 cached) · 4,210 tokens · $0.0123"``."""
        return self._usage.summary()

    @classmethod
    def from_dataframe(cls, frame: pd.DataFrame, **kwargs: Any) -> Session:
        """A session holding the conversation in ``frame`` (as written by :meth:`to_dataframe`)."""
        return cls._from_messages(messages_from_dataframe(frame), kwargs)

    @classmethod
    def _from_messages(cls, messages: list[Message], kwargs: dict[str, Any]) -> Session:
        if "model" not in kwargs:
            models = [m.model for m in messages if m.model]
            if models:
                kwargs["model"] = models[-1]
        session = cls(**kwargs)
        if messages:
            session.conversation_id = messages[-1].conversation_id or session.conversation_id
        session._messages = messages
        return session

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the conversation to JSON (no key, ever). ``Session.load(path)`` reads it back."""
        path = Path(path)
        data = {
            "version": _SAVE_VERSION,
            "model": self.model,
            "conversation_id": self.conversation_id,
            "defaults": self.defaults,
            "messages": [m.to_dict() for m in self.messages],
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Session:
        """Read a file written by :meth:`save`, or a ``journal`` JSONL file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ParameterError(f"no such file {str(path)!r} to load a session from.") from None
        try:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if not isinstance(data, dict) or "messages" not in data:
                data = {"messages": [json.loads(line) for line in text.splitlines() if line.strip()]}
        except ValueError as exc:
            raise ParameterError(f"{str(path)!r} is not a saved session or journal: {exc}.") from None
        messages = [Message.from_dict(m) for m in data.get("messages", [])]
        if data.get("model"):
            kwargs.setdefault("model", data["model"])
        for name, value in (data.get("defaults") or {}).items():
            kwargs.setdefault(name, value)
        session = cls._from_messages(messages, kwargs)
        if data.get("conversation_id"):
            session.conversation_id = data["conversation_id"]
        return session

    def _journal(self, message: Message) -> None:
        if self.journal is None:
            return
        line = json.dumps(message.to_dict(), ensure_ascii=False)
        with self._state, self.journal.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
