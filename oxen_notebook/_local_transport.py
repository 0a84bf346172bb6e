"""The local model over HTTP: httpx transports that answer chat-completions requests in-process.

Streams are real SSE bytes (``data: {chunk}`` events, then ``data: [DONE]``), errors are Oxen-shaped
JSON bodies with their status, so the hosted API's client code reads both the same way.

Stopping: closing the sync stream ends generation at once (or, from another thread, at the next
token). The async stream runs generation in a worker thread that feeds an asyncio queue; closing
it sets the stop flag, which the worker checks at every token, and waits for the worker to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx

from ._errors import MissingDependencyError
from ._local import (
    LOCAL_BASE_URL,
    LOCAL_MODEL,
    Generation,
    LocalRequestError,
    local_model_entry,
    parse_chat_request,
)

__all__ = ["AsyncLocalTransport", "LocalTransport"]

_BASE_PATH = httpx.URL(LOCAL_BASE_URL).path.rstrip("/")
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _sse_events(generation: Generation) -> Iterator[bytes]:
    for chunk in generation.deltas():
        yield _sse(chunk)
    if not generation.stopped:
        yield _DONE


def _json(status: int, body: Any, request: httpx.Request) -> httpx.Response:
    return httpx.Response(status, json=body, request=request)


def _error(error: LocalRequestError, request: httpx.Request) -> httpx.Response:
    return _json(error.status, error.body(), request)


def _unexpected(exc: Exception, request: httpx.Request) -> httpx.Response:
    detail = f"the local model failed: {type(exc).__name__}: {exc}"
    return _error(LocalRequestError(500, "unknown_error", "Local model error", detail), request)


def _route(request: httpx.Request) -> tuple[str, str | None]:
    """``("chat", None)``, ``("models", None)``, ``("model", id)``; a LocalRequestError otherwise."""
    path = request.url.path
    if path.startswith(_BASE_PATH):
        path = path[len(_BASE_PATH) :]
    path = path.rstrip("/")
    if request.method == "POST" and path == "/chat/completions":
        return "chat", None
    if request.method == "GET" and path == "/models":
        return "models", None
    if request.method == "GET" and path.startswith("/models/"):
        return "model", unquote(path[len("/models/") :])
    raise LocalRequestError(
        404, "resource_not_found", "Not found", f"the local model does not serve {request.method} {path}"
    )


def _models_response(kind: str, model: str | None, request: httpx.Request) -> httpx.Response:
    if kind == "model":
        if not model or not (model == LOCAL_MODEL or model.startswith("local:")):
            raise LocalRequestError(404, "resource_not_found", "Model not found", f"Model not found: {model}")
        return _json(200, local_model_entry(model), request)
    try:
        data = [local_model_entry(LOCAL_MODEL)]
    except MissingDependencyError:
        data = []
    return _json(200, {"object": "list", "data": data}, request)


def _body(content: bytes) -> Any:
    try:
        return json.loads(content or b"null")
    except ValueError:
        raise LocalRequestError(
            400, "invalid_params", "Invalid parameters", "the request body is not valid JSON."
        ) from None


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, generation: Generation) -> None:
        self._generation = generation

    def __iter__(self) -> Iterator[bytes]:
        return _sse_events(self._generation)

    def close(self) -> None:
        self._generation.close()


class LocalTransport(httpx.BaseTransport):
    """Sync transport: generation runs on the thread that reads the response."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            kind, model = _route(request)
            if kind != "chat":
                return _models_response(kind, model, request)
            chat = parse_chat_request(_body(request.read()))
            generation = Generation(chat)
            generation.start()
            if not chat.stream:
                return _json(200, generation.completion(), request)
            return httpx.Response(200, headers=_SSE_HEADERS, stream=_SyncStream(generation), request=request)
        except LocalRequestError as exc:
            return _error(exc, request)
        except (MissingDependencyError, httpx.HTTPError):
            raise
        except Exception as exc:
            return _unexpected(exc, request)


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(
        self, generation: Generation, queue: asyncio.Queue[bytes | None], done: asyncio.Future[None]
    ) -> None:
        self._generation = generation
        self._queue = queue
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def aclose(self) -> None:
        self._generation.stop()
        # The worker stops at its next token; waiting keeps "closed" meaning "the model is free".
        await asyncio.shield(self._done)


def _worker(
    generation: Generation,
    loop: asyncio.AbstractEventLoop,
    started: asyncio.Future[None],
    done: asyncio.Future[None],
    put: Callable[[bytes | None], None],
) -> None:
    def settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    try:
        try:
            generation.start()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, started, exc)
            return
        loop.call_soon_threadsafe(settle, started, None)
        for event in _sse_events(generation):
            if generation.stopped:
                break
            loop.call_soon_threadsafe(put, event)
        loop.call_soon_threadsafe(put, None)
    except RuntimeError:
        generation.stop()  # the event loop closed under us: nobody is listening
    finally:
        generation.close()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, done, None)


class AsyncLocalTransport(httpx.AsyncBaseTransport):
    """Async transport: generation runs in a worker thread, so the event loop never blocks."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            kind, model = _route(request)
            if kind != "chat":
                return _models_response(kind, model, request)
            chat = parse_chat_request(_body(await request.aread()))
            generation = Generation(chat)
            if not chat.stream:
                return await self._complete(generation, request)
            return await self._stream(generation, request)
        except LocalRequestError as exc:
            return _error(exc, request)
        except (MissingDependencyError, httpx.HTTPError, asyncio.CancelledError):
            raise
        except Exception as exc:
            return _unexpected(exc, request)

    @staticmethod
    async def _complete(generation: Generation, request: httpx.Request) -> httpx.Response:
        def run() -> dict[str, Any]:
            generation.start()
            return generation.completion()

        try:
            body = await asyncio.to_thread(run)
        except asyncio.CancelledError:
            generation.stop()
            raise
        return _json(200, body, request)

    @staticmethod
    async def _stream(generation: Generation, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[None] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=_worker,
            args=(generation, loop, started, done, queue.put_nowait),
            name="oxen-local-generation",
            daemon=True,
        )
        thread.start()
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            generation.stop()
            started.cancel()  # so the worker leaves it alone: nobody would read its outcome
            raise
        return httpx.Response(
            200,
            headers=_SSE_HEADERS,
            stream=_AsyncStream(generation, queue, done),
            request=request,
        )
