"""Sans-I/O: folds ``chat.completion.chunk`` payloads (one SSE event's data at a time), or one whole
``chat.completion`` body (an unstreamed reply), into a reply's text, tool calls, usage and finish
reason."""

from __future__ import annotations

import json
from typing import Any

from ._errors import StreamError, status_error

__all__ = ["Assembler"]


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
            chunk = json.loads(data)
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
            completion = json.loads(text)
        except ValueError:
            completion = None
        if not isinstance(completion, dict):
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
        if chunk.get("error"):
            raise status_error(None, chunk)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or choice.get("message") or {}
        if delta.get("tool_calls"):
            self._merge_tool_calls(delta["tool_calls"])
        content = delta.get("content")
        if content:
            self.parts.append(content)
            return content
        return None

    def _merge_tool_calls(self, fragments: list[dict[str, Any]]) -> None:
        for position, fragment in enumerate(fragments):
            index = fragment.get("index", position)
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
