"""``Session.map`` and ``Session.compare``: many one-shot requests, concurrently, in order.

Rows run as ``history=False`` replies on the async path (``Session.astream``), on one background
event loop in a daemon thread. Rows are sent unstreamed (``"stream": false``) unless ``stream=True``:
nobody watches them stream, and a whole ``chat.completion`` body carries ``usage`` even on servers
that ignore ``stream_options`` (llama-cpp-python's), and cannot be cut short by a server that
cancels a running stream when another request arrives (that one too). The caller's thread only
waits and draws progress, so ``map`` is a plain blocking call in a Jupyter cell (whose own loop is
already running) without nesting loops, and a kernel interrupt (``KeyboardInterrupt`` in the
waiting thread) cancels the requests in flight and returns the rows that finished. The client's
shared 429 pause holds every worker.

With ``schema=`` a row is an ``AsyncTurn``: its reply, and a repair request when the reply does not
validate. Every request of the row is in the batch log, and the row's tokens, latency and cost are
their sums; the typed columns are ``_typed.py``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import CacheMissError, OxenError, ParameterError, StreamError
from .._params import validate_params
from .._records import Message, new_id
from .._request import attachments
from .._turn import AsyncTurn
from ._budget import Budget, make_budget
from ._commit import record_run
from ._progress import BatchProgress, make_progress
from ._templates import check_template, fill, table
from ._typed import BatchSchema

if TYPE_CHECKING:
    import pandas as pd

    from .._attachments import Attachment
    from .._cache import ResponseCache
    from .._client import Client
    from .._models import ModelCatalog
    from .._records import BatchLog
    from .._reply import AsyncReply
    from .._usage import UsageLedger

__all__ = ["MAP_COLUMNS", "BatchSession", "Job", "execute", "result_columns", "run_map"]


class BatchSession(Protocol):
    """What a batch needs of a Session (and all it touches)."""

    model: str
    catalog: ModelCatalog
    ledger: UsageLedger
    batch_log: BatchLog
    context_rows: int | None  # how much of a DataFrame, list, dict or long string a {field} shows
    context_chars: int | None
    system: str | None  # what a row's estimate counts (max_cost_usd=)
    defaults: dict[str, Any]
    cache: ResponseCache | None  # replay mode sends nothing, not even GET /models/{id}

    def client(self, model: str | None = None) -> Client: ...

    def astream(self, prompt: str, **kwargs: Any) -> AsyncReply | AsyncTurn: ...


MAP_COLUMNS = [
    "reply", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "cost_usd",
    "cached", "error",
]  # fmt: skip
_NOT_SENT = "not sent: the batch was interrupted"
_CUT_SHORT = "interrupted before the reply finished"
_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_active: dict[int, int] = {}  # batches running per Client, on the background loop


def _background_loop() -> asyncio.AbstractEventLoop:
    """The process-wide loop batches run on; httpx's async connections stay bound to it."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="oxen-batch", daemon=True)
            thread.start()
            _loop = loop
        return _loop


@dataclass
class Job:
    prompt: str | None
    model: str | None
    params: dict[str, Any]
    error: str | None = None  # the row could not be made into a request


@dataclass
class _Outcome:
    user: Message | None = None
    message: Message | None = None  # the last reply (a schema row's repair, if it had one)
    error: str | None = None
    state: str = "not sent"  # done, failed, interrupted, not sent
    records: list[Message] = field(default_factory=list)  # every message of the row, in order
    replies: list[Message] = field(default_factory=list)  # every reply: the row's totals
    parsed: Any = None  # the validated value (schema=)


def _send_as(current: AsyncReply | AsyncTurn, stream: bool) -> None:
    current.streamed = stream  # a turn sends its repairs the same way


def _row_messages(current: AsyncReply | AsyncTurn) -> tuple[list[Message], list[Message]]:
    """Every message of a row in order (the prompt, each reply, each repair prompt between), and
    the replies alone."""
    if isinstance(current, AsyncTurn):
        records = current.messages
        replies = [r.message for r in current.replies if r.message is not None]
        return records, replies
    return [current.user_message, *([current.message] if current.message else [])], (
        [current.message] if current.message else []
    )


