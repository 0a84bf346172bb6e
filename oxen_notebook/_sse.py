"""Server-sent events: bytes in, events out, following the WHATWG event-stream rules.

Lines end in CRLF, LF or CR; a blank line dispatches the event; ``data:`` lines are joined with
``\\n``; lines starting with ``:`` are comments; unknown fields are ignored; one leading space after
the colon is dropped; a leading BOM is dropped. Reads may split lines, events and UTF-8 sequences
anywhere. An event not ended by a blank line when the stream closes is not dispatched.

A line is held until its end arrives, in pieces that are joined once (a line split over many
reads costs its length, not its length times the reads), and no line may pass ``max_line`` bytes
(:data:`MAX_LINE_BYTES`): a server sending one endless line is a :class:`StreamError` as soon as
it passes the bound, not a buffer that grows until memory runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import StreamError

__all__ = ["MAX_LINE_BYTES", "SSEDecoder", "ServerSentEvent"]

#: The longest line a stream may send (16 MiB): one chunk of a chat reply is well under a kilobyte.
MAX_LINE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder. ``feed(bytes)`` returns the events completed by those bytes."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        #: Bytes copied while joining the pieces of lines split across reads (each piece once).
        self.copied = 0
        self._pieces: list[bytes] = []  # the unfinished line, as it arrived
        self._held = 0  # their length
        self._buffer = b""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._started and b"\n" not in chunk and b"\r" not in chunk and not self._buffer.endswith(b"\r"):
            if chunk:  # more of an unfinished line: kept as it came, joined when the line ends
                if not self._pieces and self._buffer:
                    self._pieces.append(self._buffer)
                    self._buffer = b""
                self._pieces.append(chunk)
                self._held += len(chunk)
                self._check_line(self._held)
            return []
        if self._pieces:
            self._pieces.append(chunk)
            buffer = b"".join(self._pieces)
            self.copied += len(buffer)
            self._pieces, self._held = [], 0
        else:
            buffer = self._buffer + chunk if self._buffer else chunk
            if self._buffer:
                self.copied += len(buffer)
        if not self._started:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            if buffer.startswith(b"\xef\xbb\xbf"):
                buffer = buffer[3:]
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF: keep it for the next read.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            if tail:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buffer.split(b"\n")
            lines[-1] += tail
        else:
            lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        self._held = len(self._buffer)
        self._check_line(self._held)
        events: list[ServerSentEvent] = []
        for raw in lines:
            self._line(raw, events)
        return events

    def end(self) -> list[ServerSentEvent]:
        """The stream closed: a line ended by a lone CR still counts; an unfinished event does not."""
        events: list[ServerSentEvent] = []
        if self._buffer.endswith(b"\r") and not self._pieces:
            self._line(self._buffer[:-1], events)
        self._buffer = b""
        self._pieces, self._held = [], 0
        return events

    def _check_line(self, size: int) -> None:
        if size > self.max_line:
            self._pieces, self._held, self._buffer = [], 0, b""
            raise StreamError(
                f"the stream sent a line of more than {self.max_line:,} bytes without ending it; "
                "no chat reply sends that: check base_url, or report the server."
            )

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                events.append(
                    ServerSentEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
                )
            self._data = []
            self._event = ""
            return
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
