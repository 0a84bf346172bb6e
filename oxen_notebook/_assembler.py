"""Sans-I/O: folds ``chat.completion.chunk`` payloads (one SSE event's data at a time), or one whole
``chat.completion`` body (an unstreamed reply), into a reply's text, tool calls, usage and finish
reason.

What a server sends is checked for shape as it is folded in: JSON of the wrong shape (a number
for ``content``, a string for ``choices``, an object for a tool name, JSON nested too deep to parse)
is a one-line :class:`StreamError` naming the piece, never a TypeError halfway through a reply."""

from __future__ import annotations

import json
import logging
import reprlib
from collections.abc import Callable
from typing import Any

from ._errors import StreamError, one_line, redact, status_error
from ._records import token_count

__all__ = ["Assembler", "server_usage"]

_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")
_log = logging.getLogger("oxen_notebook")
_short = reprlib.Repr()  # a value quoted in an error: shortened, however long or deep
_short.maxstring = _short.maxother = 60
_short.maxlevel = 2
_short.maxlist = _short.maxdict = 3


def server_usage(usage: Any) -> dict[str, Any] | None:
    """A server's ``usage`` with only the token counts that are counts (:func:`token_count`):
    another value (``12.5``, ``"12"``, ``-5``, ``2**63``) is dropped, so it is missing and gets
    counted locally (marked estimated), and a ``usage`` that is not an object is no usage at all.
    The server's other fields (``prompt_tokens_details``, ...) are kept as sent. A bad
    ``total_tokens`` next to two good parts becomes their sum."""
    if not isinstance(usage, dict):
        if usage:
            _log.info("ignored the server's usage: not an object (%s)", type(usage).__name__)
        return None
    cleaned = {k: v for k, v in usage.items() if k not in _COUNTS}
    for name in _COUNTS:
        if name not in usage or usage[name] is None:
            continue
        count = token_count(usage[name])
        if count is None:
            # The type, never the value: the value is the server's text, and may be anything.
            _log.info("ignored the server's %s: not a count (%s)", name, type(usage[name]).__name__)
        else:
            cleaned[name] = count
    prompt, completion = cleaned.get("prompt_tokens"), cleaned.get("completion_tokens")
    if "total_tokens" in usage and "total_tokens" not in cleaned and None not in (prompt, completion):
        cleaned["total_tokens"] = prompt + completion  # a bad total, good parts
    return cleaned


class Assembler:
    """Folds ``chat.completion.chunk`` payloads into text, tool calls, usage and a finish reason."""

    def __init__(self, *, secret: Callable[[], str | None] | None = None) -> None:
        #: Gives the API key when an error event arrives, to redact it from what the server says.
        self._secret = secret
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
            chunk = self._loads(data)
        except ValueError:
            raise StreamError(
                f"the stream sent malformed data ({self._excerpt(data)}); the partial reply was kept."
            ) from None
        if not isinstance(chunk, dict):
            raise StreamError(f"the stream sent unexpected data ({self._excerpt(data)}).")
        return self._take(chunk)

    def feed_completion(self, body: bytes) -> str | None:
        """Take a whole unstreamed ``chat.completion`` body; return its text, if any."""
        text = body.decode("utf-8", "replace")
        try:
            completion = self._loads(text)
        except ValueError:
            completion = None
        if not isinstance(completion, dict) or not ("choices" in completion or completion.get("error")):
            raise StreamError(
                f"the server's reply was not a chat.completion JSON body ({self._excerpt(text)}); send it again."
            )
        self.events += 1
        delta = self._take(completion)
        self.done = True
        return delta

    def _key(self) -> str | None:
        return self._secret() if self._secret else None

    def _excerpt(self, data: str) -> str:
        """The start of what the server sent, quoted for an error: the key redacted before the cut."""
        return repr(one_line(redact(data, self._key())[:1000], 60))

    def _loads(self, data: str) -> Any:
        """``json.loads``, but JSON nested too deep to parse is malformed data, not a RecursionError."""
        try:
            return json.loads(data)
        except RecursionError:
            raise StreamError(
                f"the server sent JSON nested too deeply to read ({self._excerpt(data)}); "
                "the partial reply was kept."
            ) from None

    def _wrong(self, where: str, value: Any, expected: str) -> StreamError:
        """A piece of the wrong shape, named and quoted short (the key redacted)."""
        quoted = one_line(redact(_short.repr(value), self._key()), 100)
        return StreamError(
            f"the server sent a malformed chunk: {where} is {quoted}, expected {expected}; "
            "the partial reply was kept."
        )

    @property
    def empty(self) -> bool:
        """Nothing came: no text, no tool call, no finish reason (e.g. a stream the server
        cancelled after its role chunk). Not a reply, even when ``[DONE]`` ended it."""
        return not self.parts and not self.tool_calls and not self.finish_reason

    def _take(self, chunk: dict[str, Any]) -> str | None:
        # Each piece is checked as it is read: a wrong shape is a StreamError naming it.
        if chunk.get("error"):
            raise status_error(None, chunk, secret=self._key())
        if chunk.get("usage"):
            self.usage = server_usage(chunk["usage"])
        choices = chunk.get("choices")
        if not choices:
            return None
        if not isinstance(choices, list):
            raise self._wrong("choices", choices, "a list")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._wrong("choices[0]", choice, "an object")
        reason = choice.get("finish_reason")
        if reason:
            if not isinstance(reason, str):
                raise self._wrong("finish_reason", reason, "a string")
            self.finish_reason = reason
        key = "delta" if "delta" in choice else "message"
        delta = choice.get(key)
        if not delta:
            return None
        if not isinstance(delta, dict):
            raise self._wrong(key, delta, "an object")
        calls = delta.get("tool_calls")
        if calls:
            if not isinstance(calls, list):
                raise self._wrong(f"{key}.tool_calls", calls, "a list")
            for position, call in enumerate(calls):
                self._check_call(f"{key}.tool_calls[{position}]", call)
            self._merge_tool_calls(calls)
        content = delta.get("content")
        if content:
            if not isinstance(content, str):
                raise self._wrong(f"{key}.content", content, "a string")
            self.parts.append(content)
            return content
        return None

    def _check_call(self, where: str, call: Any) -> None:
        if not isinstance(call, dict):
            raise self._wrong(where, call, "an object")
        index = call.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise self._wrong(f"{where}.index", index, "a whole number")
        for name in ("id", "type"):
            if call.get(name) is not None and not isinstance(call[name], str):
                raise self._wrong(f"{where}.{name}", call[name], "a string")
        function = call.get("function")
        if function is None:
            return
        if not isinstance(function, dict):
            raise self._wrong(f"{where}.function", function, "an object")
        for name in ("name", "arguments"):
            if function.get(name) is not None and not isinstance(function[name], str):
                raise self._wrong(f"{where}.function.{name}", function[name], "a string")

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
        self.usage = server_usage(reply.get("usage"))
        self.finish_reason = reply.get("finish_reason") or "stop"
        self.tool_calls = dict(enumerate(reply.get("tool_calls") or []))
        self.done = True
        return text