class _Runner:
    """Runs the jobs with at most ``concurrency`` in flight; ``outcomes`` keeps their order."""

    def __init__(
        self,
        session: BatchSession,
        jobs: list[Job],
        concurrency: int,
        on_error: str,
        stream: bool = False,
        schema: BatchSchema | None = None,
        files: list[Attachment] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.session = session
        self.budget = budget  # max_cost_usd=: the gate rows start through
        self.stream = stream
        # What every row's request takes besides its prompt: the schema's options, the attachments.
        self.typed = {**(schema.request if schema is not None else {}), **({"files": files} if files else {})}
        self.jobs = jobs
        self.concurrency = concurrency
        self.on_error = on_error
        self.outcomes = [_Outcome() for _ in jobs]
        self.stats = BatchProgress(total=len(jobs))
        self.first_error: OxenError | None = None
        self.interrupted = False
        self._next = 0
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retries = session.client().max_retries
        self.batch_id = ""

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self.session
        clients = {session.client(job.model) for job in self.jobs}
        for client in clients:
            _active[id(client)] = _active.get(id(client), 0) + 1
        workers = min(self.concurrency, len(self.jobs))
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.stats.ended = self.stats.ended or time.perf_counter()
            for client in clients:
                _active[id(client)] -= 1
                if not _active[id(client)]:
                    del _active[id(client)]
                    # A Session may be gone before the next batch: close its connections on this loop.
                    await client.aclose_loop()

    def stop_threadsafe(self) -> None:
        """Cancel the rows in flight and start no more (from any thread)."""
        self.interrupted = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop)

    def _stop(self) -> None:
        self._stopping = True
        me = asyncio.current_task()
        for task in self._tasks:
            if task is not me:
                task.cancel()

    async def _worker(self) -> None:
        while not self._stopping and self._next < len(self.jobs):
            index = self._next
            if self.budget is not None and not self.budget.admit(index):
                if await self.budget.wait():
                    continue  # a row in flight finished: look again
                break  # nothing in flight and the row does not fit: no more start
            self._next += 1
            outcome = self.outcomes[index]
            outcome.state = "running"
            reply: list[AsyncReply | AsyncTurn] = []
            try:
                await self._row(index, reply)
            except asyncio.CancelledError:
                self._settle(index, reply, cancelled=True)
                return
            self._settle(index, reply, cancelled=False)
            if self.budget is not None:
                self.budget.finished(index, outcome.replies)
            self.stats.done += 1
            if outcome.state == "failed":
                self.stats.failed += 1
                if self.on_error == "raise" and self.first_error is None:
                    error = reply[-1].error if reply else None
                    error = error.at_row(index) if isinstance(error, CacheMissError) else error
                    self.first_error = error or ParameterError(outcome.error or "the row failed.")
                    self._stop()

    async def _row(self, index: int, reply: list[AsyncReply | AsyncTurn]) -> None:
        job = self.jobs[index]
        if job.error is not None:
            return
        assert job.prompt is not None
        attempt = 0
        while True:
            try:
                current = self.session.astream(
                    job.prompt, history=False, source="batch", model=job.model, **self.typed, **job.params
                )
            except OxenError as exc:
                job.error = str(exc)
                return
            _send_as(current, self.stream)
            reply.append(current)
            try:
                await current.aconsume()
            except StreamError:
                # The stream broke after it started, or ended with nothing (a server that cancelled
                # it), or an unstreamed body was malformed: a one-shot row has no history to spoil,
                # so unlike a chat turn it is safe to send again.
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
            except OxenError:  # recorded on the reply (a SchemaError on the turn)
                pass
            return

    def _settle(self, index: int, replies: list[AsyncReply | AsyncTurn], *, cancelled: bool) -> None:
        outcome = self.outcomes[index]
        reply = replies[-1] if replies else None
        if reply is not None:
            outcome.user = reply.user_message
            outcome.message = reply.message
            outcome.records, outcome.replies = _row_messages(reply)
        message = outcome.message
        if cancelled:
            outcome.state = "interrupted"
            outcome.error = _CUT_SHORT if reply is not None else _NOT_SENT
        elif message is None:
            outcome.state = "failed"
            outcome.error = self.jobs[index].error or "the row was not sent."
        elif message.finish_reason in ("error", "interrupted"):
            outcome.state = "failed" if message.finish_reason == "error" else "interrupted"
            outcome.error = message.error or _CUT_SHORT
        elif reply is not None and reply.error is not None:  # complete, but it did not validate
            outcome.state = "failed"
            outcome.error = str(reply.error)
        else:
            outcome.state = "done"
            outcome.parsed = reply.parsed if isinstance(reply, AsyncTurn) else None


