"""The bounds a request is held to: a body's size (:data:`MAX_BODY_BYTES`) and a total deadline
(:data:`DEFAULT_DEADLINE`), with the reader that enforces both as a body arrives in pieces."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import StreamError

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_DEADLINE", "MAX_BODY_BYTES", "BodyReader", "with_body"]

#: Seconds a request may take from start to last byte: a 16,384-token reply at 20 tokens a second
#: takes about 14 minutes; a server trickling bytes cannot hold a cell or a batch row longer.
DEFAULT_DEADLINE = 900.0
#: The most an unstreamed body may hold (16 MiB); a real chat.completion is a few kilobytes.
MAX_BODY_BYTES = 16 * 2**20
_BODY_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


class BodyReader:
    """A body as it is read: refused past :data:`MAX_BODY_BYTES` (its announced length first),
    or cut at ``cut`` bytes; checked against the deadline at every piece (``late()`` is the error)."""

    def __init__(
        self,
        response: httpx.Response,
        deadline: float | None,
        cut: int | None,
        *,
        late: Callable[[], Exception],
    ) -> None:
        self.deadline, self.cut, self.late = deadline, cut, late
        self.limit = cut or MAX_BODY_BYTES
        self.parts: list[bytes] = []
        self.size = 0
        length = response.headers.get("content-length", "")
        if not cut and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _too_large(int(length))

    def full(self, piece: bytes) -> bool:
        """Take a piece; whether the body is complete as far as it will be read."""
        self.parts.append(piece)
        self.size += len(piece)
        if self.size > self.limit and not self.cut:
            raise _too_large(None)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise self.late()
        return self.size >= self.limit

    def value(self) -> bytes:
        return b"".join(self.parts)[: self.limit]


def _too_large(size: int | None) -> StreamError:
    got = f"{size:,} bytes" if size is not None else f"more than {MAX_BODY_BYTES:,} bytes"
    return StreamError(
        f"the server's answer was too large ({got}, over the {MAX_BODY_BYTES // 2**20} MiB limit); "
        "no chat reply is that large: check base_url."
    )


def with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """``response`` (read and closed) with ``body``, its decoded content, as ``.content``."""
    import httpx

    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    status, request = response.status_code, response.request
    return httpx.Response(
        status, headers=headers, content=body, request=request, extensions=response.extensions
    )
