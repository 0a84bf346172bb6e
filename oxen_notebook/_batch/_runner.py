"""Running a batch's rows: at most ``concurrency`` in flight, on one background event loop.

Rows run as ``history=False`` replies on the async path (``Session.astream``), on one background
event loop in a daemon thread. Rows are sent unstreamed (``"stream": false``) unless ``stream=True``:
nobody watches them stream, and a whole ``chat.completion`` body carries ``usage`` even on servers
that ignore ``stream_options`` (llama-cpp-python's), and cannot be cut short by a server that
cancels a running stream when another request arrives (that one too). The caller's thread only
waits and draws progress (:func:`run_blocking`), so ``map`` is a plain blocking call in a Jupyter
cell (whose own loop is already running) without nesting loops, and a kernel interrupt
(``KeyboardInterrupt`` in the waiting thread) cancels the requests in flight and returns the rows
that finished. The client's shared 429 pause holds every worker.

With ``schema=`` a row is an ``AsyncTurn``: its reply, and a repair request when the reply does not
validate. Every request of the row is in the batch log, and the row's tokens, latency and cost are
their sums.

Rows come from a list of :class:`Job` (every :class:`Outcome` kept in order) or an iterator of
``(position, Job)``, taken one at a time as a worker frees up (:meth:`Runner._next_row`, the one
place a row starts); with a :class:`RowSink` (a checkpoint's next Parquet part) each finished row
goes there and is dropped, so memory holds the rows in flight and one part.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._ask import Ask
from .._client import aiohttp_connections
from .._errors import CacheMissError, OxenError, ParameterError, StreamError
from .._records import Message
from .._turn import AsyncTurn
from ._progress import BatchProgress, make_progress
from ._types import NOT_SENT, BatchSession, Job, Outcome, RowSink

if TYPE_CHECKING:
    from .._attachments import Attachment
    from .._reply import AsyncReply
    from ._budget import Budget
    from ._typed import BatchSchema

__all__ = ["Runner", "check_options", "prefetch", "run_blocking"]

_CUT_SHORT = "interrupted before the reply finished"
_AIOHTTP_ROWS = 100
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


class Runner:
    """Runs the rows with at most ``concurrency`` in flight. For a list of jobs every outcome is
    kept in order (``outcomes``); for an iterator of ``(position, job)`` with a ``sink`` (a
    checkpoint) each finished row goes there and is dropped."""

    def __init__(
        self,
        session: BatchSession,
        jobs: list[Job] | Iterator[tuple[int, Job]],
        concurrency: int,
        on_error: str,
        stream: bool = False,
        schema: BatchSchema | None = None,
        files: list[Attachment] | None = None,
        budget: Budget | None = None,
        *,
        total: int | None = None,
        models: set[str | None] | None = None,
        sink: RowSink | None = None,
    ) -> None:
        self.session = session
        self.budget = budget  # max_cost_usd=: the gate rows start through
        self.stream = stream
        # What every row's request takes besides its prompt: the schema, the attachments.
        self.schema = schema
        self.files = tuple(files or ())
        self.outcomes: list[Outcome] = []
        if isinstance(jobs, list):
            total, models = len(jobs), {job.model for job in jobs}
            self.outcomes = [Outcome() for _ in jobs]
            jobs = enumerate(jobs)
        self._rows = jobs
        self._pending: tuple[int, Job] | None = None  # taken from the rows, not started yet
        self.models = models or {None}
        self.sink = sink
        self.concurrency = concurrency
        self.on_error = on_error
        self.stats = BatchProgress(total=total)
        self.first_error: OxenError | None = None
        self.failure: BaseException | None = None  # the data or the checkpoint failed: raised after
        self.interrupted = False
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retries = session.client().max_retries
        self.batch_id = ""

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self.session
        clients = {session.client(model) for model in self.models}
        for client in clients:
            _active[id(client)] = _active.get(id(client), 0) + 1
        total = self.stats.total
        # A checkpoint's total is a guess until its data is read (its finished rows are not sent).
        workers = self.concurrency if total is None or self.sink is not None else min(self.concurrency, total)
        # aiohttp's pool takes half httpx's CPU per request, but ~0.1 s to import: for many rows.
        # The rows' tasks inherit the choice; their clients are closed below.
        with aiohttp_connections(total is None or total >= _AIOHTTP_ROWS):
            self._tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]
        ticker = asyncio.create_task(self._tick()) if self.sink is not None else None
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.stats.ended = self.stats.ended or time.perf_counter()
            if ticker is not None:
                ticker.cancel()
                self._store(self.sink.close)  # the rows finished since the last part
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

    def _store(self, write: Callable[[], Any]) -> None:
        """Write to the checkpoint; if that fails, stop the batch and raise the error after it."""
        try:
            write()
        except Exception as exc:
            self.failure = self.failure or exc
            self._stop()

    async def _tick(self) -> None:
        """Write finished rows that have waited long enough, though no row finishes."""
        assert self.sink is not None
        while True:
            await asyncio.sleep(0.25)
            if self.sink.due():
                self._store(self.sink.flush)

    async def _next_row(self) -> tuple[int, Job] | None:
        """The next row to start, or ``None``: start no more. The one place a row starts."""
        while not self._stopping:
            if self._pending is None:
                try:
                    self._pending = next(self._rows)
                except StopIteration:
                    return None
                except Exception as exc:  # the data failed (a generator raised): no more start
                    self.failure = self.failure or exc
                    self._stopping = True  # the rows in flight finish
                    return None
            index, _ = self._pending
            if self.budget is not None and not self.budget.admit(index):
                if await self.budget.wait():
                    continue  # a row in flight finished: look again
                return None  # nothing in flight and the row does not fit: no more start
            taken, self._pending = self._pending, None
            return taken
        return None

    async def _worker(self) -> None:
        while (taken := await self._next_row()) is not None:
            index, job = taken
            outcome = self.outcomes[index] if self.outcomes else Outcome()
            outcome.state = "running"
            reply: list[AsyncReply | AsyncTurn] = []
            try:
                await self._row(job, reply)
            except asyncio.CancelledError:
                self._settle(job, outcome, reply, cancelled=True)
                return
            self._settle(job, outcome, reply, cancelled=False)
            if self.budget is not None:
                self.budget.finished(index, outcome.replies)
            self.stats.done += 1
            if self.sink is not None:
                self._store(lambda: self.sink.add(index, job, outcome))  # noqa: B023 (called at once)
            if outcome.state == "failed":
                self.stats.failed += 1
                if self.on_error == "raise" and self.first_error is None:
                    error = reply[-1].error if reply else None
                    error = error.at_row(index) if isinstance(error, CacheMissError) else error
                    self.first_error = error or ParameterError(outcome.error or "the row failed.")
                    self._stop()

    async def _row(self, job: Job, reply: list[AsyncReply | AsyncTurn]) -> None:
        if job.error is not None:
            return
        try:
            ask = self.ask_for(job)
        except OxenError as exc:
            job.error = str(exc)
            return
        attempt = 0
        while True:
            try:
                current = self.session.astream_ask(ask)
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

    def ask_for(self, job: Job) -> Ask:
        """The row's request, made (its parameters validated) once, whatever retries follow."""
        assert job.prompt is not None
        schema = self.schema
        return Ask.make(
            job.prompt,
            params=job.params,
            defaults=self.session.defaults,
            files=self.files or None,
            model=job.model,
            schema=schema.output if schema is not None else None,
            max_repairs=schema.max_repairs if schema is not None else 1,
            history=False,
            source="batch",
            system=job.system,
        )

    def _settle(
        self, job: Job, outcome: Outcome, replies: list[AsyncReply | AsyncTurn], *, cancelled: bool
    ) -> None:
        reply = replies[-1] if replies else None
        if reply is not None:
            outcome.user = reply.user_message
            outcome.message = reply.message
            outcome.records, outcome.replies = _row_messages(reply)
        message = outcome.message
        if cancelled:
            outcome.state = "interrupted"
            outcome.error = _CUT_SHORT if reply is not None else NOT_SENT
        elif message is None:
            outcome.state = "failed"
            outcome.error = job.error or "the row was not sent."
        elif message.finish_reason in ("error", "interrupted"):
            outcome.state = "failed" if message.finish_reason == "error" else "interrupted"
            outcome.error = message.error or _CUT_SHORT
        elif reply is not None and reply.error is not None:  # complete, but it did not validate
            outcome.state = "failed"
            outcome.error = str(reply.error)
        else:
            outcome.state = "done"
            outcome.parsed = reply.parsed if isinstance(reply, AsyncTurn) else None


