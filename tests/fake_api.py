"""A loopback server that speaks Oxen's chat-completions API, SSE and all, with fault injection.

Tests queue what the next requests get with ``server.enqueue(Script(...))`` or set
``server.handler = fn(request_body) -> Script``; with neither, a request gets ``Echo: <prompt>``
streamed a word at a time (a ``"stream": false`` request gets the same as one ``chat.completion``
body, with ``usage``). Every request is recorded in ``server.requests``.

``"tool-model"`` (served, not listed) calls tools as a real tool-calling model does (see :func:`tool_model`): the
prompt directs it, e.g. ``CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}``,
and once the tool results come back it answers ``Results: get_weather[call_0_0] = ...``.

Run it alone (for benchmarks or by hand): ``python tests/fake_api.py --port 8765``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ["gpt-5-2-chat-latest", "test-model", "cheap-model"]
PRICING = {
    "gpt-5-2-chat-latest": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05},
    "cheap-model": {"input_cost_per_token": 1e-07, "output_cost_per_token": 2e-07},
    # Not in MODELS (the listed catalogue): a test adds them to ``server.models`` when it needs them.
    "time-model": {"method": "time", "cost_per_second": 0.002},  # billed by time, like Llama on Oxen
    "image-model": {"method": "per_image", "cost_per_image": 0.04},
}
SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 16384},
    },
}
# A model without structured outputs: served but not listed. Its request schema says which
# response_format types it takes, and a request with {"type": "json_schema"} gets a 400 naming
# response_format (before any queued script, which the fallback request then gets).
NO_JSON_SCHEMA_MODEL = "no-json-schema-model"
NO_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        **SCHEMA["properties"],
        "response_format": {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["text", "json_object"]}},
            "required": ["type"],
        },
    },
}
JSON_SCHEMA_REFUSAL = {
    "error": {
        "type": "invalid_params",
        "title": "Invalid parameters",
        "detail": "response_format json_schema is not supported by this model",
    },
    "status": "error",
    "status_message": "invalid_params",
}


@dataclass
class Script:
    """What one request gets back. ``chunks`` are text deltas; ``text`` is split into words."""

    text: str | None = None
    chunks: list[str] | None = None
    status: int = 200
    error: dict[str, Any] | None = None  # error body for a non-200 status
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str | None = "stop"
    usage: dict[str, int] | bool | None = True  # True: computed; None/False: no usage chunk
    done: bool = True  # send data: [DONE]
    latency: float = 0.0  # before the response starts
    delay: float = 0.0  # between chunks
    drop_after: int | None = None  # close the connection after K chunks
    malformed_after: int | None = None  # send a broken JSON line after K chunks
    error_event_after: int | None = None  # send an in-stream {"error": ...} after K chunks
    error_event: dict[str, Any] | None = None
    stall_after: int | None = None  # stop sending (without closing) after K chunks
    stall_seconds: float = 30.0
    crlf: bool = False
    comments: bool = False  # ": keep-alive" comments and unknown fields between events
    byte_by_byte: bool = False  # flush every byte separately
    tool_calls: list[dict[str, Any]] | None = None  # full tool calls, streamed in fragments
    interleave_tools: bool = False  # each call's arguments in 3 fragments, the calls interleaved
    raw: bytes | None = None  # the exact body to send
    batch_write: bool = False  # build the whole body first, write it at once (benchmarks)
    events: list[Any] | None = None  # payloads sent as data: events after the text (hostile shapes)
    trickle: float = 0.0  # write the body (streamed or not) a byte at a time, this many seconds apart
    content_type: str | None = None  # a streamed answer's Content-Type (None: text/event-stream; "": none)
    unstreamed: bool = False  # answer a stream request with a chat.completion JSON body
    line_bytes: int | None = None  # a stream that is one line of this many bytes, never ended
    raw_response: bytes | None = None  # the exact bytes to answer with, status line and headers too


def chunk_payload(model: str, index: int, delta: dict[str, Any], finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _prompt_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content)
    return ""


def echo(body: dict[str, Any]) -> Script:
    return Script(text=f"Echo: {_prompt_text(body)}")


TOOL_MODEL = "tool-model"
_CALL = re.compile(r"\bCALL\s+([\w-]+)[ \t]*")


def tool_rounds(prompt: str) -> tuple[list[list[tuple[str, str]]], bool]:
    """The rounds of tool calls a prompt directs: ``CALL name {json}`` is a call, ``;`` separates
    the calls of one round, ``THEN`` separates rounds, and ``LOOP`` anywhere repeats the last round
    forever. Arguments that are not JSON are sent as written, up to the next ``;``."""
    rounds = []
    for part in re.split(r"\bTHEN\b", prompt):
        calls, pos = [], 0
        while match := _CALL.search(part, pos):
            pos = match.end()
            try:
                _, end = json.JSONDecoder().raw_decode(part, pos)
            except ValueError:
                end = part.find(";", pos) if ";" in part[pos:] else len(part)
            calls.append((match.group(1), part[pos:end].strip()))
            pos = end
        if calls:
            rounds.append(calls)
    return rounds, "LOOP" in prompt


def tool_model(body: dict[str, Any]) -> Script:
    """A scripted tool-calling model. Offered ``tools`` and a prompt with ``CALL`` directives
    (:func:`tool_rounds`), it streams the next round's calls (ids ``call_<round>_<i>``, arguments
    in fragments, the calls interleaved by index) with ``finish_reason: "tool_calls"``; when the
    rounds are done and the last messages are tool results, it answers
    ``Results: name[call_id] = content | ...`` for every result since the prompt. Otherwise it
    echoes the prompt."""
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    since = messages[last_user + 1 :]
    rounds, loop = tool_rounds(_prompt_text(body))
    done = sum(1 for m in since if m.get("role") == "assistant" and m.get("tool_calls"))
    if body.get("tools") and rounds and (done < len(rounds) or loop):
        calls = [
            {"id": f"call_{done}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(rounds[min(done, len(rounds) - 1)])
        ]
        return Script(chunks=[], tool_calls=calls, finish_reason="tool_calls", interleave_tools=True)
    results = [m for m in since if m.get("role") == "tool"]
    if not results or messages[-1].get("role") != "tool":
        return echo(body)
    names = {c.get("id"): c["function"]["name"] for m in since for c in (m.get("tool_calls") or [])}
    answers = [
        f"{names.get(m.get('tool_call_id'), '?')}[{m.get('tool_call_id')}] = {m.get('content')}"
        for m in results
    ]
    return Script(text="Results: " + " | ".join(answers))


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when 16 clients connect at once.
    request_queue_size = 256


class FakeAPI:
    """The server. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.models = list(MODELS)
        self.api_key: str | None = "test-key"  # None accepts any key
        self.handler: Callable[[dict[str, Any]], Script] | None = None
        self._queue: collections.deque[Script] = collections.deque()
        self._lock = threading.Lock()
        self.closed_early = 0  # responses whose client went away before the end (since the last reset)
        self._generation = 0  # reset() counts up: a request that came before it is not counted after it
        self.open_streams = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._get(self)

            def do_POST(self) -> None:
                server._post(self)

        self.httpd = _Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/api/ai"
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------------

    def start(self) -> FakeAPI:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *scripts: Script) -> None:
        with self._lock:
            self._queue.extend(scripts)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.models = list(MODELS)  # a test may have added unlisted ones
            self.handler = None
            self.closed_early = 0
            self._generation += 1

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def _next_script(self, body: dict[str, Any]) -> Script:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.handler is None and body.get("model") == TOOL_MODEL:
            return tool_model(body)
        return (self.handler or echo)(body)

    # -- handlers ---------------------------------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": handler.path,
                    "headers": dict(handler.headers.items()),
                    "body": body,
                    "time": time.monotonic(),
                }
            )

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, payload: Any, headers=None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-request-id", f"req-{len(self.requests)}")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.api_key is None:
            return True
        if handler.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._send_json(
            handler,
            401,
            {
                "error": {"type": "unauthenticated", "title": "Unauthenticated", "detail": "Invalid API key"},
                "status": "error",
                "status_message": "unauthenticated",
            },
        )
        return False

    def _known(self, model_id: Any) -> bool:
        return model_id in self.models or model_id in (NO_JSON_SCHEMA_MODEL, TOOL_MODEL)

    def _model(self, model_id: str) -> dict[str, Any]:
        schemas = {"gpt-5-2-chat-latest": SCHEMA, NO_JSON_SCHEMA_MODEL: NO_JSON_SCHEMA}
        return {
            "id": model_id,
            "display_name": model_id.replace("-", " ").title(),
            "description": f"The {model_id} model",
            "developer": {"name": "Fake"},
            "capabilities": {"input": ["text", "image"], "output": ["text"]},
            "pricing": PRICING.get(model_id, {}),
            "request_schema": schemas.get(model_id),
        }

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        self._record(handler, None)
        if not self._authorized(handler):
            return
        path = handler.path.split("?")[0]
        if path.endswith("/models"):
            self._send_json(handler, 200, {"object": "list", "data": [self._model(m) for m in self.models]})
            return
        name = path.rsplit("/models/", 1)[-1] if "/models/" in path else None
        if self._known(name):
            self._send_json(handler, 200, self._model(name))
        else:
            self._send_json(
                handler,
                404,
                {
                    "error": {
                        "type": "resource_not_found",
                        "title": "Not found",
                        "detail": f"Model not found: {name}",
                    }
                },
            )

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        generation = self._generation  # the test this request belongs to: it may sleep past its end
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._record(handler, body)
        if not self._authorized(handler):
            return
        if not handler.path.endswith("/chat/completions") or not isinstance(body, dict):
            self._send_json(handler, 400, {"error": {"message": "bad request"}})
            return
        if not self._known(body.get("model")):
            self._send_json(
                handler,
                404,
                {
                    "error": {
                        "type": "resource_not_found",
                        "title": "Not found",
                        "detail": f"Model not found: {body.get('model')}",
                    },
                    "status": "error",
                    "status_message": "resource_not_found",
                },
            )
            return
        response_format = body.get("response_format")
        wants_schema = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
        if body["model"] == NO_JSON_SCHEMA_MODEL and wants_schema:
            self._send_json(handler, 400, JSON_SCHEMA_REFUSAL)
            return
        script = self._next_script(body)
        if script.latency:
            time.sleep(script.latency)
        if script.raw_response is not None:
            handler.close_connection = True
            handler.wfile.write(script.raw_response)
            return
        if script.status != 200:
            self._send_json(
                handler, script.status, script.error or {"error": {"message": "error"}}, script.headers
            )
            return
        if not body.get("stream") or script.unstreamed:
            self._complete(handler, body, script, generation)
            return
        self._stream(handler, body, script, generation)

    def _count_closed(self, generation: int) -> None:
        """A client went away before the end of a response to a request of ``generation``: an
        earlier test's request (still sleeping or writing after its test ended) does not count in
        this one's."""
        with self._lock:
            if generation == self._generation:
                self.closed_early += 1

    def _complete(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], script: Script, generation: int
    ) -> None:
        """An unstreamed ``chat.completion`` body. The stream faults become their body-sized kin:
        ``drop_after`` cuts the body off mid-way, ``malformed_after`` sends broken JSON,
        ``error_event_after`` an ``{"error": ...}`` body with status 200, ``stall_after`` waits
        ``stall_seconds`` before answering, ``trickle`` writes it a byte at a time; ``raw`` is the
        exact body."""
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # body for the peer's delayed ACK (~40 ms a request), which a real server does not.
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        text = script.text if script.text is not None else "".join(script.chunks or [])
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if script.tool_calls:
            message["tool_calls"] = script.tool_calls
        usage = _usage(body, text) if script.usage is True else (script.usage or None)
        payload: Any = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": script.finish_reason}],
            "usage": usage,
        }
        if script.error_event_after is not None:
            payload = script.error_event or {
                "error": {"type": "unknown_error", "title": "Upstream failed", "detail": "model crashed"}
            }
        data = script.raw if script.raw is not None else json.dumps(payload).encode()
        if script.malformed_after is not None:
            data = data[: len(data) // 2]
        if script.stall_after is not None:
            time.sleep(script.stall_seconds)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("x-request-id", f"req-{len(self.requests)}")
            for name, value in script.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if script.drop_after is not None:
                handler.wfile.write(data[: len(data) // 2])
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if script.trickle:
                for i in range(len(data)):
                    handler.wfile.write(data[i : i + 1])
                    handler.wfile.flush()
                    time.sleep(script.trickle)
                return
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._count_closed(generation)

    def _stream(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], script: Script, generation: int
    ) -> None:
        handler.send_response(200)
        if script.content_type != "":  # "" sends no Content-Type at all
            handler.send_header("Content-Type", script.content_type or "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.send_header("x-request-id", f"req-{len(self.requests)}")
        for name, value in script.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
        sock = handler.connection
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.open_streams += 1
        try:
            self._write_events(handler, body, script)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._count_closed(generation)
        finally:
            with self._lock:
                self.open_streams -= 1

    def _write_events(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], script: Script) -> None:
        model = body["model"]
        nl = "\r\n" if script.crlf else "\n"
        out = handler.wfile
        pending: list[bytes] = []

        def emit(text: str) -> None:
            data = text.encode("utf-8", "surrogateescape")
            if script.batch_write:
                pending.append(data)
            elif script.byte_by_byte or script.trickle:
                for i in range(len(data)):
                    out.write(data[i : i + 1])
                    out.flush()
                    time.sleep(script.trickle)
            else:
                out.write(data)
                out.flush()

        def event(payload: Any) -> str:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            extra = f": keep-alive{nl}id: 1{nl}unknown: x{nl}" if script.comments else ""
            return f"{extra}data: {data}{nl}{nl}"

        if script.raw is not None:
            emit(script.raw.decode("utf-8", "surrogateescape"))
            return
        if script.line_bytes is not None:  # one endless line, 64 KiB a write, until the client leaves
            out.write(b"data: ")
            for _ in range(0, script.line_bytes, 2**16):
                out.write(b"x" * 2**16)
                out.flush()
            return
        if script.chunks is not None:
            chunks = script.chunks
        else:
            words = (script.text or "").split(" ")
            chunks = [w if i == 0 else " " + w for i, w in enumerate(words)] if script.text else []
        emit(event(chunk_payload(model, 0, {"role": "assistant", "content": ""})))
        for i, text in enumerate(chunks):
            if script.drop_after is not None and i == script.drop_after:
                out.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if script.malformed_after is not None and i == script.malformed_after:
                emit(f'data: {{"choices": [{{"delta": {{"content": "oops{nl}{nl}')
                return
            if script.error_event_after is not None and i == script.error_event_after:
                emit(
                    event(
                        script.error_event
                        or {
                            "error": {
                                "type": "unknown_error",
                                "title": "Upstream failed",
                                "detail": "model crashed",
                            }
                        }
                    )
                )
                return
            if script.stall_after is not None and i == script.stall_after:
                out.flush()
                time.sleep(script.stall_seconds)
                return
            if script.delay:
                time.sleep(script.delay)
            emit(event(chunk_payload(model, i, {"content": text})))
        for payload in script.events or []:
            emit(event(payload))
        if script.interleave_tools:
            _interleaved_tool_calls(
                script.tool_calls or [], lambda delta: emit(event(chunk_payload(model, 0, delta)))
            )
        else:
            for index, call in enumerate(script.tool_calls or []):
                args = call["function"]["arguments"]
                half = len(args) // 2
                first = {"index": index, "id": call["id"], "type": "function",
                         "function": {"name": call["function"]["name"], "arguments": args[:half]}}  # fmt: skip
                emit(event(chunk_payload(model, 0, {"tool_calls": [first]})))
                emit(
                    event(
                        chunk_payload(
                            model,
                            0,
                            {"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]},
                        )
                    )
                )
        if script.finish_reason:
            emit(event(chunk_payload(model, 0, {}, script.finish_reason)))
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if script.usage is not False and script.usage is not None and wants_usage:
            usage = _usage(body, "".join(chunks)) if script.usage is True else script.usage
            emit(event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                        "choices": [], "usage": usage}))  # fmt: skip
        if script.done:
            emit(event("[DONE]"))
        if pending:
            out.write(b"".join(pending))
            out.flush()

    # -- requests in flight (the cluster tests) -------------------------------------------------------

    in_flight = 0  # POSTs being handled now, once track_in_flight() is on
    max_in_flight = 0  # the most at once since then

    def track_in_flight(self) -> FakeAPI:
        """From now on count the POSTs being handled at once, from their arrival to the last byte
        written: ``in_flight``, and its peak ``max_in_flight`` (``reset_in_flight()`` starts it again).
        Tracking twice counts once (the server outlives a test), and starts the peak again."""
        if getattr(self, "_tracking", False):
            self.reset_in_flight()
            return self
        self._tracking = True
        post = self._post

        def counted(handler: BaseHTTPRequestHandler) -> None:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                post(handler)
            finally:
                with self._lock:
                    self.in_flight -= 1

        self._post = counted  # type: ignore[method-assign]
        return self

    def reset_in_flight(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight


def _interleaved_tool_calls(calls: list[dict[str, Any]], send: Callable[[dict[str, Any]], None]) -> None:
    """As OpenAI streams parallel calls: each call's id and name first (empty arguments), then its
    arguments in three fragments, the calls taking turns by index; the middle fragments of all the
    calls share one delta, as some servers send them."""
    for index, call in enumerate(calls):
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
        send({"tool_calls": [head]})
    thirds = []
    for call in calls:
        args = call["function"]["arguments"]
        cut = [len(args) * k // 3 for k in range(4)]
        thirds.append([args[cut[k] : cut[k + 1]] for k in range(3)])
    for k in range(3):
        fragments = [{"index": i, "function": {"arguments": t[k]}} for i, t in enumerate(thirds) if t[k]]
        if k == 1 and fragments:
            send({"tool_calls": fragments})
        elif fragments:
            for fragment in fragments:
                send({"tool_calls": [fragment]})


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--chunks", type=int, default=0, help="stream this many 'x' chunks per request")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    args = parser.parse_args()
    server = FakeAPI(port=args.port)
    server.api_key = None
    if args.chunks:
        # extra_body={"fake_chunks": N} asks for N chunks; the body is written at once so the server
        # is not what a benchmark measures.
        server.handler = lambda body: Script(
            chunks=["tok "] * int(body.get("fake_chunks", args.chunks)),
            batch_write=True,
            latency=args.latency,
        )
    elif args.latency:
        server.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=args.latency)
    print(f"listening on {server.base_url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
