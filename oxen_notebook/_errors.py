"""Errors raised by oxen_notebook.

Every error's ``str()`` is one line that says what happened and what to do.

```
OxenError
├── MissingAPIKeyError        no key found (raised when a request is made)
├── MissingDependencyError    an optional extra is not installed
├── ParameterError            bad input, rejected before any request (also a ValueError)
├── SessionBusyError          a reply is still streaming on this session (also a RuntimeError)
├── ReplyConsumedError        a reply was iterated a second time (also a RuntimeError)
├── SchemaError               a reply is not JSON that matches the requested schema (.errors, .text)
├── ToolLoopError             the model still called tools after max_tool_rounds rounds
├── CacheMissError            replay mode: the request is not in the response cache (.key)
└── APIError                  the API or the connection failed
    ├── APIStatusError        an HTTP error status, or an error event in a stream
    │   ├── BadRequestError           400, 422 (types invalid_params, invalid_file_input)
    │   ├── AuthenticationError       401
    │   ├── InsufficientCreditsError  402, or any status whose type or message says credits ran out
    │   ├── NotFoundError             404
    │   ├── RateLimitError            429
    │   └── ServerError               5xx, or an error event mid-stream
    ├── APIConnectionError    the server could not be reached
    │   └── APITimeoutError   no answer in time
    └── StreamError           the stream broke mid-reply (connection lost, malformed data)
```

Oxen documents no 402: insufficient credits come as a message ("Insufficient credits") on
whatever status the route uses, so the credits check reads the type, title and message first.
The status decides next, then Oxen's ``type``.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CacheMissError",
    "InsufficientCreditsError",
    "MissingAPIKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "OxenError",
    "ParameterError",
    "RateLimitError",
    "ReplyConsumedError",
    "SchemaError",
    "ServerError",
    "SessionBusyError",
    "StreamError",
    "ToolLoopError",
    "one_line",
    "parse_error_body",
    "redact",
    "status_error",
]


class OxenError(Exception):
    """Root of every error raised by oxen_notebook."""


class MissingAPIKeyError(OxenError):
    """No API key was found."""

    def __init__(self, host: str = "hub.oxen.ai") -> None:
        super().__init__(
            "No Oxen API key found: set the OXEN_API_KEY environment variable, run "
            f"`oxen config --auth {host} YOUR_TOKEN`, pass Session(api_key=...), "
            "or run %oxen login in a notebook."
        )


class MissingDependencyError(OxenError):
    """An optional dependency is missing."""


class ParameterError(OxenError, ValueError):
    """A parameter or input was rejected before any request was made."""


class SessionBusyError(OxenError, RuntimeError):
    """A reply is still streaming on this session in this thread."""


class ReplyConsumedError(OxenError, RuntimeError):
    """A reply streams once: read ``reply.text``, or send again."""


class SchemaError(OxenError):
    """A reply is not JSON that matches the requested schema. ``errors`` lists every failure as
    ``{"loc": "items[0].age", "msg": ..., "input": ..., "type": ...}``; ``text`` is the reply."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None, text: str = "") -> None:
        super().__init__(message)
        self.errors = list(errors or [])
        self.text = text


class ToolLoopError(OxenError):
    """The model still called tools after ``max_tool_rounds`` rounds of answers."""


class CacheMissError(OxenError):
    """``cache="replay"``: the request is not in the response cache, and replay sends nothing.
    ``key`` is its cache key; ``row`` the batch row it belongs to (``map``), if any."""

    hint = (
        "record it first: run once with the cache in mode 'on' (which stores temperature=0 "
        "requests) or 'always', then replay."
    )

    def __init__(self, key: str, *, row: int | None = None, reason: str | None = None) -> None:
        self.key = key
        self.row = row
        self.reason = reason
        where = f"row {row}: " if row is not None else ""
        why = f"; {reason}" if reason else ""
        super().__init__(f"{where}not in the replay cache (key {key[:12]}…){why} — {self.hint}")

    def at_row(self, row: int) -> CacheMissError:
        """The same miss, naming the batch row it belongs to."""
        return CacheMissError(self.key, row=row, reason=self.reason)


class APIError(OxenError):
    """The request failed. ``request_id`` is the server's request id, if it sent one."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message


class APIStatusError(APIError):
    """The API answered with an error status."""

    hint = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        type: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    hint = "check the parameters and the model's request schema (oxen_notebook.model_info(model))."


class AuthenticationError(APIStatusError):
    hint = (
        "check your key: set OXEN_API_KEY or run `oxen config --auth hub.oxen.ai YOUR_TOKEN` "
        "(keys: https://www.oxen.ai/settings/profile)."
    )


class InsufficientCreditsError(APIStatusError):
    hint = "add credits to your Oxen.ai account at https://www.oxen.ai, or use Session(model='local')."


class NotFoundError(APIStatusError):
    hint = (
        "list the available models: %oxen models in a notebook, `oxen-notebook models` in a terminal, "
        "or oxen_notebook.list_models()."
    )


class RateLimitError(APIStatusError):
    hint = "rate limited after retries: wait a moment, lower concurrency, or raise max_retries."


class ServerError(APIStatusError):
    hint = "the server failed after retries: try again shortly."


class APIConnectionError(APIError):
    """The server could not be reached."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time."""


