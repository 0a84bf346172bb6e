"""One request's state and the steps on it: :class:`ExchangeState`, which the sync and async
replies (``_reply.py``) each compose and drive with their own I/O (openai-python's
``ChatCompletionStreamState`` is the pattern), and :class:`ExchangeHost`, what a reply tells the
conversation it belongs to.

The state sends nothing and reads no socket: its steps take what the reply read (a chunk, a whole
body, an exception) and return the text deltas, or raise. What it holds: the request and the body
its messages make, the SSE decoder and the chunk assembler, timing, the response cache, the
``json_object`` fallback, and the record the reply ends with.

The failure path's promise: whatever goes wrong inside a reply (a server's malformed answer, or a
bug of ours), the reply ends through :meth:`ExchangeState.finish`, recorded with finish_reason
``"error"``, its host hears ``end`` (which frees the session for the next request), and the caller
gets an :class:`OxenError` (:meth:`ExchangeState.broken`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from ._assembler import Assembler
from ._cache import ResponseCache, lookup_first, store
from ._errors import BadRequestError, OxenError, ReplyConsumedError, StreamError, one_line, redact
from ._records import Message, new_id
from ._request import build_body
from ._sse import SSEDecoder

if TYPE_CHECKING:
    import httpx

    from ._client import Client
    from ._request import PreparedRequest

__all__ = ["ExchangeHost", "ExchangeState", "Host"]

_log = logging.getLogger("oxen_notebook")
_HEAD = 80  # bytes of an answer quoted when it is not what was asked for
_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


class ExchangeHost(Protocol):
    """What a reply tells the conversation it belongs to (the Session implements it). Each call
    gets the public ``Reply`` or ``AsyncReply`` (what events carry). ``begin`` returns the messages
    the request sends (the history is read then, its turn taken)."""

    def begin(self, reply: Any) -> list[dict[str, Any]]: ...

    async def abegin(self, reply: Any) -> list[dict[str, Any]]: ...

    def delta(self, reply: Any, text: str) -> None: ...

    def end(self, reply: Any) -> None: ...


@dataclass(frozen=True)
class Host:
    """An :class:`ExchangeHost` made of four callables (the Session's own methods, kept private)."""

    begin: Callable[[Any], list[dict[str, Any]]]
    abegin: Callable[[Any], Awaitable[list[dict[str, Any]]]]
    delta: Callable[[Any, str], None]
    end: Callable[[Any], None]


class ExchangeState:
    """One request's state, and the steps both reply flavours take on it (no I/O here)."""

    def __init__(
        self,
        request: PreparedRequest,
        host: ExchangeHost,
        client: Client,
        cache: ResponseCache | None,
        *,
        stream: bool = True,
    ) -> None:
        self.request = request
        self.host = host
        self.client = client
        self.cache = cache
        self.message: Message | None = None
        self.error: OxenError | None = None
        #: What the request sends: the host's messages, and the body they make (:meth:`begun`).
        self.messages: list[dict[str, Any]] = []
        self.body: dict[str, Any] = {}
        self.assembler = Assembler(secret=client.key_text)  # an error event may echo the key
        self.decoder = SSEDecoder()
        self.started = False
        self.finished = False
        self.stopped = threading.Event()  # set from any thread: stop()
        self.streamed = stream
        self.response: Any = None  # the httpx response once it came
        self.t0 = 0.0
        self.deadline: float | None = None  # monotonic; see Client.deadline
        self.expired = False  # the deadline passed while the reply was open
        self.timer: Any = None  # what fires at the deadline (a thread's timer, a loop's handle)
        self.head: bytes | None = None  # the answer's first bytes, to say what came when it was not SSE
        self.ttft: float | None = None
        self.cached = False  # answered from the session's response cache
        #: The assistant message's id: known from the start, so a checkpoint of the partial reply
        #: and the finished record are the same message.
        self.message_id = new_id()
        #: What the client did on the user's behalf (e.g. sent the request again), or ``None``.
        self.note: str | None = None

    # -- what a reply shows --------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.assembler.parts)

    @property
    def usage(self) -> dict[str, Any] | None:
        usage, message = self.assembler.usage, self.message
        if message is None or not message.usage_estimated:
            return usage
        counts = {name: getattr(message, name) for name in _COUNTS}
        return {**(usage or {}), **counts, "estimated": True}

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.assembler.tool_calls[i] for i in sorted(self.assembler.tool_calls)]

    @property
    def done(self) -> bool:
        """The stream said it is complete (``[DONE]`` or a finish reason): read no further."""
        return self.assembler.done

    # -- starting ------------------------------------------------------------------------------

    def check_fresh(self) -> None:
        if self.started:
            raise ReplyConsumedError(
                "this reply was already consumed; read reply.text, or send again with session.stream()."
            )
        self.started = True

    def begun(self, messages: list[dict[str, Any]]) -> None:
        """The host began the reply: ``messages`` are what it sends; the body is written."""
        self.messages = messages
        self.body = build_body(self.request, messages)

    def start_clock(self) -> float | None:
        """Start the request's deadline; the seconds it allows (``None``: no limit)."""
        seconds = self.client.deadline
        if seconds is not None:
            self.deadline = time.monotonic() + seconds
        return seconds

    def replay(self) -> list[str] | None:
        """Answer from the response cache: fill the reply in and return its deltas, or ``None``.
        In replay mode a miss raises :class:`CacheMissError` (it ends the reply as an error)."""
        if self.cache is None:
            return None
        request = self.request
        bodies = [self.body]
        if self.cache.replaying and request.fallback is not None and not request.use_fallback:
            # Replay reads no model details, so it cannot know that the model takes only
            # json_object: if the recording sent the fallback, that body is the key.
            bodies.append(build_body(replace(request, use_fallback=True), self.messages))
        hit, body = lookup_first(self.cache, request.base_url, bodies)
        if hit is None:
            return None
        if body is not self.body:
            self.request, self.body = replace(request, use_fallback=True), body
        self.cached = True
        text = self.assembler.restore(hit)
        return [text] if text else []

    def wire_body(self) -> dict[str, Any]:
        """The body to send now (an unstreamed request's has ``"stream": false``)."""
        return self.body if self.streamed else build_body(self.request, self.messages, stream=False)

    def fall_back(self, error: BadRequestError) -> bool:
        """After a 400 that refuses ``json_schema``: switch to the request's ``json_object``
        fallback, once, and say so in the record. Nothing was streamed yet."""
        from ._schema import refuses_json_schema

        request = self.request
        if request.fallback is None or request.use_fallback or not refuses_json_schema(error):
            return False
        self.request = replace(request, use_fallback=True)
        self.body = build_body(self.request, self.messages)
        self.note = (
            f"{request.model} refused response_format json_schema ({error.detail or error.message}); "
            "sent again as json_object with the schema in the system message"
        )
        return True

    # -- what came -----------------------------------------------------------------------------

    def take(self, chunk: bytes) -> Iterator[str]:
        """Fold a chunk of an event stream in, one event at a time; yield its text deltas.

        Lazily: one read often carries several events, and a caller that stops after a delta
        must leave the later ones unfolded, so the record holds what the caller was given."""
        if self.head is None:
            self.head = chunk[:_HEAD]
        for event in self.decoder.feed(chunk):
            delta = self.assembler.feed(event.data)
            if delta:
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.t0
                yield delta
            if self.assembler.done:
                return

    def take_body(self, body: bytes) -> list[str]:
        """Fold an unstreamed ``chat.completion`` body in; return its text as one delta."""
        delta = self.assembler.feed_completion(body)
        if delta and self.ttft is None:
            self.ttft = time.perf_counter() - self.t0
        return [delta] if delta else []

    def is_event_stream(self, response: httpx.Response) -> bool:
        """Whether a streamed request's answer is an event stream (or says nothing of its type)."""
        kind = response.headers.get("content-type", "")
        return not kind or "text/event-stream" in kind

    def other_limit(self, response: httpx.Response) -> int | None:
        """How much of a non-SSE answer to read: all of a JSON body (bounded), a glimpse of the rest."""
        return None if "json" in (response.headers.get("content-type") or "") else 4 * _HEAD

    def take_other(self, body: bytes) -> list[str]:
        """A streamed request answered with something else: a ``chat.completion`` JSON body is
        the reply (some servers ignore ``stream``); anything else says what came."""
        if "json" in (self.response.headers.get("content-type") or ""):
            return self.take_body(body)
        raise StreamError(
            f"{self._what_came(body)}, not an event stream; check base_url (Oxen's is "
            "https://hub.oxen.ai/api/ai)."
        )

    def check_end(self) -> list[str]:
        """Flush the decoder at the end of the body (a last event may end in a lone CR); return
        its deltas. A body that ended with neither ``[DONE]`` nor a finish reason was cut off."""
        deltas = []
        for event in self.decoder.end():
            delta = self.assembler.feed(event.data)
            if delta:
                deltas.append(delta)
        if self.expired:
            raise self.client.deadline_error(partial=True)
        if not self.assembler.done and not self.assembler.finish_reason:
            if not self.assembler.events:  # not one event: whatever came was no event stream
                raise StreamError(f"{self._what_came()}, with no event in it; check base_url.")
            raise StreamError(
                "the connection closed before the reply was complete; the partial reply was kept."
            )
        return deltas

    def check_complete(self) -> None:
        """A reply that ended (even with ``[DONE]``) having sent nothing at all is not an answer:
        llama-cpp-python's server ends a stream that way when another request cancels it."""
        if self.assembler.empty:
            raise StreamError(
                "the server ended the reply with no content and no finish reason (it may have "
                "cancelled it for another request); send it again."
            )

    def check_deadline(self) -> None:
        if self.expired or (self.deadline is not None and time.monotonic() > self.deadline):
            self.expired = True
            raise self.client.deadline_error(partial=True)

    def _what_came(self, body: bytes | None = None) -> str:
        """``the server answered 502 (text/plain): b'Bad gateway'``: what an answer that is not
        what was asked for is."""
        response, secret = self.response, self.client.key_text()
        status = response.status_code if response is not None else "?"
        kind = (response.headers.get("content-type") if response is not None else None) or "no content type"
        head = (body if body is not None else self.head or b"")[:_HEAD]
        return f"the server answered {status} ({one_line(kind, 100, secret=secret)}): {redact(repr(head), secret)}"

    # -- ending --------------------------------------------------------------------------------

    def broken(self, exc: BaseException) -> OxenError:
        """The error a failed reply ends with. Anything that is not ours to name (a bug of ours, or
        an answer nobody foresaw) still becomes a one-line :class:`StreamError`: the reply must end
        and the session go on whatever happened."""
        import httpx

        if isinstance(exc, OxenError):
            return exc
        if self.expired:
            return self.client.deadline_error(partial=True)
        if isinstance(exc, httpx.TimeoutException):
            return StreamError(
                "the stream stalled past the read timeout; the partial reply was kept "
                "(raise Session(timeout=...) for slow models)."
            )
        if isinstance(exc, httpx.HTTPError):
            return StreamError(
                f"the connection broke mid-reply ({type(exc).__name__}); the partial reply was kept."
            )
        _log.debug("oxen_notebook failed while reading a reply", exc_info=exc)
        try:
            said = one_line(exc, 100, secret=self.client.key_text())
        except Exception:  # an exception whose str() fails says nothing more
            said = ""
        return StreamError(
            f"the reply could not be read ({type(exc).__name__}{': ' + said if said else ''}); the partial "
            "reply was kept: send it again, and if it repeats, report it with the server's answer."
        )

    def snapshot(self) -> Message:
        """The reply so far as a record marked ``interrupted`` (what a crash now would leave)."""
        user = self.request.user
        return Message(
            message_id=self.message_id,
            role="assistant",
            content=self.text,
            conversation_id=user.conversation_id,
            turn=user.turn,
            model=self.request.model,
            params=dict(user.params),
            finish_reason="interrupted",
            error="the reply was cut off: the process ended while it streamed",
            source=user.source,
        )

    def finish(self, reply: Any, reason: str | None = None, error: OxenError | None = None) -> None:
        """End ``reply`` (the public one, which the host is told about; the state keeps no reference
        to it, so a finished reply is freed at once): its record, the cache, and the host's ``end``
        (which frees the session), whatever fails on the way: a record that cannot be made is an
        ``"error"`` record."""
        if self.finished:
            return
        self.finished = True
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        try:
            self.message = self._record(reason, error)
        except Exception as exc:
            error = error or self.broken(exc)
            user = self.request.user
            self.message = Message(
                message_id=self.message_id,
                role="assistant",
                content=self.text,
                model=self.request.model,
                finish_reason="error",
                error=str(error),
                source=user.source,
            )
        self.error = error
        try:
            self._remember()
        except Exception:  # a reply the cache could not keep is still a reply
            _log.warning("oxen_notebook could not store a reply in the response cache", exc_info=True)
        try:
            self.host.end(reply)  # frees the session whatever fails in it
        except Exception as exc:
            failure = self.broken(exc)
            raise failure from (None if failure is exc else exc)

    def _remember(self) -> None:
        message = self.message
        if self.cache is None or message is None or self.cached or self.error is not None:
            return
        reply = {
            "text": message.content,
            "finish_reason": message.finish_reason,
            "usage": self.assembler.usage,  # the server's: counts made here are made again
            "tool_calls": message.tool_calls,
        }
        store(self.cache, self.request.base_url, self.body, reply)

    def _record(self, reason: str | None, error: OxenError | None) -> Message:
        duration = (time.perf_counter() - self.t0) if self.t0 else None  # before any counting
        assembler, user = self.assembler, self.request.user
        if reason is None:
            reason = "error" if error else (assembler.finish_reason or "stop")
        usage = assembler.usage or {}
        estimated = False
        if reason not in ("error", "interrupted"):  # a complete reply the server sent no counts for
            from ._tokens import fill_usage  # the tokenizer loads on the first count, not at import

            tools = self.body.get("tools")
            usage, estimated = fill_usage(
                assembler.usage, self.messages, self.text, tool_calls=self.tool_calls, tools=tools
            )
        return Message(
            message_id=self.message_id,
            role="assistant",
            content=self.text,
            model=self.request.model,
            params=dict(user.params),
            finish_reason=reason,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            total_tokens=usage.get("total_tokens"),
            usage_estimated=estimated,
            ttft_s=self.ttft,
            duration_s=duration,
            error=str(error) if error else None,
            source=user.source,
            tool_calls=self.tool_calls or None,
            cached=self.cached,
            note=self.note,
        )
