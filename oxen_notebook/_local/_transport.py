"""The local model over HTTP: httpx transports that answer chat-completions requests in-process.

llama.cpp's server (``xllamacpp.Server``) does the work: chat templates, JSON Schema grammars,
stop sequences, usage, logprobs, its own 400s. This module routes requests, refuses in one line
what the bundled model cannot read (attachments, tools), runs each request in a worker thread
that feeds a queue, and frames the chunks as SSE (``data: {chunk}``, then ``data: [DONE]``);
errors become Oxen-shaped JSON bodies, so the hosted API's client code reads both the same way.

Stopping: closing a stream, from any thread, sets a flag that the worker's chunk callback
returns at the next token, which makes llama.cpp cancel the generation.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx

from .._assembler import Assembler
from .._errors import MissingDependencyError
from .._params import RANGES
from ._model import (
    LOCAL_BASE_URL,
    LOCAL_MODEL,
    LocalRequestError,
    is_local_model,
    load_model,
    local_model_entry,
    model_path,
)

__all__ = ["AsyncLocalTransport", "LocalTransport"]

_BASE_PATH = httpx.URL(LOCAL_BASE_URL).path.rstrip("/")
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_END = None  # the last item a worker puts: the response is complete


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _json(status: int, body: Any, request: httpx.Request) -> httpx.Response:
    return httpx.Response(status, json=body, request=request)


def _route(request: httpx.Request) -> tuple[str, str | None]:
    """``("chat", None)``, ``("models", None)``, ``("model", id)``; a LocalRequestError otherwise."""
    path = request.url.path.removeprefix(_BASE_PATH).rstrip("/")
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
    if kind == "models":
        return _json(200, {"object": "list", "data": [local_model_entry(LOCAL_MODEL)]}, request)
    if not is_local_model(model):
        raise LocalRequestError(404, "resource_not_found", "Model not found", f"Model not found: {model}")
    return _json(200, local_model_entry(model), request)


# -- what the local model refuses before it runs ------------------------------------------------

# What the local model would have to read, per content part type: a noun, and what to do instead.
_ATTACHED = {
    "file": ("PDF", "PDFs", "use a hosted model such as gpt-5-2-chat-latest, or paste the text"),
    "audio_url": ("audio", "audio", "use a hosted audio model such as gpt-audio, or paste a transcript"),
    "input_audio": ("audio", "audio", "use a hosted audio model such as gpt-audio, or paste a transcript"),
    "video_url": ("video", "videos", "use a hosted model that reads video (a Gemini model), or describe it"),
    "image_url": ("image", "images", "use a hosted model with image input (e.g. gpt-5-2-chat-latest)"),
}
_IMAGE_PARTS = ("image_url", "input_image", "image")


def _attached_name(kind: str, part: dict[str, Any]) -> str:
    """A file name, the URL's last segment, or the data's type (``audio/mp3 data``)."""
    body = part.get(kind) if isinstance(part.get(kind), dict) else {}
    if kind == "input_audio":
        return f"{body.get('format') or 'audio'} data"
    url = body.get("file_url") or body.get("url") or ""
    if kind == "file" and body.get("filename"):
        return str(body["filename"])
    if isinstance(url, str) and url.startswith("data:"):
        return f"{url[5:].split(';')[0].split(',')[0] or 'inline'} data"
    path = url.split("?")[0].split("#")[0] if isinstance(url, str) else ""
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]) if "/" in path else "inline data"


def _attachments_refusal(parts: list[dict[str, Any]]) -> LocalRequestError:
    """One line naming what was attached, grouped by kind, and what to do about each kind."""
    named: dict[str, list[str]] = {}
    for part in parts:
        kind = "image_url" if part["type"] in _IMAGE_PARTS else part["type"]
        named.setdefault(kind, []).append(_attached_name(kind, part))
    if set(named) == {"image_url"}:
        return LocalRequestError.invalid(
            "the local model reads text only: remove the images, or use a hosted model "
            "with image input (e.g. gpt-5-2-chat-latest)."
        )
    things = []
    for kind, names in named.items():
        noun, plural = _ATTACHED[kind][:2]
        things.append(f"the {noun if len(names) == 1 else plural} ({', '.join(names)})")
    what = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    advice = "; ".join(_ATTACHED[kind][2] for kind in named)
    return LocalRequestError.invalid(
        f"the local model reads text only: it cannot read {what} attached; {advice}."
    )


def check_request(body: Any) -> dict[str, Any]:
    """The body, if the local model takes it; else a :class:`LocalRequestError` (400 or 404).

    llama.cpp checks the rest (types, ``n``, the context size) and answers its own 400s."""
    if not isinstance(body, dict):
        raise LocalRequestError.invalid("the request body must be a JSON object.")
    model = body.get("model")
    if not is_local_model(model):
        raise LocalRequestError(404, "resource_not_found", "Model not found", f"Model not found: {model}")
    if model != LOCAL_MODEL:
        model_path(model)  # a missing file is a 404 now, before any work
    elif body.get("tools") or body.get("tool_choice") not in (None, "none"):
        raise LocalRequestError.invalid(
            "the local model (SmolLM2-135M) does not support tools: its chat template has none; "
            "use a hosted model, or a GGUF whose template has tools (model='local:/path/to/model.gguf')."
        )
    for name, (low, high) in RANGES.items():
        value = body.get(name)
        if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
            raise LocalRequestError.invalid(
                f"{name}={value!r} is invalid: expected a number from {low:g} to {high:g}."
            )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise LocalRequestError.invalid("messages must be a non-empty list.")
    attached = [
        part
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") != "text"
    ]
    if attached:
        unknown = {p.get("type") for p in attached} - set(_ATTACHED) - set(_IMAGE_PARTS)
        if unknown:
            raise LocalRequestError.invalid(
                f"the local model cannot read content parts of type {unknown.pop()!r}."
            )
        raise _attachments_refusal(attached)
    return body


def _read_body(content: bytes) -> dict[str, Any]:
    try:
        return check_request(json.loads(content or b"null"))
    except ValueError:
        raise LocalRequestError.invalid("the request body is not valid JSON.") from None


# -- one request, run in a worker thread --------------------------------------------------------


class _Whole:
    """Folds a stream's chunks into the ``chat.completion`` body of an unstreamed request.

    llama.cpp cancels only a stream (its callback can say stop), so every request streams."""

    def __init__(self) -> None:
        self.assembler = Assembler()
        self.head: dict[str, Any] = {}
        self.logprobs: list[dict[str, Any]] = []

    def add(self, raw: str, chunk: dict[str, Any]) -> None:
        self.head = self.head or {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        for choice in chunk.get("choices") or []:
            self.logprobs += (choice.get("logprobs") or {}).get("content") or []
        self.assembler.feed(raw)

    def body(self) -> dict[str, Any]:
        folded = self.assembler
        message: dict[str, Any] = {"role": "assistant", "content": "".join(folded.parts)}
        if folded.tool_calls:
            message["tool_calls"] = [folded.tool_calls[i] for i in sorted(folded.tool_calls)]
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": folded.finish_reason,
            "logprobs": {"content": self.logprobs} if self.logprobs else None,
        }
        return {**self.head, "object": "chat.completion", "choices": [choice], "usage": folded.usage}


class Generation:
    """One request run by llama.cpp in a worker thread.

    It ``emit``s, in order: the head ``(status, body)`` (``body`` is the whole JSON reply for an
    unstreamed request or an error, else ``None``); for a stream, SSE events as bytes; then
    ``_END``. An exception the caller must raise (no xllamacpp, weights not fetched) is emitted
    in place of the head. :meth:`stop` may be called from any thread: llama.cpp cancels the
    generation at its next token.
    """

    def __init__(self, body: dict[str, Any], emit: Callable[[Any], None]) -> None:
        self.model: str = body["model"]
        self.stream = bool(body.get("stream"))
        self._whole = None if self.stream else _Whole()
        self._body = (
            body if self.stream else {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        self._emit = emit
        self._flag = threading.Event()
        self._started = False  # a stream's head went out
        self._answered = False  # any head went out

    def stop(self) -> None:
        """Ask generation to end at the next token; safe from any thread."""
        self._flag.set()

    @property
    def stopped(self) -> bool:
        return self._flag.is_set()

    def start(self) -> Generation:
        threading.Thread(target=self._run, name="oxen-local-generation", daemon=True).start()
        return self

    def _head(self, item: Any) -> None:
        self._answered = True
        self._emit(item)

    def _run(self) -> None:
        try:
            server = load_model(model_path(self.model))
            if not self._flag.is_set():
                server.handle_chat_completions(json.dumps(self._body), self._on_chunk)
        except LocalRequestError as exc:
            self._head((exc.status, exc.body()))
        except (ValueError, RuntimeError) as exc:  # what xllamacpp raises for a request it refuses
            self._head((400, LocalRequestError.invalid(f"the local model refused the request: {exc}").body()))
        except BaseException as exc:  # for the caller to raise (MissingDependencyError and bugs)
            self._head(exc)
        else:
            if self._flag.is_set():
                pass
            elif self._whole is not None and not self._answered:
                self._head((200, self._whole.body()))
            elif self._started:
                self._emit(_DONE)
        finally:
            if not self._answered:  # stopped before llama.cpp answered: nobody waits for it
                self._head((499, LocalRequestError(499, "cancelled", "Cancelled", "cancelled.").body()))
            self._emit(_END)

    def _on_chunk(self, raw: str) -> bool:
        if self._flag.is_set():
            return True
        data = json.loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):  # llama.cpp's own refusal: {"error": {"code", "message", "type"}}
            detail = f"the local model refused the request: {error.get('message')}"
            status = error.get("code") if isinstance(error.get("code"), int) else 500
            title = "Invalid parameters" if status == 400 else "Local model error"
            kind = "invalid_params" if status == 400 else "unknown_error"
            refusal = LocalRequestError(status, kind, title, detail).body()
            if self._started:  # mid-stream: an error event, as the hosted API sends one
                self._emit(_sse(refusal))
            else:
                self._head((status, refusal))
            return True
        data["model"] = self.model  # llama.cpp names the file; replies name the model asked for
        if self._whole is not None:
            self._whole.add(raw, data)
            return self._flag.is_set()
        if not self._started:
            self._started = True
            self._head((200, None))
        self._emit(_sse(data))
        return self._flag.is_set()


def _head(item: Any, request: httpx.Request) -> httpx.Response | None:
    """The response for a generation's first item, or None when a stream follows."""
    if isinstance(item, BaseException):
        raise item
    status, body = item
    return None if body is None else _json(status, body, request)


