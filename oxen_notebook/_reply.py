"""One exchange: ``Reply`` (sync) and ``AsyncReply``, over one chunk assembler.

A reply knows its :class:`PreparedRequest`, the :class:`Client` that sends it, the response cache,
and its host (the Session) only through ``_exchange.ExchangeHost``: ``begin`` when it starts (the
history is read and the session lock taken), ``delta`` per text piece, ``end`` when it finished,
whatever the reason.

A reply streams (SSE) unless ``streamed`` is set to ``False`` before it starts: then it sends
``"stream": false`` and reads one ``chat.completion`` body, which carries ``usage`` on servers that
ignore ``stream_options.include_usage``; its text arrives as one delta. Batch rows use that, since
nobody watches them stream.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

from ._errors import BadRequestError
from ._exchange import Exchange

if TYPE_CHECKING:
    import asyncio

    import httpx


__all__ = ["AsyncReply", "Reply"]


class Reply(Exchange):
    """A streamed reply. Iterate it for text deltas; use it as a context manager to close early.

    Iterating sends the request. Leaving early (``break``, ``close()``, an exception, Ctrl-C) closes
    the HTTP response at once and records the partial text with finish_reason ``interrupted``.
    """

    def __iter__(self) -> Iterator[str]:
        self._check_fresh()
        return self._run()

    def _run(self) -> Iterator[str]:
        self._t0 = time.perf_counter()
        messages = self._host.begin(self)
        try:
            self._begun(messages)
            self._arm()
            hit = self._replay()
            if hit is not None:
                for delta in hit:
                    self._host.delta(self, delta)
                    yield delta
                self._finish()
                return
            try:
                response = self._send()
            except BadRequestError as exc:
                if not self._fall_back(exc):
                    raise
                response = self._send()
            self._response = response
            chunks: Iterable[bytes] = ()
            if self._stop.is_set():
                pass
            elif not self._streamed:  # the body is already read: the Client retried a broken one
                for delta in self._take_body(response.content):
                    self._host.delta(self, delta)
                    yield delta
            elif not self._is_event_stream(response):  # a JSON reply is the reply; else say what came
                body = self._client.read_body(response, self._deadline, cut=self._other_limit(response))
                for delta in self._take_other(body):
                    self._host.delta(self, delta)
                    yield delta
            else:
                chunks = response.iter_bytes()
            for chunk in chunks:
                for delta in self._take(chunk):
                    self._host.delta(self, delta)
                    yield delta
                if self._assembler.done or self._stop.is_set():
                    break
                if self._expired:
                    self._check_deadline()
            if self._stop.is_set():
                self._close_response()
                self._finish("interrupted")
                return
            if not self._assembler.done:
                for delta in self._check_end():
                    self._host.delta(self, delta)
                    yield delta
            self._check_complete()
        except GeneratorExit:
            self._close_response()
            self._finish("interrupted")
            raise
        except BaseException as exc:
            self._close_response()
            if self._stop.is_set():
                self._finish("interrupted")
                return
            if not isinstance(exc, Exception):
                self._finish("interrupted")
                raise
            error = self._broken(exc)
            self._finish(error=error)
            raise error from (None if error is exc else exc)
        self._close_response()
        self._finish()
        if self.error is not None:  # the reply came, but could not be recorded
            raise self.error

    def consume(self) -> Reply:
        """Read the whole reply; return it. Raises the request's error, after recording it."""
        if not self._started:
            for _ in self:
                pass
        elif self.error is not None:
            raise self.error
        return self

    def close(self) -> None:
        """Close the HTTP response now; an unfinished reply is recorded as ``interrupted``."""
        self._close_response()
        if self._started and not self._finished:
            self._finish("interrupted")

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncReply(Exchange):
    """The async twin of :class:`Reply`: ``async for delta in reply``; ``await reply.aclose()``."""

    _task: asyncio.Task | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _reading = False  # the task waits on the server (the deadline may cancel it)

    def __aiter__(self) -> AsyncIterator[str]:
        self._check_fresh()
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._t0 = time.perf_counter()
        messages = await self._host.abegin(self)
        try:
            self._begun(messages)
            self._arm()
            hit = self._replay()
            if hit is not None:
                for delta in hit:
                    self._host.delta(self, delta)
                    yield delta
                self._finish()
                return
            self._reading = True
            try:
                response: httpx.Response = await self._asend()
            except BadRequestError as exc:
                if not self._fall_back(exc):
                    raise
                response = await self._asend()
            self._response = response
            if not self._streamed:
                self._reading = False
                for delta in self._take_body(response.content):
                    self._host.delta(self, delta)
                    yield delta
            elif not self._is_event_stream(response):  # a JSON reply is the reply; else say what came
                limit = self._other_limit(response)
                body = await self._client.aread_body(response, self._deadline, cut=limit)
                self._reading = False
                for delta in self._take_other(body):
                    self._host.delta(self, delta)
                    yield delta
            else:
                async for chunk in response.aiter_bytes():
                    self._reading = False  # the caller has the task while a delta is out
                    for delta in self._take(chunk):
                        self._host.delta(self, delta)
                        yield delta
                    if self._assembler.done or self._stop.is_set():
                        break
                    self._check_deadline()
                    self._reading = True
            self._reading = False
            if not self._stop.is_set():
                if not self._assembler.done:
                    for delta in self._check_end():
                        self._host.delta(self, delta)
                        yield delta
                self._check_complete()
        except GeneratorExit:
            await self._aclose_response()
            self._finish("interrupted")
            raise
        except BaseException as exc:
            await self._aclose_response()
            if isinstance(exc, asyncio.CancelledError) and (self._stop.is_set() or self._expired):
                if sys.version_info >= (3, 11) and self._task is not None:
                    self._task.uncancel()
                if self._stop.is_set():
                    self._finish("interrupted")
                    return
            elif not isinstance(exc, Exception):
                self._finish("interrupted")
                raise
            error = self._broken(exc)
            self._finish(error=error)
            raise error from (None if error is exc else exc)
        await self._aclose_response()
        self._finish("interrupted" if self._stop.is_set() else None)
        if self.error is not None:  # the reply came, but could not be recorded
            raise self.error

    def _arm(self) -> None:
        """The deadline cancels the task that reads the reply (whatever it waits for)."""
        seconds = self._client.deadline
        loop = self._loop
        if seconds is None or loop is None:
            return
        self._deadline = time.monotonic() + seconds
        self._timer = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        # Cancel the task only while it waits on the server: while a delta is out, the task runs
        # the caller's code, and the reply sees the deadline when it is next asked for more.
        self._expired = True
        task = self._task
        if self._reading and task is not None and not task.done() and not self._stop.is_set():
            task.cancel()

    async def _aclose_response(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()

    def stop(self) -> None:
        """Stop streaming from any thread or task; the partial reply is kept as ``interrupted``."""
        import asyncio

        self._stop.set()
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
        if not self._started:
            async for _ in self:
                pass
        elif self.error is not None:
            raise self.error
        return self

    async def aclose(self) -> None:
        """Close the HTTP response now; an unfinished reply is recorded as ``interrupted``."""
        await self._aclose_response()
        if self._started and not self._finished:
            self._finish("interrupted")

    async def __aenter__(self) -> AsyncReply:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
