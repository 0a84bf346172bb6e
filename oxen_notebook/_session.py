"""The Session: a conversation with a model, its records, and the events views subscribe to.

The Session holds the history, the defaults, the lock that lets one history reply stream at a
time, and the observers. Everything else is a room of its own that the Session only wires up:
requests (``_request``), the exchange (``_reply``), clients (``_routing``), model details and
prices (``_models``), the cache (``_cache``), usage (``_usage``), files (``_persist``), settings,
DataFrames and save files (``_export``, inherited), and the batch layer above it (``_batch``,
imported lazily by :meth:`map` and :meth:`compare`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ask import Ask
from ._auth import Secret
from ._cache import ResponseCache, open_cache
from ._client import DEFAULT_BASE_URL, Client
from ._errors import ParameterError, SessionBusyError
from ._events import Event, Observers
from ._exchange import Host
from ._export import Exports
from ._history import History, Turnstile
from ._limits import DEFAULT_DEADLINE
from ._models import ModelCatalog
from ._params import check_against_schema, validate_params
from ._persist import Journal
from ._prototyping import Prototyping
from ._records import BatchLog, Message, new_id
from ._reply import AsyncReply, Reply
from ._request import PreparedRequest, prepare_request
from ._routing import ClientPool
from ._settings import DEFAULT_MODEL
from ._turn import AsyncTurn, Turn, plan_for
from ._usage import UsageLedger

if TYPE_CHECKING:
    import pandas as pd


__all__ = ["Session"]

_log = logging.getLogger("oxen_notebook")


class Session(Prototyping, Exports):
    """A conversation with a chat model, streamed, recorded, and exportable.

    ``Session(model, system, **defaults)``; ``api_key`` defaults to ``OXEN_API_KEY``, then the Oxen
    CLI's ``auth_config.toml``; ``base_url`` to ``OXEN_BASE_URL``, then Oxen's hosted API.
    ``model="local"`` (or ``"local:/path/model.gguf"``) uses the embedded llama.cpp model instead.
    ``defaults`` are request parameters (``temperature``, ``max_tokens``, ...) for every request;
    per-call keywords override them. ``journal="chat.jsonl"`` appends each message as it finishes.
    ``cache=True`` answers repeated ``temperature=0`` requests from a local SQLite cache
    (``"refresh"`` re-asks and overwrites, ``"always"`` caches any temperature, ``"replay"`` answers
    only from the cache and sends nothing, or give a file path).
    ``timeout`` is seconds between reads; ``deadline`` (default 900) seconds for a whole request,
    retries included (``None``: no limit).
    ``max_turns`` (attribute, default ``None``: all) caps how many earlier turns a request sends.
    ``context_rows`` / ``context_chars`` bound what a DataFrame, list, dict or long string filled
    into a template (``map``, ``compare``, ``preview``) becomes: at most that many rows and characters.
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
        deadline: float | None = DEFAULT_DEADLINE,
        journal: str | os.PathLike[str] | None = None,
        source: str = "api",
        validate_schema: bool = True,
        cache: bool | str | os.PathLike[str] | ResponseCache | None = None,
        context_rows: int | None = 20,
        context_chars: int | None = 4000,
        **defaults: Any,
    ) -> None:
        if not model or not isinstance(model, str):
            raise ParameterError("model must be a model id such as 'gpt-5-2-chat-latest' or 'local'.")
        self.model = model
        self.defaults = validate_params(defaults)
        self.source = source
        #: How much of a value a ``{field}`` in a template shows (``None``: no limit).
        self.context_rows = context_rows
        self.context_chars = context_chars
        self.validate_schema = validate_schema
        self.history = History(new_id())
        self.base_url = (base_url or os.environ.get("OXEN_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.clients = ClientPool(
            self.base_url,
            api_key=Secret(api_key) if api_key else None,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            deadline=deadline,
        )
        #: What this session learned about each model: details, request schema, prices.
        self.catalog = ModelCatalog(self.clients.for_model)
        self.cache = open_cache(cache)
        self.ledger = UsageLedger(self.catalog.pricing)
        #: The rows ``map`` and ``compare`` sent; ``to_dataframe(batch=True)`` exports them.
        self.batch_log = BatchLog()
        self._journal = Journal(journal) if journal else None
        self._observers = Observers()
        self._turnstile = Turnstile()
        self._host = Host(self._begin, self._abegin, self._delta, self._end)
        if system:
            self.system = system

    def __repr__(self) -> str:
        turns = sum(1 for m in self.history.messages if m.role == "user")
        return f"Session(model={self.model!r}, turns={turns}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connections (a closed session reopens them if used again)."""
        self.clients.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- configuration --------------------------------------------------------------------------

    @property
    def system(self) -> str | None:
        """The system prompt: the first message when its role is ``system``."""
        return self.history.system

    @system.setter
    def system(self, text: str | None) -> None:
        self.history.set_system(text)
        self._emit("history")

    @property
    def conversation_id(self) -> str:
        """The id every message of the current conversation carries."""
        return self.history.conversation_id

    @conversation_id.setter
    def conversation_id(self, value: str) -> None:
        self.history.conversation_id = value

    @property
    def api_key(self) -> Secret | None:
        return self.clients.hosted.api_key

    @api_key.setter
    def api_key(self, value: str | Secret | None) -> None:
        self.clients.hosted.api_key = Secret(value) if isinstance(value, str) else value

    @property
    def journal(self) -> Path | None:
        """The JSONL file each message is appended to, or ``None``."""
        return self._journal.path if self._journal else None

    @property
    def busy(self) -> bool:
        """Whether a history reply is streaming (one-shot ``map`` rows do not count)."""
        return self._turnstile.busy

    def client(self, model: str | None = None) -> Client:
        """The HTTP client that serves ``model`` (the hosted API, or the embedded local model)."""
        return self.clients.for_model(model or self.model)

    def model_info(self, model: str | None = None) -> dict[str, Any]:
        """Details of a model (``GET /models/{id}``, once per model), with its request schema
        under ``request_schema``."""
        return self.catalog.info(model or self.model)

    def list_models(self, **filters: Any) -> pd.DataFrame:
        """The models the API offers, as a DataFrame (see :func:`oxen_notebook.list_models`)."""
        from ._models import list_models

        return list_models(client=self.clients.hosted, **filters)

    # -- history --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        """A copy of the conversation's records, oldest first."""
        return self.history.messages

    def history_for_request(self) -> list[dict[str, Any]]:
        """The messages the next request sends: turns that failed with no text are left out."""
        return self.history.for_request(self.max_turns)

    def undo(self) -> list[Message]:
        """Remove the last exchange (the last user message and what followed); return it."""
        self._check_idle("undo")
        removed = self.history.undo()
        if removed:
            self._emit("history")
        return removed

    def reset(self) -> None:
        """Start a new conversation: new id, no history, the same system prompt and defaults."""
        self._check_idle("reset")
        self.history.restart(new_id())
        self._emit("history")

    def _check_idle(self, action: str) -> None:
        if self.busy:
            raise SessionBusyError(f"cannot {action} while a reply is streaming; stop it first.")

    def add_message(self, role: str, content: str, **fields: Any) -> Message:
        """Append a message yourself (e.g. a ``tool`` result); it is sent with the next request."""
        if role not in ("user", "assistant", "tool", "system"):
            raise ParameterError(f"role={role!r} is invalid: expected user, assistant, tool or system.")
        message = self.history.add(role, content, **{"source": self.source, **fields})
        self._write(message)
        self._emit("message", message=message)
        return message

    # -- requests -------------------------------------------------------------------------------

    def _prepare(self, ask: Ask) -> tuple[PreparedRequest, Any]:
        """The request ``ask`` makes here (its parameters checked against the model's published
        ``request_schema``), and the plan that follows its reply (``None``: nothing follows)."""
        model = ask.model or self.model
        # Replay sends nothing, not even GET /models/{id}: the recording checked the parameters.
        published = self.validate_schema and not (self.cache is not None and self.cache.replaying)
        request_schema = self.catalog.request_schema(model) if published else None
        check_against_schema(dict(ask.params), request_schema, model)
        base_url = self.clients.for_model(model).base_url
        request = prepare_request(ask, model=model, base_url=base_url, source=ask.source or self.source)
        if request.fallback is not None and not self.catalog.takes_json_schema(model, published=published):
            request = replace(request, use_fallback=True)
        if not request.history:  # a one-shot turn's records stay with its replies
            return request, plan_for(
                ask, lambda role, content, **fields: Message(role, content, **fields), _set
            )
        plan = plan_for(ask, self.add_message, self._amend)
        # A history turn of several requests holds the turnstile for all of them.
        return replace(request, in_turn=plan is not None), plan

    def stream(
        self,
        prompt: str,
        *,
        images: list[Any] | None = None,
        files: list[Any] | None = None,
        history: bool = True,
        source: str | None = None,
        model: str | None = None,
        schema: Any = None,
        tools: list[Any] | None = None,
        approve: Callable[[Any], bool] | None = None,
        max_repairs: int = 1,
        max_tool_rounds: int | None = None,
        system: str | None = None,
        **params: Any,
    ) -> Reply | Turn:
        """A :class:`Reply` that streams text deltas when iterated. ``history=False`` sends the
        prompt alone (with the system prompt) and keeps it out of the conversation.
        ``images=`` takes URLs, paths, bytes, PIL images, matplotlib Figures and numpy arrays;
        ``files=`` PDFs, audio (wav, mp3, m4a, aac, ogg, flac) and video as paths, URLs, bytes or
        file objects, their type told from their content (the record keeps name, type, size, sha256).

        ``schema=`` (a pydantic model, dataclass, TypedDict, ``list[...]`` of those, or a JSON
        Schema dict) asks for structured output: ``.parsed`` is the validated value, after up to
        ``max_repairs`` repair turns. ``tools=[function, ...]`` runs the model's tool calls and sends
        the results back (up to ``max_tool_rounds`` rounds; ``approve(call) -> bool`` first). With
        either, a :class:`Turn` is returned: it reads like a Reply and may send several requests.
        ``system=`` replaces the system prompt for a ``history=False`` request (an evaluation
        variant's own), leaving the Session's as it is."""
        ask = Ask.make(
            prompt,
            params=params,
            defaults=self.defaults,
            images=images,
            files=files,
            model=model,
            schema=schema,
            tools=tools,
            approve=approve,
            max_repairs=max_repairs,
            max_tool_rounds=max_tool_rounds,
            history=history,
            source=source,
            system=system,
        )
        return self.stream_ask(ask)

    def stream_ask(self, ask: Ask) -> Reply | Turn:
        """:meth:`stream` for an :class:`~oxen_notebook._ask.Ask` made already (by a magic cell, a
        panel send, a batch row): nothing in it is checked again."""
        request, plan = self._prepare(ask)
        first = self._reply(request)
        if plan is None:
            return first
        return Turn(first, self._reply, plan, self._turnstile if request.history else None)

    def astream(
        self,
        prompt: str,
        *,
        images: list[Any] | None = None,
        files: list[Any] | None = None,
        history: bool = True,
        source: str | None = None,
        model: str | None = None,
        schema: Any = None,
        tools: list[Any] | None = None,
        approve: Callable[[Any], Any] | None = None,
        max_repairs: int = 1,
        max_tool_rounds: int | None = None,
        system: str | None = None,
        **params: Any,
    ) -> AsyncReply | AsyncTurn:
        """The async twin of :meth:`stream`: ``async for delta in session.astream(prompt)``."""
        ask = Ask.make(
            prompt,
            params=params,
            defaults=self.defaults,
            images=images,
            files=files,
            model=model,
            schema=schema,
            tools=tools,
            approve=approve,
            max_repairs=max_repairs,
            max_tool_rounds=max_tool_rounds,
            history=history,
            source=source,
            system=system,
        )
        return self.astream_ask(ask)

    def astream_ask(self, ask: Ask) -> AsyncReply | AsyncTurn:
        """The async twin of :meth:`stream_ask`."""
        request, plan = self._prepare(ask)
        first = self._areply(request)
        if plan is None:
            return first
        return AsyncTurn(first, self._areply, plan, self._turnstile if request.history else None)

    def _reply(self, request: PreparedRequest) -> Reply:
        return Reply(request, self._host, self.clients.for_model(request.model), self.cache)

    def _areply(self, request: PreparedRequest) -> AsyncReply:
        return AsyncReply(request, self._host, self.clients.for_model(request.model), self.cache)

    def ask(self, prompt: str, **kwargs: Any) -> Reply | Turn:
        """Send a prompt and wait for the whole reply (``reply.text``, ``.usage``, ``.finish_reason``)."""
        return self.stream(prompt, **kwargs).consume()

    async def aask(self, prompt: str, **kwargs: Any) -> AsyncReply | AsyncTurn:
        """The async twin of :meth:`ask`."""
        return await self.astream(prompt, **kwargs).aconsume()

    # -- the exchange protocol (the replies call these through Host) -----------------------------

    def _begin(self, reply: Reply | AsyncReply) -> list[dict[str, Any]]:
        # One-shot requests touch no history: no turn to wait for; a turn's requests hold it already.
        waits = reply.request.history and not reply.request.in_turn
        if waits:
            self._turnstile.enter()
        return self._started_or_leave(reply, waits)

    async def _abegin(self, reply: Reply | AsyncReply) -> list[dict[str, Any]]:
        waits = reply.request.history and not reply.request.in_turn
        if waits:
            await self._turnstile.aenter()
        return self._started_or_leave(reply, waits)

    def _started_or_leave(self, reply: Reply | AsyncReply, entered: bool) -> list[dict[str, Any]]:
        """Start ``reply``; if that fails, the turn it entered is free again (no reply runs)."""
        try:
            return self._started(reply)
        except BaseException:
            if entered:
                self._turnstile.leave()
            raise

    def _started(self, reply: Reply | AsyncReply) -> list[dict[str, Any]]:
        """Open the reply's turn (its user message joins the history); the messages it sends."""
        request = reply.request
        user = request.user
        opens = request.history and request.follow_up is None  # a follow-up continues its turn
        messages = self.history.open_turn(user, self.max_turns) if opens else self._outgoing(request)
        if opens:
            self._write(user)
            self._emit("message", message=user)
        self._emit("start", reply=reply)
        return messages

    def _outgoing(self, request: PreparedRequest) -> list[dict[str, Any]]:
        """The messages ``request`` sends (an opening history request: what ``open_turn`` sends)."""
        if request.history and request.follow_up is None:
            return [*self.history.for_request(self.max_turns), request.user.to_api()]
        if request.history:
            return self.history.for_request(self.max_turns)  # it holds the turn so far
        system = request.system if request.system is not None else self.system
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, request.user.to_api(), *(request.follow_up or [])]

    def _delta(self, reply: Reply | AsyncReply, delta: str) -> None:
        if self._journal is not None and reply.request.history:
            self._journal.checkpoint(reply)
        if self._observers.wants("delta"):
            self._emit("delta", reply=reply, delta=delta)

    def _end(self, reply: Reply | AsyncReply) -> None:
        message = reply.message
        assert message is not None
        user = reply.request.user
        history = reply.request.history
        try:  # whatever fails here, the turn is free again: a reply that ended holds nothing
            message.turn = user.turn
            message.conversation_id = user.conversation_id or self.conversation_id
            try:
                message.cost_usd = self.ledger.record(message, cached=reply.cached)
            except Exception:
                _log.exception("oxen_notebook could not account for a reply")
            if reply.note is not None and reply.request.use_fallback:
                self.catalog.refuses_json_schema(reply.model)
            if history:
                self.history.append(message)
                self._write(message)
                self._emit("message", message=message)
        finally:
            if history and not reply.request.in_turn:
                self._turnstile.leave()
        self._emit("finish", reply=reply, message=message, error=reply.error)

    # -- observers ------------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[[Event], Any], remove: bool = False) -> None:
        """Call ``callback(Event)`` on ``event`` (message, start, delta, finish, history, update)."""
        self._observers.on(event, callback, remove)

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._observers.wants(kind):
            self._observers.emit(Event(kind, self, **fields))

    def _amend(self, message: Message, **fields: Any) -> None:
        """Mark a record already in the history (a reply that failed its schema, its parsed value)."""
        _set(message, **fields)
        self._write(message)  # the journal keeps the last state of each message
        self._emit("update", message=message)

    def _write(self, message: Message) -> None:
        if self._journal is not None:
            self._journal.append(message)


def _set(message: Message, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(message, name, value)
