"""Conversations on disk: the JSON save file, and the append-only JSONL journal.

Neither ever holds the API key: a :class:`Message` has no field for it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ParameterError
from ._records import Message

__all__ = ["SAVE_VERSION", "Journal", "SavedConversation", "read_conversation", "write_conversation"]

SAVE_VERSION = 1


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
            data = {"messages": [json.loads(line) for line in text.splitlines() if line.strip()]}
    except ValueError as exc:
        raise ParameterError(f"{str(path)!r} is not a saved session or journal: {exc}.") from None
    return SavedConversation(
        messages=[Message.from_dict(m) for m in data.get("messages", [])],
        model=data.get("model"),
        conversation_id=data.get("conversation_id"),
        defaults=dict(data.get("defaults") or {}),
    )


class Journal:
    """Appends each message, as one JSON line, to ``path`` as it joins the conversation."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def append(self, message: Message) -> None:
        line = json.dumps(message.to_dict(), ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