def _wait(runner: _Runner, progress: bool | Callable[[BatchProgress], Any]) -> None:
    """Run ``runner`` on the background loop; draw progress here; turn Ctrl-C into a stop."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("Session.map cannot be called from a coroutine running a batch.")
    display = make_progress(progress, runner.stats.total)
    future = asyncio.run_coroutine_threadsafe(runner.run(), loop)
    note = None
    try:
        while True:
            try:
                future.result(timeout=0.1)
                break
            except concurrent.futures.TimeoutError:
                display.update(runner.stats)
    except KeyboardInterrupt:
        runner.stop_threadsafe()
        note = "interrupted"
        # A second Ctrl-C: return what is there without waiting for the stragglers.
        with contextlib.suppress(KeyboardInterrupt, concurrent.futures.TimeoutError):
            future.result(timeout=30)
    finally:
        if runner.first_error is not None and note is None:
            note = "stopped at the first error"
        if runner.budget is not None and runner.budget.stopped and note is None:
            note = runner.budget.note()
        display.close(runner.stats, note)


def _prefetch(session: BatchSession, models: set[str]) -> None:
    """Fetch model details and prices before the batch so the loop never blocks on them."""
    if session.cache is not None and session.cache.replaying:
        return  # nothing is sent in replay mode
    for model in models:
        session.catalog.known(model)
        session.ledger.pricing(model)


def _log_batch(session: BatchSession, runner: _Runner) -> str:
    batch_id = new_id()
    entries = [(row, message) for row, outcome in enumerate(runner.outcomes) for message in outcome.records]
    session.batch_log.add(batch_id, entries)
    return batch_id


def execute(
    session: BatchSession,
    jobs: list[Job],
    concurrency: int,
    on_error: str,
    progress: bool | Callable[[BatchProgress], Any],
    stream: bool = False,
    schema: BatchSchema | None = None,
    files: list[Attachment] | None = None,
    budget: Budget | None = None,
) -> _Runner:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ParameterError(f"concurrency={concurrency!r} is invalid: expected a positive integer.")
    if on_error not in ("record", "raise"):
        raise ParameterError(f"on_error={on_error!r} is invalid: expected 'record' or 'raise'.")
    if not isinstance(stream, bool):
        raise ParameterError(f"stream={stream!r} is invalid: expected True or False.")
    for job in jobs:
        validate_params(job.params)
        if schema is not None and job.params.get("response_format"):
            raise ParameterError("give schema= or response_format=, not both.")
    _prefetch(session, {job.model or session.model for job in jobs if job.error is None})
    runner = _Runner(session, jobs, concurrency, on_error, stream, schema, files, budget)
    if jobs:
        try:
            _wait(runner, progress)
        finally:
            runner.batch_id = _log_batch(session, runner)
    if runner.first_error is not None:
        raise runner.first_error
    return runner


# -- map ----------------------------------------------------------------------------------------


def _total(values: list[Any]) -> Any:
    """The sum of what is known (a failed request has no tokens or cost), or ``None``."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def result_columns(
    frame: pd.DataFrame, outcomes: list[_Outcome], schema: BatchSchema | None = None
) -> pd.DataFrame:
    """``frame`` with the schema's columns (if any), then :data:`MAP_COLUMNS`, one row per outcome."""
    import pandas as pd

    values: dict[str, list[Any]] = {name: [] for name in MAP_COLUMNS}
    for outcome in outcomes:
        message = outcome.message
        if outcome.state in ("not sent", "running"):  # never started: the batch was interrupted
            outcome.state, outcome.error = "interrupted", _NOT_SENT
        if message is None:
            message = Message(role="assistant", content="", finish_reason=outcome.state)
            message.finish_reason = "interrupted" if outcome.state == "interrupted" else "error"
        done = outcome.state == "done"
        replies = outcome.replies
        values["reply"].append(message.content if message.content or done else None)
        values["finish_reason"].append(message.finish_reason)
        values["prompt_tokens"].append(_total([m.prompt_tokens for m in replies]))
        values["completion_tokens"].append(_total([m.completion_tokens for m in replies]))
        values["latency_s"].append(_total([m.duration_s for m in replies]))
        values["cost_usd"].append(_total([m.cost_usd for m in replies]))
        values["cached"].append(bool(replies) and all(m.cached for m in replies))
        values["error"].append(None if done else outcome.error)
    if schema is not None:
        parsed = [outcome.parsed if outcome.state == "done" else None for outcome in outcomes]
        for name, column in schema.frame_columns(parsed, frame.index).items():
            frame[name] = column
    dtypes = {"reply": "string", "finish_reason": "string", "prompt_tokens": "Int64",
              "completion_tokens": "Int64", "latency_s": "Float64", "cost_usd": "Float64",
              "cached": "boolean", "error": "string"}  # fmt: skip
    for name in MAP_COLUMNS:
        frame[name] = pd.Series(values[name], index=frame.index, dtype="object").astype(dtypes[name])
    return frame


