"""Sans-I/O: folds ``chat.completion.chunk`` payloads (one SSE event's data at a time), or one whole
``chat.completion`` body (an unstreamed reply), into a reply's text, tool calls, usage and finish
reason.

What a server sends is checked for shape before it is folded in: JSON of the wrong shape (a number
for ``content``, a string for ``choices``, an object for a tool name, JSON nested too deep to parse)
is a one-line :class:`StreamError` naming the piece, never a TypeError halfway through a reply."""

from __future__ import annotations

import json
import reprlib
from typing import Any

from ._errors import StreamError, status_error

__all__ = ["Assembler"]

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 2
_short.maxlist = _short.maxdict = 3


def _wrong(where: str, value: Any, expected: str) -> StreamError:
    return StreamError(
        f"the server sent a malformed chunk: {where} is {_short.repr(value)}, expected {expected}; "
        "the partial reply was kept."
    )


def _loads(data: str) -> Any:
    """``json.loads``, but JSON nested too deep to parse is malformed data, not a RecursionError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise StreamError(
            f"the server sent JSON nested too deeply to read ({data[:60]!r}…); the partial reply was kept."
        ) from None


def _check_call(where: str, call: Any) -> None:
    if not isinstance(call, dict):
        raise _wrong(where, call, "an object")
    index = call.get("index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise _wrong(f"{where}.index", index, "a whole number")
    for name in ("id", "type"):
        if call.get(name) is not None and not isinstance(call[name], str):
            raise _wrong(f"{where}.{name}", call[name], "a string")
    function = call.get("function")
    if function is None:
        return
    if not isinstance(function, dict):
        raise _wrong(f"{where}.function", function, "an object")
    for name in ("name", "arguments"):
        if function.get(name) is not None and not isinstance(function[name], str):
            raise _wrong(f"{where}.function.{name}", function[name], "a string")


class Assembler:
    """Folds ``chat.completion.chunk`` payloads into text, tool calls, usage and a finish reason."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.events = 0

    def feed(self, data: str) -> str | None:
        """Take one event's data; return its text delta, if any."""
        self.events += 1
        if data == "[DONE]":
            self.done = True
            return None
        if not data.strip():
            return None
        try:
            chunk = _loads(data)
        except ValueError:
            raise StreamError(
                f"the stream sent malformed data ({data[:60]!r}); the partial reply was kept."
            ) from None
        if not isinstance(chunk, dict):
            raise StreamError(f"the stream sent unexpected data ({data[:60]!r}).")
        return self._take(chunk)

    def feed_completion(self, body: bytes) -> str | None:
        """Take a whole unstreamed ``chat.completion`` body; return its text, if any."""
        text = body.decode("utf-8", "replace")
        try:
            completion = _loads(text)
        except ValueError:
            completion = None
        if not isinstance(completion, dict) or not ("choices" in completion or completion.get("error")):
            raise StreamError(
                f"the server's reply was not a chat.completion JSON body ({text[:60]!r}); send it again."
            )
        self.events += 1
        delta = self._take(completion)
        self.done = True
        return delta

    @property
    def empty(self) -> bool:
        """Nothing came: no text, no tool call, no finish reason (e.g. a stream the server
        cancelled after its role chunk). Not a reply, even when ``[DONE]`` ended it."""
        return not self.parts and not self.tool_calls and not self.finish_reason

    def _take(self, chunk: dict[str, Any]) -> str | None:
        # Each piece is checked as it is read: a wrong shape is a StreamError naming it.
        if chunk.get("error"):
            raise status_error(None, chunk)
        usage = chunk.get("usage")
        if usage is not None and not isinstance(usage, dict):  # counted locally instead
            del chunk["usage"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return None
        if not isinstance(choices, list):
            raise _wrong("choices", choices, "a list")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise _wrong("choices[0]", choice, "an object")
        reason = choice.get("finish_reason")
        if reason:
            if not isinstance(reason, str):
                raise _wrong("finish_reason", reason, "a string")
            self.finish_reason = reason
        key = "delta" if "delta" in choice else "message"
        delta = choice.get(key)
        if not delta:
            return None
        if not isinstance(delta, dict):
            raise _wrong(key, delta, "an object")
        calls = delta.get("tool_calls")
        if calls:
            if not isinstance(calls, list):
                raise _wrong(f"{key}.tool_calls", calls, "a list")
            for position, call in enumerate(calls):
                _check_call(f"{key}.tool_calls[{position}]", call)
            self._merge_tool_calls(calls)
        content = delta.get("content")
        if content:
            if not isinstance(content, str):
                raise _wrong(f"{key}.content", content, "a string")
            self.parts.append(content)
            return content
        return None

    def _merge_tool_calls(self, fragments: list[dict[str, Any]]) -> None:
        for position, fragment in enumerate(fragments):
            index = fragment.get("index")
            if index is None:
                index = position
            call = self.tool_calls.setdefault(
                index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if fragment.get("id"):
                call["id"] = fragment["id"]
            if fragment.get("type"):
                call["type"] = fragment["type"]
            function = fragment.get("function") or {}
            if function.get("name"):
                call["function"]["name"] += function["name"]
            if function.get("arguments"):
                call["function"]["arguments"] += function["arguments"]

    def restore(self, reply: dict[str, Any]) -> str:
        """Take a whole stored reply (``text``, ``usage``, ``finish_reason``, ``tool_calls``) as if it
        had streamed; return its text."""
        text = reply.get("text") or ""
        if text:
            self.parts.append(text)
        self.usage = reply.get("usage")
        self.finish_reason = reply.get("finish_reason") or "stop"
        self.tool_calls = dict(enumerate(reply.get("tool_calls") or []))
        self.done = True
        return text
