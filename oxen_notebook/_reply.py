"""One exchange: ``Reply`` (sync) and ``AsyncReply``, thin I/O loops over one ``ExchangeState``.

A reply *has* an :class:`~oxen_notebook._exchange.ExchangeState` (the request, the assembler,
timing, the cache, the fallback, the record it ends with: no I/O) and does the I/O itself: it
sends the request through its :class:`Client`, reads the body, arms the deadline and stops. Its
host (the Session) hears from it only through ``_exchange.ExchangeHost``: ``begin`` when it starts
(the history is read and the session lock taken), ``delta`` per text piece, ``end`` when it
finished, whatever the reason.

A reply streams (SSE) unless ``streamed`` is set to ``False`` before it starts: then it sends
``"stream": false`` and reads one ``chat.completion`` body, which carries ``usage`` on servers that
ignore ``stream_options.include_usage``; its text arrives as one delta. Batch rows use that, since
nobody watches them stream.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._errors import BadRequestError, ReplyConsumedError
from ._exchange import ExchangeHost, ExchangeState

if TYPE_CHECKING:
    import asyncio

    import httpx

    from ._cache import ResponseCache
    from ._client import Client
    from ._errors import OxenError
    from ._records import Message
    from ._request import PreparedRequest


__all__ = ["AsyncReply", "Reply"]


class _Replying:
    """What both flavours show: read from their exchange state."""

    _state: ExchangeState

    @property
    def request(self) -> PreparedRequest:
        """What the reply sends (its ``json_object`` fallback, once it fell back)."""
        return self._state.request

    @property
    def user_message(self) -> Message:
        return self._state.request.user

    @property
    def model(self) -> str:
        return self._state.request.model

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages the request sends (known once it started)."""
        return self._state.messages

    @property
    def body(self) -> dict[str, Any]:
        """The request's JSON body (known once it started)."""
        return self._state.body

    @property
    def message(self) -> Message | None:
        """The reply's record, once it finished."""
        return self._state.message

    @property
    def error(self) -> OxenError | None:
        """What ended the reply, if it failed."""
        return self._state.error

    @property
    def message_id(self) -> str:
        """The assistant message's id: known from the start, so a checkpoint of the partial reply
        and the finished record are the same message."""
        return self._state.message_id

    @property
    def cached(self) -> bool:
        """Answered from the session's response cache."""
        return self._state.cached

    @property
    def note(self) -> str | None:
        """What the client did on the user's behalf (e.g. sent the request again), or ``None``."""
        return self._state.note

    @property
    def text(self) -> str:
        """The reply's text so far (all of it, once finished)."""
        return self._state.text

    @property
    def finish_reason(self) -> str | None:
        message = self._state.message
        return message.finish_reason if message is not None else None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The server's ``usage`` (``None`` if it sent none). Once a complete reply has finished,
        the counts the server did not send are there too, counted here as its record's are, and
        ``"estimated": True`` says so (the record's ``usage_estimated``)."""
        return self._state.usage

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return self._state.tool_calls

    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def streamed(self) -> bool:
        """Whether the request streams; set ``False`` before the reply starts to send it unstreamed.

        An unstreamed reply has nothing to show until its body arrives, so a sync ``stop()`` from
        another thread takes effect only then (the async twin's ``stop()`` cancels at once)."""
        return self._state.streamed

    @streamed.setter
    def streamed(self, value: bool) -> None:
        if self._state.started:
            raise ReplyConsumedError("this reply already started; set streamed before reading it.")
        self._state.streamed = bool(value)

    def snapshot(self) -> Message:
        """The reply so far as a record marked ``interrupted`` (what a crash now would leave)."""
        return self._state.snapshot()

    def __repr__(self) -> str:
        state = self.finish_reason or ("streaming" if self._state.started else "not started")
        return f"<{type(self).__name__} {self.model} {state}: {self.text[:60]!r}>"

    def _repr_html_(self) -> str:
        # Model text is untrusted: shown as sanitized HTML, never as raw Markdown.
        from ._render import render_markdown
        from ._style import style_tag

        return style_tag() + render_markdown(self.text)  # the sheet colours its code


class Reply(_Replying):
    """A streamed reply. Iterate it for text deltas; use it as a context manager to close early.

    Iterating sends the request. Leaving early (``break``, ``close()``, an exception, Ctrl-C) closes
    the HTTP response at once and records the partial text with finish_reason ``interrupted``.
    """

    def __init__(
        self,
        request: PreparedRequest,
        host: ExchangeHost,
        client: Client,
        cache: ResponseCache | None,
        *,
        stream: bool = True,
    ) -> None:
        self._state = ExchangeState(request, host, client, cache, stream=stream)

    def __iter__(self) -> Iterator[str]:
        self._state.check_fresh()
        return self._run()

    def _run(self) -> Iterator[str]:
        state, host = self._state, self._state.host
        state.t0 = time.perf_counter()
        messages = host.begin(self)
        try:
            state.begun(messages)
            self._arm()
            hit = state.replay()
            if hit is not None:
                for delta in hit:
                    host.delta(self, delta)
                    yield delta
                state.finish(self)
                return
            try:
                response = self._send()
            except BadRequestError as exc:
                if not state.fall_back(exc):
                    raise
                response = self._send()
            state.response = response
            chunks: Iterable[bytes] = ()
            if state.stopped.is_set():
                pass
            elif not state.streamed:  # the body is already read: the Client retried a broken one
                for delta in state.take_body(response.content):
                    host.delta(self, delta)
                    yield delta
            elif not state.is_event_stream(response):  # a JSON reply is the reply; else say what came
                body = state.client.read_body(response, state.deadline, cut=state.other_limit(response))
                for delta in state.take_other(body):
                    host.delta(self, delta)
                    yield delta
            else:
                chunks = response.iter_bytes()
            for chunk in chunks:
                for delta in state.take(chunk):
                    host.delta(self, delta)
                    yield delta
                if state.done or state.stopped.is_set():
                    break
                if state.expired:
                    state.check_deadline()
            if state.stopped.is_set():
                self._close_response()
                state.finish(self, "interrupted")
                return
            if not state.done:
                for delta in state.check_end():
                    host.delta(self, delta)
                    yield delta
            state.check_complete()
        except GeneratorExit:
            self._close_response()
            state.finish(self, "interrupted")
            raise
        except BaseException as exc:
            self._close_response()
            if state.stopped.is_set():
                state.finish(self, "interrupted")
                return
            if not isinstance(exc, Exception):
                state.finish(self, "interrupted")
                raise
            error = state.broken(exc)
            state.finish(self, error=error)
            raise error from (None if error is exc else exc)
        self._close_response()
        state.finish(self)
        if state.error is not None:  # the reply came, but could not be recorded
            raise state.error

    def _send(self) -> httpx.Response:
        state = self._state
        return state.client.send(
            "POST",
            "/chat/completions",
            json=state.wire_body(),
            headers=state.request.headers,
            stream=state.streamed,
            model=state.request.model,
            deadline=state.deadline,
        )

    def _arm(self) -> None:
        """Start the request's clock: a timer wakes a blocked read when it runs out."""
        seconds = self._state.start_clock()
        if seconds is None:
            return
        timer = threading.Timer(seconds, self._expire)
        timer.daemon = True
        timer.start()
        self._state.timer = timer

    def _expire(self) -> None:
        self._state.expired = True
        self._wake()

    def _wake(self) -> None:
        response = self._state.response
        stream = response.extensions.get("network_stream") if response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            # Closing the response from here would not wake a reader blocked in recv(); this does.
            import socket

            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _close_response(self) -> None:
        response, self._state.response = self._state.response, None
        if response is not None:
            response.close()

    def stop(self) -> None:
        """Stop streaming from any thread; the partial reply is kept as ``interrupted``."""
        self._state.stopped.set()
        self._wake()

    def consume(self) -> Reply:
        """Read the whole reply; return it. Raises the request's error, after recording it."""
        if not self._state.started:
            for _ in self:
                pass
        elif self._state.error is not None:
            raise self._state.error
        return self

    def close(self) -> None:
        """Close the HTTP response now; an unfinished reply is recorded as ``interrupted``."""
        self._close_response()
        if self._state.started and not self._state.finished:
            self._state.finish(self, "interrupted")

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncReply(_Replying):
    """The async twin of :class:`Reply`: ``async for delta in reply``; ``await reply.aclose()``."""

    def __init__(
        self,
        request: PreparedRequest,
        host: ExchangeHost,
        client: Client,
        cache: ResponseCache | None,
        *,
        stream: bool = True,
    ) -> None:
        self._state = ExchangeState(request, host, client, cache, stream=stream)
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False  # the task waits on the server (the deadline may cancel it)

    def __aiter__(self) -> AsyncIterator[str]:
        self._state.check_fresh()
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        import asyncio

        state, host = self._state, self._state.host
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        state.t0 = time.perf_counter()
        messages = await host.abegin(self)
        try:
            state.begun(messages)
            self._arm()
            hit = state.replay()
            if hit is not None:
                for delta in hit:
                    host.delta(self, delta)
                    yield delta
                state.finish(self)
                return
            self._reading = True
            try:
                response: httpx.Response = await self._asend()
            except BadRequestError as exc:
                if not state.fall_back(exc):
                    raise
                response = await self._asend()
            state.response = response
            if not state.streamed:
                self._reading = False
                for delta in state.take_body(response.content):
                    host.delta(self, delta)
                    yield delta
            elif not state.is_event_stream(response):  # a JSON reply is the reply; else say what came
                limit = state.other_limit(response)
                body = await state.client.aread_body(response, state.deadline, cut=limit)
                self._reading = False
                for delta in state.take_other(body):
                    host.delta(self, delta)
                    yield delta
            else:
                async for chunk in response.aiter_bytes():
                    self._reading = False  # the caller has the task while a delta is out
                    for delta in state.take(chunk):
                        host.delta(self, delta)
                        yield delta
                    if state.done or state.stopped.is_set():
                        break
                    state.check_deadline()
                    self._reading = True
            self._reading = False
            if not state.stopped.is_set():
                if not state.done:
                    for delta in state.check_end():
                        host.delta(self, delta)
                        yield delta
                state.check_complete()
        except GeneratorExit:
            await self._aclose_response()
            state.finish(self, "interrupted")
            raise
        except BaseException as exc:
            await self._aclose_response()
            if isinstance(exc, asyncio.CancelledError) and (state.stopped.is_set() or state.expired):
                if sys.version_info >= (3, 11) and self._task is not None:
                    self._task.uncancel()
                if state.stopped.is_set():
                    state.finish(self, "interrupted")
                    return
            elif not isinstance(exc, Exception):
                state.finish(self, "interrupted")
                raise
            error = state.broken(exc)
            state.finish(self, error=error)
            raise error from (None if error is exc else exc)
        await self._aclose_response()
        state.finish(self, "interrupted" if state.stopped.is_set() else None)
        if state.error is not None:  # the reply came, but could not be recorded
            raise state.error

    async def _asend(self) -> httpx.Response:
        state = self._state
        return await state.client.asend(
            "POST",
            "/chat/completions",
            json=state.wire_body(),
            headers=state.request.headers,
            stream=state.streamed,
            model=state.request.model,
            deadline=state.deadline,
        )

    def _arm(self) -> None:
        """The deadline cancels the task that reads the reply (whatever it waits for)."""
        loop = self._loop
        seconds = self._state.start_clock() if loop is not None else None
        if seconds is None or loop is None:
            return
        self._state.timer = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        # Cancel the task only while it waits on the server: while a delta is out, the task runs
        # the caller's code, and the reply sees the deadline when it is next asked for more.
        self._state.expired = True
        task = self._task
        if self._reading and task is not None and not task.done() and not self._state.stopped.is_set():
            task.cancel()

    async def _aclose_response(self) -> None:
        response, self._state.response = self._state.response, None
        if response is not None:
            await response.aclose()

    def stop(self) -> None:
        """Stop streaming from any thread or task; the partial reply is kept as ``interrupted``."""
        import asyncio

        self._state.stopped.set()
        loop, task = self._loop, self._task
        if loop is None or task is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            if task is not asyncio.current_task():
                task.cancel()
        else:
            loop.call_soon_threadsafe(task.cancel)

    async def aconsume(self) -> AsyncReply:
        """Read the whole reply; return it. Raises the request's error, after recording it."""
        if not self._state.started:
            async for _ in self:
                pass
        elif self._state.error is not None:
            raise self._state.error
        return self

    async def aclose(self) -> None:
        """Close the HTTP response now; an unfinished reply is recorded as ``interrupted``."""
        await self._aclose_response()
        if self._state.started and not self._state.finished:
            self._state.finish(self, "interrupted")

    async def __aenter__(self) -> AsyncReply:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
