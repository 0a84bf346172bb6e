"""Conversations on disk: the JSON save file, and the append-only JSONL journal.

The journal gets each message as it joins the conversation and, while a reply streams, a
checkpoint of the partial reply about every :data:`CHECKPOINT_SECONDS`: the first one is the
record so far (the same ``message_id``, finish reason ``interrupted``), later ones only the text
added since (``{"message_id": ..., "content_append": ...}``), so the file grows linearly with the
reply. Reading a journal keeps the last state of each message, so a process killed mid-reply loses
at most the last interval of it. Neither file ever holds the API
key: a :class:`Message` has no field for it.
"""

from __future__ import annotations

import json
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
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_conversation(path: str | os.PathLike[str]) -> SavedConversation:
    """Read a file written by :func:`write_conversation`, or a :class:`Journal`'s JSONL file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParameterError(f"no such file {str(path)!r} to load a session from.") from None
    try:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "messages" not in data:
            data = {"messages": _journal_messages(text)}
    except ValueError as exc:
        raise ParameterError(f"{str(path)!r} is not a saved session or journal: {exc}.") from None
    return SavedConversation(
        messages=[Message.from_dict(m) for m in data.get("messages", [])],
        model=data.get("model"),
        conversation_id=data.get("conversation_id"),
        defaults=dict(data.get("defaults") or {}),
    )


def _journal_messages(text: str) -> list[dict[str, Any]]:
    """The last state of each message, in the order messages first appeared. A torn last line
    after good ones (the process died while writing it) is dropped; any other broken line is an
    error."""
    lines = [line for line in text.splitlines() if line.strip()]
    latest: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) > 1 and not text.endswith("\n"):
                break
            raise
        if not isinstance(record, dict):
            raise ValueError(f"line {number} is not a message")
        key = str(record.get("message_id") or f"line-{number}")
        if "content_append" in record:  # a later checkpoint: the text that came since
            if key in latest:
                latest[key]["content"] = latest[key].get("content", "") + str(record["content_append"])
            continue
        # A later full record of the same message replaces it where it first appeared.
        latest[key] = record
    return list(latest.values())


class Journal:
    """Appends each message, as one JSON line, to ``path`` as it joins the conversation, and
    checkpoints of replies while they stream."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checkpoints: dict[str, tuple[float, int]] = {}  # message_id: (when, chars written)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def append(self, message: Message) -> None:
        """Append ``message`` (its final state: no more checkpoints of it)."""
        self._write(message.to_dict())
        self._checkpoints.pop(message.message_id, None)

    def checkpoint(self, reply: Streaming) -> None:
        """Append what ``reply`` received since its last checkpoint, if that is old enough."""
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
            self._write(snapshot.to_dict())
            self._checkpoints[reply.message_id] = (now, len(snapshot.content))
            return
        text = reply.text
        if len(text) > written:
            self._write({"message_id": reply.message_id, "content_append": text[written:]})
        self._checkpoints[reply.message_id] = (now, len(text))

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
