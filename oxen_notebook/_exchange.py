"""The state and steps both reply flavours share: :class:`Exchange` (one request, its assembler,
timing, the cache, the json_object fallback, the record it ends with) and :class:`ExchangeHost`,
what a reply tells the conversation it belongs to. The I/O loops are ``_reply.py``'s.

The failure path's promise: whatever goes wrong inside a reply (a server's malformed answer, or a
bug of ours), the reply ends, recorded with finish_reason ``"error"``, its host hears ``end``
(which frees the session for the next request), and the caller gets an :class:`OxenError`."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from ._assembler import Assembler
from ._cache import ResponseCache, lookup_first, store
from ._errors import BadRequestError, OxenError, ReplyConsumedError, StreamError, one_line, redact
from ._records import Message, new_id
from ._request import with_fallback
from ._sse import SSEDecoder

if TYPE_CHECKING:
    import httpx

    from ._client import Client
    from ._reply import AsyncReply, Reply
    from ._request import PreparedRequest

__all__ = ["Exchange", "ExchangeHost"]

_log = logging.getLogger("oxen_notebook")
_HEAD = 80  # bytes of an answer quoted when it is not what was asked for
_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


class ExchangeHost(Protocol):
    """What a reply tells the conversation it belongs to (the Session implements it)."""

    def begin(self, reply: Reply | AsyncReply) -> None: ...

    async def abegin(self, reply: Reply | AsyncReply) -> None: ...

    def delta(self, reply: Reply | AsyncReply, text: str) -> None: ...

    def end(self, reply: Reply | AsyncReply) -> None: ...


class Exchange:
    """The state both reply flavours share: request, assembler, timing, and the finish."""

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
        self.user_message: Message = request.user
        self.model: str = request.model
        self.message: Message | None = None
        self.error: OxenError | None = None
        self._host = host
        self._client = client
        self._cache = cache
        self._assembler = Assembler(secret=client.key_text)  # an error event may echo the key
        self._decoder = SSEDecoder()
        self._started = False
        self._finished = False
        self._stop = threading.Event()
        self._streamed = stream
        self._response: Any = None
        self._t0 = 0.0
        self._deadline: float | None = None  # monotonic; see Client.deadline
        self._expired = False  # the deadline passed while the reply was open
        self._timer: Any = None  # what fires at the deadline (a thread's timer, a loop's handle)
        self._head: bytes | None = None  # the answer's first bytes, to say what came when it was not SSE
        self._ttft: float | None = None
        self.cached = False  # answered from the session's response cache
        #: The assistant message's id: known from the start, so a checkpoint of the partial reply
        #: and the finished record are the same message.
        self.message_id = new_id()
        #: What the client did on the user's behalf (e.g. sent the request again), or ``None``.
        self.note: str | None = None

    # -- what users read ----------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The reply's text so far (all of it, once finished)."""
        return "".join(self._assembler.parts)

    @property
    def finish_reason(self) -> str | None:
        if self.message is not None:
            return self.message.finish_reason
        return None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The server's ``usage`` (``None`` if it sent none). Once a complete reply has finished,
        the counts the server did not send are there too, counted here as its record's are, and
        ``"estimated": True`` says so (the record's ``usage_estimated``)."""
        usage, message = self._assembler.usage, self.message
        if message is None or not message.usage_estimated:
            return usage
        counts = {name: getattr(message, name) for name in _COUNTS}
        return {**(usage or {}), **counts, "estimated": True}

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self._assembler.tool_calls[i] for i in sorted(self._assembler.tool_calls)]

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def streamed(self) -> bool:
        """Whether the request streams; set ``False`` before the reply starts to send it unstreamed.

        An unstreamed reply has nothing to show until its body arrives, so a sync ``stop()`` from
        another thread takes effect only then (the async twin's ``stop()`` cancels at once)."""
        return self._streamed

    @streamed.setter
    def streamed(self, value: bool) -> None:
        if self._started:
            raise ReplyConsumedError("this reply already started; set streamed before reading it.")
        self._streamed = bool(value)

    def __repr__(self) -> str:
        state = self.finish_reason or ("streaming" if self._started else "not started")
        return f"<{type(self).__name__} {self.model} {state}: {self.text[:60]!r}>"

    def _repr_html_(self) -> str:
        # Model text is untrusted: shown as sanitized HTML, never as raw Markdown.
        from ._render import render_markdown
        from ._style import style_tag

        return style_tag() + render_markdown(self.text)  # the sheet colours its code

    # -- shared steps -------------------------------------------------------------------------

    def _check_fresh(self) -> None:
        if self._started:
            raise ReplyConsumedError(
                "this reply was already consumed; read reply.text, or send again with session.stream()."
            )
        self._started = True

    def _replay(self) -> list[str] | None:
        """Answer from the response cache: fill the reply in and return its deltas, or ``None``.
        In replay mode a miss raises :class:`CacheMissError` (it ends the reply as an error)."""
        if self._cache is None:
            return None
        request = self.request
        bodies = [request.body]
        if self._cache.replaying and request.fallback is not None and not request.use_fallback:
            # Replay reads no model details, so it cannot know that the model takes only
            # json_object: if the recording sent the fallback, that body is the key.
            bodies.append(with_fallback(request.body, request.fallback))
        hit, body = lookup_first(self._cache, request.base_url, bodies)
        if hit is None:
            return None
        if body is not request.body:
            request.body, request.use_fallback = body, True
        self.cached = True
        text = self._assembler.restore(hit)
        return [text] if text else []

    def _remember(self) -> None:
        message = self.message
        if self._cache is None or message is None or self.cached or self.error is not None:
            return
        reply = {
            "text": message.content,
            "finish_reason": message.finish_reason,
            "usage": self._assembler.usage,  # the server's: counts made here are made again
            "tool_calls": message.tool_calls,
        }
        store(self._cache, self.request.base_url, self.request.body, reply)

    def _take(self, chunk: bytes) -> list[str]:
        if self._head is None:
            self._head = chunk[:_HEAD]
        deltas = []
        for event in self._decoder.feed(chunk):
            delta = self._assembler.feed(event.data)
            if delta:
                if self._ttft is None:
                    self._ttft = time.perf_counter() - self._t0
                deltas.append(delta)
            if self._assembler.done:
                break
        return deltas

    def _check_end(self) -> list[str]:
        """Flush the decoder at the end of the body (a last event may end in a lone CR); return
        its deltas. A body that ended with neither ``[DONE]`` nor a finish reason was cut off."""
        deltas = []
        for event in self._decoder.end():
            delta = self._assembler.feed(event.data)
            if delta:
                deltas.append(delta)
        if self._expired:
            raise self._client.deadline_error(partial=True)
        if not self._assembler.done and not self._assembler.finish_reason:
            if not self._assembler.events:  # not one event: whatever came was no event stream
                raise StreamError(f"{self._what_came()}, with no event in it; check base_url.")
            raise StreamError(
                "the connection closed before the reply was complete; the partial reply was kept."
            )
        return deltas

    def _what_came(self, body: bytes | None = None) -> str:
        """``the server answered 200 (text/html): b'<!doctype html>…'``: what an answer that is
        not what was asked for is."""
        response, secret = self._response, self._client.key_text()
        status = response.status_code if response is not None else "?"
        kind = (response.headers.get("content-type") if response is not None else None) or "no content type"
        head = (body if body is not None else self._head or b"")[:_HEAD]
        return f"the server answered {status} ({one_line(kind, 100, secret=secret)}): {redact(repr(head), secret)}"

    def _is_event_stream(self, response: httpx.Response) -> bool:
        """Whether a streamed request's answer is an event stream (or says nothing of its type)."""
        kind = response.headers.get("content-type", "")
        return not kind or "text/event-stream" in kind

    def _take_other(self, body: bytes) -> list[str]:
        """A streamed request answered with something else: a ``chat.completion`` JSON body is
        the reply (some servers ignore ``stream``); anything else says what came."""
        if "json" in (self._response.headers.get("content-type") or ""):
            return self._take_body(body)
        raise StreamError(
            f"{self._what_came(body)}, not an event stream; check base_url (Oxen's is "
            "https://hub.oxen.ai/api/ai)."
        )

    def _other_limit(self, response: httpx.Response) -> int | None:
        """How much of a non-SSE answer to read: all of a JSON body (bounded), a glimpse of the rest."""
        return None if "json" in (response.headers.get("content-type") or "") else 4 * _HEAD

    def _check_complete(self) -> None:
        """A reply that ended (even with ``[DONE]``) having sent nothing at all is not an answer:
        llama-cpp-python's server ends a stream that way when another request cancels it."""
        if self._assembler.empty:
            raise StreamError(
                "the server ended the reply with no content and no finish reason (it may have "
                "cancelled it for another request); send it again."
            )

    def _wire_body(self) -> dict[str, Any]:
        body = self.request.body
        if self._streamed:
            return body
        # stream_options is only valid on a streamed request.
        return {**{k: v for k, v in body.items() if k != "stream_options"}, "stream": False}

    def _take_body(self, body: bytes) -> list[str]:
        """Fold an unstreamed ``chat.completion`` body in; return its text as one delta."""
        delta = self._assembler.feed_completion(body)
        if delta and self._ttft is None:
            self._ttft = time.perf_counter() - self._t0
        return [delta] if delta else []

    def _broken(self, exc: BaseException) -> OxenError:
        """The error a failed reply ends with. Anything that is not ours to name (a bug of ours, or
        an answer nobody foresaw) still becomes a one-line :class:`StreamError`: the reply must end
        and the session go on whatever happened."""
        import httpx

        if isinstance(exc, OxenError):
            return exc
        if self._expired:
            return self._client.deadline_error(partial=True)
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
            said = one_line(exc, 100, secret=self._client.key_text())
        except Exception:  # an exception whose str() fails says nothing more
            said = ""
        return StreamError(
            f"the reply could not be read ({type(exc).__name__}{': ' + said if said else ''}); the partial "
            "reply was kept: send it again, and if it repeats, report it with the server's answer."
        )

    # -- the deadline -------------------------------------------------------------------------

    def _arm(self) -> None:
        """Start the request's clock: the sync flavour wakes a blocked read when it runs out."""
        seconds = self._client.deadline
        if seconds is None:
            return
        self._deadline = time.monotonic() + seconds
        timer = threading.Timer(seconds, self._expire)
        timer.daemon = True
        timer.start()
        self._timer = timer

    def _expire(self) -> None:
        self._expired = True
        self._wake()

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _check_deadline(self) -> None:
        if self._expired or (self._deadline is not None and time.monotonic() > self._deadline):
            self._expired = True
            raise self._client.deadline_error(partial=True)

    def _send(self) -> httpx.Response:
        return self._client.send(
            "POST", "/chat/completions", json=self._wire_body(), headers=self.request.headers,
            stream=self._streamed, model=self.model, deadline=self._deadline,
        )  # fmt: skip

    async def _asend(self) -> httpx.Response:
        return await self._client.asend(
            "POST", "/chat/completions", json=self._wire_body(), headers=self.request.headers,
            stream=self._streamed, model=self.model, deadline=self._deadline,
        )  # fmt: skip

    def _fall_back(self, error: BadRequestError) -> bool:
        """After a 400 that refuses ``json_schema``: switch to the request's ``json_object``
        fallback, once, and say so in the record. Nothing was streamed yet."""
        from ._schema import refuses_json_schema

        request = self.request
        if request.fallback is None or request.use_fallback or not refuses_json_schema(error):
            return False
        request.body = with_fallback(request.body, request.fallback)
        request.use_fallback = True
        self.note = (
            f"{self.model} refused response_format json_schema ({error.detail or error.message}); "
            "sent again as json_object with the schema in the system message"
        )
        return True

    def snapshot(self) -> Message:
        """The reply so far as a record marked ``interrupted`` (what a crash now would leave)."""
        user = self.user_message
        return Message(
            message_id=self.message_id,
            role="assistant",
            content=self.text,
            conversation_id=user.conversation_id,
            turn=user.turn,
            model=self.model,
            params=dict(user.params),
            finish_reason="interrupted",
            error="the reply was cut off: the process ended while it streamed",
            source=user.source,
        )

    def _finish(self, reason: str | None = None, error: OxenError | None = None) -> None:
        """End the reply: its record, the cache, and the host's ``end`` (which frees the session),
        whatever fails on the way: a record that cannot be made is an ``"error"`` record."""
        if self._finished:
            return
        self._finished = True
        self._disarm()
        try:
            self.message = self._record(reason, error)
        except Exception as exc:
            error = error or self._broken(exc)
            user = self.user_message
            self.message = Message(
                message_id=self.message_id,
                role="assistant",
                content=self.text,
                model=self.model,
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
            self._host.end(self)  # frees the session whatever fails in it
        except Exception as exc:
            failure = self._broken(exc)
            raise failure from (None if failure is exc else exc)

    def _record(self, reason: str | None, error: OxenError | None) -> Message:
        duration = (time.perf_counter() - self._t0) if self._t0 else None  # before any counting
        assembler = self._assembler
        if reason is None:
            reason = "error" if error else (assembler.finish_reason or "stop")
        usage = assembler.usage or {}
        estimated = False
        if reason not in ("error", "interrupted"):  # a complete reply the server sent no counts for
            from ._tokens import fill_usage  # the tokenizer loads on the first count, not at import

            body = self.request.body
            usage, estimated = fill_usage(
                assembler.usage, body.get("messages") or [], self.text,
                tool_calls=self.tool_calls, tools=body.get("tools"),
            )  # fmt: skip
        return Message(
            message_id=self.message_id,
            role="assistant",
            content=self.text,
            model=self.model,
            params=dict(self.user_message.params),
            finish_reason=reason,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            total_tokens=usage.get("total_tokens"),
            usage_estimated=estimated,
            ttft_s=self._ttft,
            duration_s=duration,
            error=str(error) if error else None,
            source=self.user_message.source,
            tool_calls=self.tool_calls or None,
            cached=self.cached,
            note=self.note,
        )

    def stop(self) -> None:
        """Stop streaming from any thread; the partial reply is kept as ``interrupted``."""
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        response = self._response
        stream = response.extensions.get("network_stream") if response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            # Closing the response from here would not wake a reader blocked in recv(); this does.
            import socket

            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _close_response(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
