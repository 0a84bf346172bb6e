"""Conversations on disk: the JSON save file, and the append-only JSONL journal.

The journal gets each message as it joins the conversation and, while a reply streams, a
checkpoint of the partial reply about every :data:`CHECKPOINT_SECONDS`: the first one is the
record so far (the same ``message_id``, finish reason ``interrupted``), later ones only the text
added since (``{"message_id": ..., "content_append": ...}``), so the file grows linearly with the
reply. Reading a journal keeps the last state of each message, so a process killed mid-reply loses
at most the last interval of it. Neither file ever holds the API
key: a :class:`Message` has no field for it.

A journal that cannot be written (a full disk, a read-only folder) never stops the conversation:
it says so once, in one line, keeps the records it could not write, and writes them when the file
can be written again. A line cut short by a full disk gets a line of its own before the next write,
and reading skips it (and any other damaged line), saying how many it skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._errors import ParameterError
from ._records import Message

__all__ = [
    "CHECKPOINT_SECONDS",
    "SAVE_VERSION",
    "Journal",
    "SavedConversation",
    "read_conversation",
    "write_conversation",
]

SAVE_VERSION = 1
#: How often a streaming reply's partial text is appended to the journal.
CHECKPOINT_SECONDS = 0.5
_log = logging.getLogger("oxen_notebook")
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


class Streaming(Protocol):
    """A reply that can be checkpointed (``Reply`` and ``AsyncReply`` are)."""

    message_id: str

    @property
    def text(self) -> str: ...

    def snapshot(self) -> Message: ...


@dataclass
class SavedConversation:
    """What a save file or a journal holds."""

    messages: list[Message]
    model: str | None = None
    conversation_id: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


def write_conversation(path: str | os.PathLike[str], conversation: SavedConversation) -> Path:
    """Write ``conversation`` as JSON, atomically (a temporary file, then a rename)."""
    path = Path(path)
    data = {
        "version": SAVE_VERSION,
        "model": conversation.model,
        "conversation_id": conversation.conversation_id,
        "defaults": conversation.defaults,
        "messages": [m.to_dict() for m in conversation.messages],
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
    except BaseException:  # a full disk: the file as it was, and no half-written copy beside it
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def read_conversation(path: str | os.PathLike[str]) -> SavedConversation:
    """Read a file written by :func:`write_conversation`, or a :class:`Journal`'s JSONL file (its
    damaged lines skipped, and counted in one logged line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ParameterError(f"no such file {str(path)!r} to load a session from.") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "messages" in data:
        try:
            messages = [Message.from_dict(m) for m in data.get("messages") or []]
        except (TypeError, ValueError, AttributeError) as exc:
            raise ParameterError(f"{str(path)!r} is not a saved session or journal: {exc}.") from None
        return SavedConversation(
            messages=messages,
            model=data.get("model"),
            conversation_id=data.get("conversation_id"),
            defaults=dict(data.get("defaults") or {}),
        )
    records, skipped = _journal_messages(text)
    messages = []
    for record in records:
        try:
            messages.append(Message.from_dict(record))
        except (TypeError, ValueError, AttributeError):
            skipped += 1
    if not messages:
        what = f"{skipped} damaged line{'s' * (skipped != 1)} and no whole record" if skipped else "nothing"
        raise ParameterError(
            f"{str(path)!r} is not a saved session or journal: it holds {what}; "
            "give a file written by Session.save or Session(journal=...)."
        )
    if skipped:
        _log.warning(
            "oxen_notebook: skipped %d damaged line%s of the journal %r (cut short by a crash or a full "
            "disk) and loaded the %d whole messages.",
            skipped,
            "s" * (skipped != 1),
            str(path),
            len(messages),
        )
    return SavedConversation(messages=messages)


def _journal_messages(text: str) -> tuple[list[dict[str, Any]], int]:
    """The last state of each message, in the order messages first appeared, and how many lines
    were damaged (skipped). A damaged line is one that is not a JSON object: cut short by a crash
    or a full disk. An older writer appended the next record right after such a piece, on the same
    line: that record is taken from the line's end. Once a line is lost, a message's later
    ``content_append`` checkpoints may continue text that was lost with it: they are skipped until
    a whole record of that message comes (its final one replaces them anyway)."""
    latest: dict[str, dict[str, Any]] = {}
    doubtful: set[str] = set()  # messages whose text after a lost line cannot be trusted
    skipped = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None or record[1]:
            skipped += 1
            doubtful.update(latest)
        if record is None:
            continue
        record = record[0]
        key = str(record.get("message_id") or f"line-{number}")
        if "content_append" in record:  # a later checkpoint: the text that came since
            if key in latest and key not in doubtful:
                latest[key]["content"] = str(latest[key].get("content") or "") + str(record["content_append"])
            continue
        # A later full record of the same message replaces it where it first appeared.
        latest[key] = record
        doubtful.discard(key)
    return list(latest.values()), skipped