# -- transports ------------------------------------------------------------------------------

# Threads reading a sync stream: a second request from one of them would wait for a generation
# that only that thread's reading (or closing) ends.
_readers: Counter[int] = Counter()
_readers_lock = threading.Lock()


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, generation: Generation, items: queue.SimpleQueue[Any]) -> None:
        self._generation = generation
        self._items = items
        self._reader: int | None = threading.get_ident()
        with _readers_lock:
            _readers[self._reader] += 1

    def __iter__(self) -> Iterator[bytes]:
        try:
            while (item := self._items.get()) is not _END:
                if not self._generation.stopped:
                    yield item
        finally:
            self._release()

    def _release(self) -> None:
        with _readers_lock:
            if self._reader is not None:
                _readers[self._reader] -= 1
                self._reader = None

    def close(self) -> None:
        self._generation.stop()
        self._release()

    def __del__(self) -> None:  # a response dropped unread must not keep the model generating
        self.close()


def _error_response(exc: Exception, request: httpx.Request) -> httpx.Response:
    if isinstance(exc, LocalRequestError):
        return _json(exc.status, exc.body(), request)
    detail = f"the local model failed: {type(exc).__name__}: {exc}"
    return _json(500, LocalRequestError(500, "unknown_error", "Local model error", detail).body(), request)