def run_map(
    session: BatchSession,
    data: Any,
    template: str,
    *,
    concurrency: int = 8,
    on_error: str = "record",
    progress: bool | Callable[[BatchProgress], Any] = True,
    stream: bool = False,
    schema: Any = None,
    max_repairs: int = 1,
    images: list[Any] | None = None,
    files: list[Any] | None = None,
    max_cost_usd: float | None = None,
    **params: Any,
) -> pd.DataFrame:
    """See :meth:`Session.map`. ``stream=True`` streams each row (SSE) instead of reading one
    ``chat.completion`` body per row. ``schema=`` adds a column per field, and ``parsed``, after
    the data's (``_typed.py``); ``max_repairs`` is each row's, as in :meth:`Session.astream`.
    ``images=`` / ``files=`` go with every row: read and encoded once, before any row is sent."""
    attached = attachments(images, files)
    frame, rows, strings = table(data)
    positional = check_template(template, {str(c) for c in frame.columns} | {"text"} if strings
                                 else {str(c) for c in frame.columns}, strings)  # fmt: skip
    typed = None
    if schema is not None:
        typed = BatchSchema(schema, max_repairs)
        typed.check_names(frame.columns, MAP_COLUMNS)
    model = params.pop("model", None)
    jobs = []
    limits = {"rows": session.context_rows, "chars": session.context_chars}
    for row in rows:
        try:
            jobs.append(Job(fill(template, row, positional, **limits), model, dict(params)))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            jobs.append(Job(None, model, dict(params), error=f"the template could not be filled: {exc!r}"))
    budget = make_budget(session, jobs, model, max_cost_usd, params)
    runner = execute(session, jobs, concurrency, on_error, progress, stream, typed, attached, budget)
    if budget is not None:
        budget.mark_unsent(runner.outcomes)
    out = result_columns(frame, runner.outcomes, typed)
    out.attrs["batch_id"] = runner.batch_id
    out.attrs["interrupted"] = runner.interrupted
    spent = out["cost_usd"].dropna()  # the rows' costs, as the ledger priced them
    out.attrs["cost_usd"] = float(spent.sum()) if len(spent) else None
    out.attrs["budget_stopped"] = budget is not None and budget.stopped
    record_run(out, template=template, model=model or session.model, params={**session.defaults, **params},
               batch_id=runner.batch_id)  # fmt: skip
    return out
