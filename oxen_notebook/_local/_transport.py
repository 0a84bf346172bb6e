"""The local model over HTTP: httpx transports that answer chat-completions requests in-process.

Request bodies are validated here, in the hosted API's terms (``invalid_params`` for what the local
model cannot do: tools, images, several choices). Streams are real SSE bytes (``data: {chunk}`` events, then ``data: [DONE]``), errors are Oxen-shaped
JSON bodies with their status, so the hosted API's client code reads both the same way.

Stopping: closing the sync stream ends generation at once (or, from another thread, at the next
token). The async stream runs generation in a worker thread that feeds an asyncio queue; closing
it sets the stop flag, which the worker checks at every token, and waits for the worker to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx

from .._errors import MissingDependencyError
from .._params import RANGES
from ._model import (
    LOCAL_BASE_URL,
    LOCAL_MODEL,
    ChatRequest,
    Generation,
    LocalRequestError,
    is_local_model,
    local_model_entry,
    model_path,
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
        if not is_local_model(model):
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


# -- request bodies ---------------------------------------------------------------------------
_UNSUPPORTED = {
    "tools": "tools (function calling)",
    "functions": "functions (function calling)",
    "function_call": "function_call",
    "audio": "audio output",
    "top_logprobs": "top_logprobs",
}


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
    things = []
    for kind, names in named.items():
        noun, plural = _ATTACHED[kind][:2]
        things.append(f"the {noun if len(names) == 1 else plural} ({', '.join(names)})")
    what = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    advice = "; ".join(_ATTACHED[kind][2] for kind in named)
    return LocalRequestError.invalid(
        f"the local model reads text only: it cannot read {what} attached; {advice}."
    )


def _text_content(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise LocalRequestError.invalid(
            f"messages[{index}].content must be a string or a list of content parts."
        )
    texts, attached = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in _ATTACHED or kind in _IMAGE_PARTS:
            attached.append(part)
        else:
            raise LocalRequestError.invalid(f"the local model cannot read content parts of type {kind!r}.")
    if attached and all(part["type"] in _IMAGE_PARTS for part in attached):
        raise LocalRequestError.invalid(
            "the local model reads text only: remove the images, or use a hosted model "
            "with image input (e.g. gpt-5-2-chat-latest)."
        )
    if attached:
        raise _attachments_refusal(attached)
    return "\n".join(texts)


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise LocalRequestError.invalid("messages must be a non-empty list.")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise LocalRequestError.invalid(f"messages[{index}] must be an object with role and content.")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role == "tool" or message.get("tool_calls"):
            raise LocalRequestError.invalid("the local model does not support tool calls or tool results.")
        if role not in ("system", "user", "assistant"):
            raise LocalRequestError.invalid(
                f"messages[{index}].role {role!r} is not system, user or assistant."
            )
        messages.append({"role": role, "content": _text_content(message.get("content"), index)})
    return messages


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise LocalRequestError.invalid(
            f"{name}={value!r} is invalid: expected a number from {low:g} to {high:g}."
        )
    return float(value)


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise LocalRequestError.invalid(
                "response_format json_schema needs json_schema.schema (an object)."
            )
        return {"type": "json_object", "schema": schema}
    raise LocalRequestError.invalid(
        f"response_format={value!r} is invalid: expected type text, json_object or json_schema."
    )


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a request body; raise :class:`LocalRequestError` (400 or 404) when it is refused."""
    if not isinstance(body, dict):
        raise LocalRequestError.invalid("the request body must be a JSON object.")
    model = body.get("model")
    if not is_local_model(model):
        raise LocalRequestError(404, "resource_not_found", "Model not found", f"Model not found: {model}")
    path = model_path(model)
    for name, what in _UNSUPPORTED.items():
        if body.get(name):
            raise LocalRequestError.invalid(f"the local model does not support {what}; remove {name!r}.")
    if body.get("tool_choice") not in (None, "none"):
        raise LocalRequestError.invalid("the local model does not support tool_choice; remove it.")
    if body.get("logprobs"):
        raise LocalRequestError.invalid("the local model does not return logprobs; remove 'logprobs'.")
    if body.get("n") not in (None, 1):
        raise LocalRequestError.invalid("the local model returns one choice: n must be 1.")

    options: dict[str, Any] = {}
    for name, (low, high) in RANGES.items():
        value = _number(body, name, low, high)
        if value is not None:
            options[name] = value
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise LocalRequestError.invalid(
                f"max_tokens={max_tokens!r} is invalid: expected a positive integer."
            )
        options["max_tokens"] = max_tokens
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise LocalRequestError.invalid(f"seed={seed!r} is invalid: expected an integer.")
    # Unseeded, llama-cpp-python derives every seed from one fixed start: each process would
    # repeat the same "random" replies. Draw a fresh seed, as a hosted model would vary.
    options["seed"] = seed if seed is not None else random.getrandbits(31)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise LocalRequestError.invalid(
                f"stop={stop!r} is invalid: expected a string or a list of strings."
            )
        options["stop"] = stops
    response_format = _response_format(body.get("response_format"))
    if response_format is not None:
        options["response_format"] = response_format
    logit_bias = body.get("logit_bias")
    if logit_bias:
        try:
            options["logit_bias"] = {int(k): float(v) for k, v in dict(logit_bias).items()}
        except (TypeError, ValueError):
            raise LocalRequestError.invalid("logit_bias must map token ids to numbers.") from None
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        model=model,
        path=path,
        messages=_messages(body.get("messages")),
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        options=options,
    )


# -- streams and transports --------------------------------------------------------------------


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