class LocalTransport(httpx.BaseTransport):
    """Sync transport: the reader's thread waits on the worker's queue."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            kind, model = _route(request)
            if kind != "chat":
                return _models_response(kind, model, request)
            body = _read_body(request.read())
            if _readers[threading.get_ident()]:
                raise LocalRequestError(
                    409,
                    "conflict",
                    "Local model busy",
                    "another reply from the local model is still open in this thread: finish or close it first.",
                )
            items: queue.SimpleQueue[Any] = queue.SimpleQueue()
            generation = Generation(body, items.put).start()
            try:
                head = _head(items.get(), request)
            except BaseException:  # Ctrl-C while it waited: the model must not go on
                generation.stop()
                raise
            if head is not None:
                return head
            return httpx.Response(
                200, headers=_SSE_HEADERS, stream=_SyncStream(generation, items), request=request
            )
        except (MissingDependencyError, httpx.HTTPError):
            raise
        except Exception as exc:
            return _error_response(exc, request)


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, generation: Generation, items: asyncio.Queue[Any]) -> None:
        self._generation = generation
        self._items = items

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self._items.get()) is not _END:
            if not self._generation.stopped:
                yield item

    async def aclose(self) -> None:
        self._generation.stop()


class AsyncLocalTransport(httpx.AsyncBaseTransport):
    """Async transport: the worker thread feeds an asyncio queue, so the event loop never blocks."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            kind, model = _route(request)
            if kind != "chat":
                return _models_response(kind, model, request)
            body = _read_body(await request.aread())
            loop = asyncio.get_running_loop()
            items: asyncio.Queue[Any] = asyncio.Queue()

            def emit(item: Any) -> None:
                try:
                    loop.call_soon_threadsafe(items.put_nowait, item)
                except RuntimeError:  # the event loop closed under the worker: nobody is listening
                    generation.stop()

            generation = Generation(body, emit)
            generation.start()
            try:
                head = _head(await items.get(), request)
            except asyncio.CancelledError:
                generation.stop()
                raise
            if head is not None:
                return head
            return httpx.Response(
                200, headers=_SSE_HEADERS, stream=_AsyncStream(generation, items), request=request
            )
        except (MissingDependencyError, httpx.HTTPError, asyncio.CancelledError):
            raise
        except Exception as exc:
            return _error_response(exc, request)
