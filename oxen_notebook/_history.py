"""The conversation's records: the ordered messages, turn numbers, and what a request sends.

Thread-safe; it fires no events (the Session does, after each change).
"""

from __future__ import annotations

import threading
from typing import Any

from ._errors import SessionBusyError
from ._records import Message

__all__ = ["History", "Turnstile"]


class Turnstile:
    """One reply streams into a history at a time. A thread waits its turn; a task polls (the
    holder may be a task on its own loop); the thread holding it is refused (it would deadlock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def enter(self) -> None:
        if self._holder == threading.get_ident():
            raise SessionBusyError(
                "a reply is still streaming on this session in this thread; finish or close it first."
            )
        self._lock.acquire()
        self._holder = threading.get_ident()

    async def aenter(self) -> None:
        import asyncio

        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.005)
        self._holder = threading.get_ident()

    def leave(self) -> None:
        self._holder = None
        self._lock.release()


class History:
    """The messages of one conversation, oldest first; the system prompt is turn 0."""

    def __init__(self, conversation_id: str, messages: list[Message] | None = None) -> None:
        self.conversation_id = conversation_id
        self._messages: list[Message] = list(messages or [])
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages)

    @property
    def system(self) -> str | None:
        with self._lock:
            first = self._messages[0] if self._messages else None
            return first.content if first and first.role == "system" else None

    def set_system(self, text: str | None) -> None:
        with self._lock:
            if self._messages and self._messages[0].role == "system":
                del self._messages[0]
            if text:
                self._messages.insert(0, self.record(role="system", content=text, turn=0))

    def record(self, **fields: Any) -> Message:
        """A new message of this conversation (not yet added)."""
        fields.setdefault("conversation_id", self.conversation_id)
        return Message(**fields)

    def next_turn(self) -> int:
        with self._lock:
            return max((m.turn for m in self._messages), default=0) + 1

    def append(self, message: Message) -> None:
        with self._lock:
            self._messages.append(message)

    def add(self, role: str, content: str, **fields: Any) -> Message:
        """Append a message; a ``user`` message opens a turn, others join the current one."""
        with self._lock:
            turn = self.next_turn() if role == "user" else max(self.next_turn() - 1, 1)
            message = self.record(role=role, content=content, **{"turn": turn, **fields})
            self._messages.append(message)
        return message

    def open_turn(self, user: Message, max_turns: int | None = None) -> list[dict[str, Any]]:
        """Number ``user`` as the next turn, add it, and return the messages a request sends
        (the history before it, then it)."""
        with self._lock:
            sent = self.for_request(max_turns)
            user.turn = self.next_turn()
            user.conversation_id = self.conversation_id
            self._messages.append(user)
        return [*sent, user.to_api()]

    def for_request(self, max_turns: int | None = None) -> list[dict[str, Any]]:
        """The messages the next request sends: turns that failed with no text are left out;
        ``max_turns`` keeps only the latest turns (the system prompt always)."""
        with self._lock:
            failed = {
                m.turn
                for m in self._messages
                if m.role == "assistant" and m.finish_reason == "error" and not m.content
            }
            kept = [m for m in self._messages if m.turn not in failed or m.role == "system"]
        if max_turns is not None:
            turns = sorted({m.turn for m in kept if m.role != "system"})
            recent = set(turns[len(turns) - max_turns :] if max_turns > 0 else ())
            kept = [m for m in kept if m.role == "system" or m.turn in recent]
        return [m.to_api() for m in kept]

    def undo(self) -> list[Message]:
        """Remove the last exchange (the last user turn, all its requests, and what followed);
        return it. A schema repair prompt is a user message of the same turn: it goes too."""
        with self._lock:
            last = max((i for i, m in enumerate(self._messages) if m.role == "user"), default=None)
            if last is None:
                return []
            turn = self._messages[last].turn
            first = min(i for i, m in enumerate(self._messages) if m.role != "system" and m.turn == turn)
            removed = self._messages[first:]
            del self._messages[first:]
        return removed

    def restart(self, conversation_id: str) -> None:
        """A new conversation: no messages but the system prompt."""
        with self._lock:
            system = self.system
            self.conversation_id = conversation_id
            self._messages = []
            self.set_system(system)