def run_blocking(runner: Runner, progress: bool | Callable[[BatchProgress], Any]) -> None:
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
    except BaseException:  # the progress callback failed: stop the rows (a checkpoint keeps its part)
        runner.stop_threadsafe()
        with contextlib.suppress(BaseException):
            future.result(timeout=30)
        raise
    finally:
        if (runner.first_error is not None or runner.failure is not None) and note is None:
            note = "stopped at the first error"
        if runner.budget is not None and runner.budget.stopped and note is None:
            note = runner.budget.note()
        display.close(runner.stats, note)


def prefetch(session: BatchSession, models: set[str]) -> None:
    """Fetch model details and prices before the batch so the loop never blocks on them."""
    if session.cache is not None and session.cache.replaying:
        return  # nothing is sent in replay mode
    for model in models:
        session.catalog.known(model)
        session.ledger.pricing(model)


def check_options(concurrency: Any, on_error: Any, stream: Any) -> None:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ParameterError(f"concurrency={concurrency!r} is invalid: expected a positive integer.")
    if on_error not in ("record", "raise"):
        raise ParameterError(f"on_error={on_error!r} is invalid: expected 'record' or 'raise'.")
    if not isinstance(stream, bool):
        raise ParameterError(f"stream={stream!r} is invalid: expected True or False.")
