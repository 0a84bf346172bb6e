"""The message record: one row of a conversation, as JSON and as a DataFrame row."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._attachments import describe, user_content
from ._errors import ParameterError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

__all__ = [
    "COLUMNS",
    "JSON_COLUMNS",
    "BatchLog",
    "Message",
    "is_missing",
    "message_facts",
    "messages_from_dataframe",
    "messages_to_dataframe",
    "new_id",
    "token_count",
]


_UNRECORDED = {"recorded": False}


#: Above any real count (the largest context windows hold about 10**7 tokens), far enough below
#: Int64's limit that a session's totals cannot overflow it.
MAX_TOKEN_COUNT = 10**12


def token_count(value: Any) -> int | None:
    """``value`` as a token count, or ``None`` if it is not one: a count is a non-negative integer
    (an integral float such as ``12.0`` counts; ``12.5``, ``"12"``, ``True``, ``-5`` and anything
    above :data:`MAX_TOKEN_COUNT` do not). What a server sends is never trusted to be one."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value)  # numpy's integers too
    return None


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Message:
    """One message of a conversation, with what is known about how it was made.

    ``finish_reason`` is ``stop``, ``length``, ``tool_calls``, ``content_filter``, ``interrupted``
    (stopped by the user) or ``error`` (the request failed; ``error`` says why) for replies,
    and ``None`` for user and system messages. ``usage_estimated`` is true when the server sent no
    token counts and they were counted here (an estimate; see ``oxen_notebook._tokens``).
    ``parsed`` is a reply's validated structured output (as JSON), when it was asked for with
    ``schema=``. A ``tool`` message answers ``tool_call_id``: ``tool_name`` was called with
    ``tool_arguments`` and ``content`` is what it returned (or ``error`` why it did not). ``note``
    says what the client did on the user's behalf (a request sent again with another format).
    ``attachments`` describes what a user message attached (kind, type, name, size, sha256, or
    its URL), never the bytes: ``images`` keeps image URLs (data URIs included) as before, and
    the content parts of files, audio and video are held in memory only (``parts``), so a
    conversation read back from a file sends a note in their place.
    """

    role: str
    content: str
    conversation_id: str = ""
    message_id: str = field(default_factory=new_id)
    turn: int = 0
    model: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    params: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    usage_estimated: bool = False
    ttft_s: float | None = None
    duration_s: float | None = None
    error: str | None = None
    source: str = "api"
    images: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    cached: bool = False
    cost_usd: float | None = None
    parsed: Any = None
    tool_name: str | None = None
    tool_arguments: dict[str, Any] | None = None
    note: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    #: The content parts of attached files, audio and video: sent, never recorded.
    parts: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False, metadata=_UNRECORDED)

    def to_api(self) -> dict[str, Any]:
        """The message as the chat-completions API takes it."""
        text = self.content
        lost = [a for a in self.attachments if a.get("kind") != "image"] if not self.parts else []
        if lost:  # read back from a file: the bytes were never recorded
            text += f"\n\n[Attached earlier, not kept in the saved conversation: {describe(lost)}]"
        parts = [{"type": "image_url", "image_url": {"url": url}} for url in self.images]
        message: dict[str, Any] = {"role": self.role, "content": user_content(text, [*parts, *self.parts])}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message

    def to_dict(self) -> dict[str, Any]:
        data = {name: value for name, value in asdict(self).items() if name in COLUMNS}
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        names = {f.name for f in fields(cls)}
        values = {k: _none_if_missing(v) for k, v in data.items() if k in names}
        created = values.get("created_at")
        if isinstance(created, str):
            values["created_at"] = datetime.fromisoformat(created)
        elif hasattr(created, "to_pydatetime"):
            values["created_at"] = created.to_pydatetime()
        if values.get("created_at") is None:
            values.pop("created_at", None)
        elif values["created_at"].tzinfo is None:
            values["created_at"] = values["created_at"].replace(tzinfo=timezone.utc)
        for name in ("params", "images", "tool_calls", "tool_arguments", "attachments"):
            if isinstance(values.get(name), str):
                values[name] = json.loads(values[name])
        if isinstance(values.get("parsed"), str):  # a CSV or Parquet copy holds it as JSON text
            with contextlib.suppress(ValueError):
                values["parsed"] = json.loads(values["parsed"])
        for name in ("params", "images", "attachments"):
            if values.get(name) is None:
                values.pop(name, None)
        for name in ("turn", "prompt_tokens", "completion_tokens", "total_tokens"):
            if values.get(name) is not None:
                values[name] = int(values[name])
        for name in ("ttft_s", "duration_s", "cost_usd"):
            if values.get(name) is not None:
                values[name] = float(values[name])
        for name in ("cached", "usage_estimated"):  # files written before a flag existed lack it
            if values.get(name) is None:
                values.pop(name, None)
            else:
                values[name] = _flag(values[name])
        return cls(**values)