def _record(line: str) -> tuple[dict[str, Any], bool] | None:
    """The JSON object on ``line`` and whether a damaged piece came before it on the line, or
    ``None`` when no whole object ends the line."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value, False
    decoder = json.JSONDecoder()
    start = line.find('{"', 1)
    while start > 0:  # the earliest object that runs to the end of the line
        try:
            value, end = decoder.raw_decode(line, start)
        except (ValueError, RecursionError):
            value, end = None, -1
        if (
            isinstance(value, dict)
            and end == len(line.rstrip())
            and ("role" in value or "content_append" in value)
        ):
            return value, True
        start = line.find('{"', start + 1)
    return None


class Journal:
    """Appends each message, as one JSON line, to ``path`` as it joins the conversation, and
    checkpoints of replies while they stream. Writing never raises: see :attr:`failure`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: Why the journal is not being written (one line), or ``None`` while it is.
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._checkpoints: dict[str, tuple[float, int]] = {}  # message_id: (when, chars written)
        self._waiting: list[str] = []  # whole records not written yet: the file could not be written
        self._resync = True  # check that the file ends a line before writing (a torn last line)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def append(self, message: Message) -> None:
        """Append ``message`` (its final state: no more checkpoints of it); kept until it is
        written, when the file cannot be written now."""
        self._write(message.to_dict(), keep=True)
        self._checkpoints.pop(message.message_id, None)

    def checkpoint(self, reply: Streaming) -> None:
        """Append what ``reply`` received since its last checkpoint, if that is old enough. A
        checkpoint that cannot be written is dropped; the next one is then a whole record again."""
        now = time.monotonic()
        last = self._checkpoints.get(reply.message_id)
        if last is None:  # the first delta starts the clock: a checkpoint per interval after it
            self._checkpoints[reply.message_id] = (now, -1)
            return
        when, written = last
        if now - when < CHECKPOINT_SECONDS:
            return
        if written < 0:
            snapshot = reply.snapshot()
            done = self._write(snapshot.to_dict(), keep=False)
            self._checkpoints[reply.message_id] = (now, len(snapshot.content) if done else -1)
            return
        text = reply.text
        done = True
        if len(text) > written:
            done = self._write({"message_id": reply.message_id, "content_append": text[written:]}, keep=False)
        self._checkpoints[reply.message_id] = (now, len(text) if done else -1)

    def _write(self, record: dict[str, Any], *, keep: bool) -> bool:
        """Append the waiting records, then ``record`` (kept to write later if ``keep``); whether
        it was written."""
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            lines = [*self._waiting, line]
            written, error = self._append(lines)
            # What was not written whole waits; a checkpoint does not (a later one replaces it).
            self._waiting = lines[written:] if keep or written == len(lines) else lines[written:-1]
            if error is not None:
                self._resync = True
                self._failed(error)
                return False
            if self.failure is not None:
                self.failure = None
                _log.warning(
                    "oxen_notebook: the journal %r is being written again (%d records that waited were added).",
                    str(self.path),
                    written - 1,
                )
            return True

    def _append(self, lines: list[str]) -> tuple[int, OSError | None]:
        """Write ``lines`` at the end of the file: how many were written whole, and the error that
        stopped it, if any."""
        written = 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o666)
        except OSError as exc:
            return written, exc
        try:
            if self._resync:  # a line cut short (a crash, a full disk) gets a line of its own
                if os.fstat(fd).st_size:
                    os.lseek(fd, -1, os.SEEK_END)
                    if os.read(fd, 1) != b"\n":
                        _write_all(fd, b"\n")  # O_APPEND: at the end, wherever the read left off
                self._resync = False
            for line in lines:
                _write_all(fd, (line + "\n").encode("utf-8"))
                written += 1
        except OSError as exc:
            return written, exc
        finally:
            with contextlib.suppress(OSError):  # what was written stays written
                os.close(fd)
        return written, None

    def _failed(self, exc: OSError) -> None:
        if self.failure is None:
            reason = exc.strerror or str(exc) or type(exc).__name__
            self.failure = f"{reason} ({type(exc).__name__})"
            _log.warning(
                "oxen_notebook: the journal %r is not being written: %s. The conversation goes on "
                "in memory; its records are written when the file can be written again "
                "(Session.save(path) keeps it elsewhere).",
                str(self.path),
                reason,
            )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