class StreamError(APIError):
    """The stream broke mid-reply. The partial text is kept on the reply."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}
_BY_TYPE: dict[str, type[APIStatusError]] = {
    "invalid_params": BadRequestError,
    "invalid_file_input": BadRequestError,
    "invalid_request_error": BadRequestError,
    "unauthenticated": AuthenticationError,
    "insufficient_credits": InsufficientCreditsError,
    "resource_not_found": NotFoundError,
    "rate_limited": RateLimitError,
    "unknown_error": ServerError,
}
# What to do, when it depends on more than the class.
_TYPE_HINTS = {
    "invalid_file_input": (
        "send a PDF (up to 24 MB) as a file part, or audio as wav/mp3 (up to 20 MB), "
        "as a data URL or an https URL."
    ),
}
_STATUS_HINTS = {
    403: "this key may not do that: check the model id and your Oxen.ai plan or organisation access.",
    413: "the request is too large: send smaller files or fewer turns (session.max_turns).",
}
_STREAM_HINT = "the model failed mid-reply and the partial reply was kept: try again."
_FALLBACK_HINT = "check the request, or try again later."
# "Insufficient credits" (Oxen's queue), "credit balance is too low", "out of credits", ...
_CREDITS = re.compile(
    r"insufficient[\s_-]*(credits?|funds|balance)|credit[\s_-]*balance|out[\s_-]+of[\s_-]+credits?"
    r"|not[\s_-]+enough[\s_-]+credits?|credits?[\s_-]+(are[\s_-]+)?(exhausted|depleted)",
    re.IGNORECASE,
)


# What may not reach a one-line message from a server: C0 and C1 controls (escape sequences, bells,
# carriage returns), DEL, the Unicode line and paragraph separators, and the bidirectional marks and
# overrides that can make a line read as something else. Each becomes a space, never nothing: two
# halves of a key joined by a removed control would make the key whole again.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_REDACTED = "***"


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (the API key) replaced by ``***``."""
    return text.replace(secret, _REDACTED) if secret else text


def one_line(text: Any, limit: int = 300, *, secret: str | None = None) -> str:
    """Server-provided ``text`` as one line of at most ``limit`` characters: ``secret`` redacted
    before anything else (a cut can never leave part of the key), control characters, line breaks
    and runs of whitespace folded into single spaces, then cut with an ellipsis."""
    line = redact(str(text), secret)
    line = redact(" ".join(_CONTROLS.sub(" ", line).split()), secret)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def parse_error_body(body: Any, *, secret: str | None = None) -> dict[str, str | None]:
    """Read Oxen's two error shapes (and plain text) into type/title/detail (and the body's
    ``status_message``, when it has one), each one line with ``secret`` redacted."""

    def line(value: Any, limit: int = 300) -> str | None:
        return (one_line(value, limit, secret=secret) or None) if value else None

    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return {"type": None, "title": None, "detail": line(text), "status_message": None}
    status_message = line(body.get("status_message")) if isinstance(body, dict) else None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return {"type": None, "title": None, "detail": line(error), "status_message": status_message}
    if not isinstance(error, dict):
        message = status_message or body.get("message") if isinstance(body, dict) else body
        return {"type": None, "title": None, "detail": line(message), "status_message": status_message}
    detail = error.get("detail") or error.get("message") or status_message
    return {
        "type": line(error.get("type") or error.get("code"), 100),
        "title": line(error.get("title"), 200),
        "detail": line(detail),
        "status_message": status_message,
    }


def _says_credits(fields: dict[str, str | None]) -> bool:
    return any(_CREDITS.search(value) for value in fields.values() if value)


def _error_class(status: int | None, fields: dict[str, str | None]) -> type[APIStatusError]:
    if _says_credits(fields):
        return InsufficientCreditsError
    cls = _BY_STATUS.get(status or 0) or _BY_TYPE.get(fields["type"] or "")
    if cls is not None:
        return cls
    return ServerError if (status or 500) >= 500 else APIStatusError


def _hint(cls: type[APIStatusError], status: int | None, kind: str | None) -> str:
    if cls is InsufficientCreditsError:
        return cls.hint
    if kind in _TYPE_HINTS:
        return _TYPE_HINTS[kind]
    if status is None and cls is ServerError:
        return _STREAM_HINT
    return _STATUS_HINTS.get(status or 0) or cls.hint or _FALLBACK_HINT


def _words(text: str) -> set[str]:
    return {word.strip("'\"`.,:;()[]") for word in text.lower().split()} - {""}


def _says_nothing_new(detail: str, what: str) -> bool:
    """Whether the server's ``detail`` only repeats ``what`` ("Model not found: gpt-6" after
    "model 'gpt-6' not found"): then the message says it once."""
    return _words(detail) <= _words(what)


def status_error(
    status: int | None,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    model: str | None = None,
    secret: str | None = None,
) -> APIStatusError:
    """Build the error for an HTTP error status (or, with status None, an in-stream error event)."""
    fields = parse_error_body(body, secret=secret)
    cls = _error_class(status, fields)
    what = fields["title"] or fields["type"] or "error"
    if cls is InsufficientCreditsError and not fields["title"]:
        what = "insufficient credits"
    if cls is NotFoundError and model and "model" in (fields["detail"] or what).lower():
        what = f"model {model!r} not found"
    parts = [f"{status} {what}" if status else what]
    if fields["detail"] and not _says_nothing_new(fields["detail"], what):
        parts.append(fields["detail"])
    hint = _hint(cls, status, fields["type"])
    message = redact(f"{': '.join(parts)} — {hint}", secret)
    error = cls(
        message,
        status=status,
        type=fields["type"],
        title=fields["title"],
        detail=fields["detail"],
        request_id=request_id,
        retry_after=retry_after,
    )
    error.hint = hint
    return error