def _flag(value: Any) -> bool:
    """A boolean cell, also as a CSV copy spells it (``"True"``, ``"false"``, ``"1"``)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def message_facts(message: Message, model: str | None = None) -> list[str]:
    """``[model, "N tokens", "S.s s", "P in, C out"]`` (the parts that are known): how a reply's
    footer, the panel's status line and its transcript describe a reply. In and out, as compare
    shows them: the total counts the history sent with the prompt."""
    parts = [name] if (name := message.model or model) else []
    approx = "~" if message.usage_estimated else ""  # counted here, the server sent no usage
    if message.total_tokens is not None:
        parts.append(f"{approx}{message.total_tokens} tokens")
    if message.duration_s is not None:
        parts.append(f"{message.duration_s:.1f} s")
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        parts.append(f"{approx}{message.prompt_tokens} in, {approx}{message.completion_tokens} out")
    return parts


COLUMNS = [f.name for f in fields(Message) if f.metadata.get("recorded", True)]
_TOKEN_COLUMNS = ["prompt_tokens", "completion_tokens", "total_tokens"]
_FLOAT_COLUMNS = ["ttft_s", "duration_s", "cost_usd"]
_BOOL_COLUMNS = ["usage_estimated", "cached"]
_STRING_COLUMNS = [
    "conversation_id", "message_id", "role", "content", "model", "finish_reason", "error",
    "source", "tool_call_id", "tool_name", "note",
]  # fmt: skip
#: Columns whose cells are lists or dicts: a CSV or Parquet export stores them as JSON text.
JSON_COLUMNS = ["params", "images", "tool_calls", "parsed", "tool_arguments", "attachments"]


def is_missing(value: Any) -> bool:
    """``None``, NaN, ``pd.NA`` or ``pd.NaT``: what a DataFrame cell holds for "no value"."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _none_if_missing(value: Any) -> Any:
    return None if is_missing(value) else value


def _counts(column: pd.Series) -> pd.Series:
    """A token-count column as ``Int64``; a cell that is not a count (:func:`token_count`) is ``<NA>``."""
    if column.dtype.kind in "iuf":  # vectorised: the usual case, thousands of rows
        ok = (column >= 0) & (column <= MAX_TOKEN_COUNT) & (column % 1 == 0)
        return column.where(ok).astype("Int64")
    return column.map(token_count, na_action="ignore").astype("Int64")


def messages_to_dataframe(messages: list[Message]) -> pd.DataFrame:
    """One row per message, with UTC datetimes and nullable numbers."""
    import pandas as pd

    frame = pd.DataFrame([asdict(m) for m in messages], columns=COLUMNS)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    for name in _TOKEN_COLUMNS:  # a record made by hand or read from an old file may hold anything
        frame[name] = _counts(frame[name])
    frame["turn"] = frame["turn"].astype("Int64")
    for name in _FLOAT_COLUMNS:
        frame[name] = frame[name].astype("Float64")
    for name in _STRING_COLUMNS:
        frame[name] = frame[name].astype("string")
    for name in _BOOL_COLUMNS:
        frame[name] = frame[name].astype("boolean")
    return frame


def messages_from_dataframe(frame: pd.DataFrame) -> list[Message]:
    """Read rows written by :func:`messages_to_dataframe` (or a CSV/Parquet copy of them)."""
    missing = {"role", "content"} - set(frame.columns)
    if missing:
        raise ParameterError(
            f"the DataFrame lacks the column(s) {sorted(missing)}; it needs role and content."
        )
    return [Message.from_dict(row) for row in frame.to_dict(orient="records")]


class BatchLog:
    """What ``map`` and ``compare`` sent and received: ``(batch_id, row, message)`` entries.

    In the export, a message's ``conversation_id`` is its batch id and its ``turn`` is ``row + 1``.
    A batch whose entries are kept elsewhere (``map(checkpoint=...)`` writes them to Parquet) is
    linked instead, and read only when the log is exported.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, int, Message]] = []
        self._linked: list[tuple[int, str, Callable[[], list[tuple[int, Message]]]]] = []
        self._lock = threading.Lock()

    def add(self, batch_id: str, entries: list[tuple[int, Message]]) -> None:
        with self._lock:
            self._entries.extend((batch_id, row, message) for row, message in entries)

    def link(self, batch_id: str, read: Callable[[], list[tuple[int, Message]]]) -> None:
        """A batch whose ``(row, message)`` entries ``read()`` gives, in their place among the others."""
        with self._lock:
            self._linked.append((len(self._entries), batch_id, read))

    def __len__(self) -> int:
        return len(self._entries)

    def frame(self) -> pd.DataFrame:
        """Every entry as a message row, with ``batch_id`` and ``row`` first."""
        with self._lock:
            entries = list(self._entries)
            linked = list(self._linked)
        for at, batch_id, read in reversed(linked):
            entries[at:at] = [(batch_id, row, message) for row, message in read()]
        frame = messages_to_dataframe([message for _, _, message in entries])
        frame["conversation_id"] = [batch for batch, _, _ in entries]
        frame["turn"] = [row + 1 for _, row, _ in entries]
        frame.insert(0, "row", [row for _, row, _ in entries])
        frame.insert(0, "batch_id", [batch for batch, _, _ in entries])
        return frame.astype(
            {"batch_id": "string", "row": "Int64", "conversation_id": "string", "turn": "Int64"}
        )
