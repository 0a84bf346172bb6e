"""What a batch's modules share: a row's :class:`Job` and :class:`Outcome`, where finished rows go
(:class:`RowSink`), what a batch needs of a Session (:class:`BatchSession`), and how ``map`` runs
(:class:`MapOptions`, handed whole to a checkpointed run and a cluster's).

A module of its own, below the runner, the templates, the budget and the estimate, so they all
import it and none of them imports another for its types.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._ask import Ask
    from .._cache import ResponseCache
    from .._client import Client
    from .._models import ModelCatalog
    from .._records import BatchLog, Message
    from .._reply import AsyncReply
    from .._turn import AsyncTurn
    from .._usage import UsageLedger

__all__ = ["NOT_SENT", "BatchSession", "EndedRows", "Job", "MapOptions", "Outcome", "RowSink"]

NOT_SENT = "not sent: the batch was interrupted"


class BatchSession(Protocol):
    """What a batch needs of a Session (and all it touches)."""

    model: str
    catalog: ModelCatalog
    ledger: UsageLedger
    batch_log: BatchLog
    context_rows: int | None  # how much of a DataFrame, list, dict or long string a {field} shows
    context_chars: int | None
    system: str | None  # what a row's estimate counts (max_cost_usd=), and a checkpoint records
    defaults: dict[str, Any]
    cache: ResponseCache | None  # replay mode sends nothing, not even GET /models/{id}

    def client(self, model: str | None = None) -> Client: ...

    def astream_ask(self, ask: Ask) -> AsyncReply | AsyncTurn: ...


@dataclass
class Job:
    prompt: str | None
    model: str | None
    params: dict[str, Any]
    error: str | None = None  # the row could not be made into a request
    data: dict[str, Any] | None = None  # the row's data, which a checkpoint stores with its result
    key: int | None = None  # the row's key, which matches it to the data on resume (``_rowkeys``)
    system: str | None = None  # this row's system prompt (an evaluation variant's), else the Session's


@dataclass
class Outcome:
    user: Message | None = None
    message: Message | None = None  # the last reply (a schema row's repair, if it had one)
    error: str | None = None
    state: str = "not sent"  # done, failed, interrupted, not sent
    records: list[Message] = field(default_factory=list)  # every message of the row, in order
    replies: list[Message] = field(default_factory=list)  # every reply: the row's totals
    parsed: Any = None  # the validated value (schema=)


class RowSink(Protocol):
    """Where a runner puts each finished row instead of keeping it (a checkpoint's next part)."""

    def add(self, index: int, job: Job, outcome: Outcome) -> None: ...

    def due(self) -> bool: ...  # rows have waited long enough: flush now

    def flush(self) -> None: ...

    def close(self) -> None: ...


class EndedRows:
    r"""A :class:`RowSink` for a live view: ``add`` (on the batch's loop) only notes the row, and the
    caller's thread :meth:`take`\ s what ended since, so a display is touched from that thread only."""

    def __init__(self) -> None:
        self._ended: list[tuple[int, Outcome]] = []
        self._lock = threading.Lock()

    def add(self, index: int, job: Job, outcome: Outcome) -> None:
        with self._lock:
            self._ended.append((index, outcome))

    def due(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> list[tuple[int, Outcome]]:
        """The rows that ended since the last call, in the order they ended."""
        with self._lock:
            ended, self._ended = self._ended, []
        return ended


@dataclass(frozen=True)
class MapOptions:
    """How ``map`` runs, as the call gave it (all but the data, the template, the attachments and
    the request parameters); checked where it is used."""

    concurrency: int = 8
    on_error: str = "record"
    progress: bool | Callable[..., Any] = True
    stream: bool = False
    schema: Any = None
    max_repairs: int = 1
    max_cost_usd: float | None = None
    checkpoint: Any = None  # a folder: rows read lazily and kept there (_outofcore)
    resume: bool = True
    retry_errors: bool = False
