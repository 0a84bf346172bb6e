"""``Session.map`` and ``Session.compare``: many one-shot requests, concurrently, in order.

Rows run as ``history=False`` replies on the async path (``Session.astream``), on one background
event loop in a daemon thread. The caller's thread only waits and draws progress, so ``map`` is a
plain blocking call in a Jupyter cell (whose own loop is already running) without nesting loops,
and a kernel interrupt (``KeyboardInterrupt`` in the waiting thread) cancels the requests in
flight and returns the rows that finished. The client's shared 429 pause holds every worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import OxenError, ParameterError, StreamError
from ._params import validate_params
from ._progress import BatchProgress, make_progress
from ._records import Message, messages_to_dataframe, new_id

if TYPE_CHECKING:
    import pandas as pd

    from ._reply import AsyncReply
    from ._session import Session

__all__ = ["MAP_COLUMNS", "batch_log_frame", "run_map"]

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


async def _release(client: Any) -> None:
    """Close the client's connections on this loop: a Session may be gone before the next batch."""
    with client._lock:
        http = client._async_clients.pop(id(asyncio.get_running_loop()), None)
    if http is not None:
        await http.aclose()


@dataclass
class _Job:
    prompt: str | None
    model: str | None
    params: dict[str, Any]
    error: str | None = None  # the row could not be made into a request


@dataclass
class _Outcome:
    user: Message | None = None
    message: Message | None = None
    error: str | None = None
    state: str = "not sent"  # done, failed, interrupted, not sent


class _Runner:
    """Runs the jobs with at most ``concurrency`` in flight; ``outcomes`` keeps their order."""

    def __init__(self, session: Session, jobs: list[_Job], concurrency: int, on_error: str) -> None:
        self.session = session
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
        self._retries = int(session._client_options["max_retries"])
        self.batch_id = ""

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self.session
        clients = {session._client_for(job.model or session.model) for job in self.jobs}
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
                    await _release(client)

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
            self._next += 1
            outcome = self.outcomes[index]
            outcome.state = "running"
            reply: list[AsyncReply] = []
            try:
                await self._row(index, reply)
            except asyncio.CancelledError:
                self._settle(index, reply, cancelled=True)
                return
            self._settle(index, reply, cancelled=False)
            self.stats.done += 1
            if outcome.state == "failed":
                self.stats.failed += 1
                if self.on_error == "raise" and self.first_error is None:
                    error = reply[-1].error if reply else None
                    self.first_error = error or ParameterError(outcome.error or "the row failed.")
                    self._stop()

    async def _row(self, index: int, reply: list[AsyncReply]) -> None:
        job = self.jobs[index]
        if job.error is not None:
            return
        assert job.prompt is not None
        attempt = 0
        while True:
            try:
                current = self.session.astream(
                    job.prompt, history=False, source="batch", model=job.model, **job.params
                )
            except OxenError as exc:
                job.error = str(exc)
                return
            reply.append(current)
            try:
                await current.consume()
            except StreamError:
                # The stream broke after it started: a one-shot row has no history to spoil, so
                # unlike a chat turn it is safe to send again.
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
            except OxenError:
                pass
            return

    def _settle(self, index: int, replies: list[AsyncReply], *, cancelled: bool) -> None:
        outcome = self.outcomes[index]
        reply = replies[-1] if replies else None
        if reply is not None:
            outcome.user = reply.user_message
            outcome.message = reply.message
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
        else:
            outcome.state = "done"


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
        display.close(runner.stats, note)


def _prefetch(session: Session, models: set[str]) -> None:
    """Fetch schemas and prices before the batch so the loop never blocks on them."""
    for model in models:
        session._schema(model)
        session._usage.pricing(session, model)


def _log_batch(session: Session, runner: _Runner) -> str:
    batch_id = new_id()
    entries = []
    for row, outcome in enumerate(runner.outcomes):
        for message in (outcome.user, outcome.message):
            if message is not None:
                message.conversation_id = batch_id
                message.turn = row + 1
                entries.append((batch_id, row, message))
    with session._state:
        session._batch_log.extend(entries)
    return batch_id


def _execute(
    session: Session,
    jobs: list[_Job],
    concurrency: int,
    on_error: str,
    progress: bool | Callable[[BatchProgress], Any],
) -> _Runner:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ParameterError(f"concurrency={concurrency!r} is invalid: expected a positive integer.")
    if on_error not in ("record", "raise"):
        raise ParameterError(f"on_error={on_error!r} is invalid: expected 'record' or 'raise'.")
    for job in jobs:
        validate_params(job.params)
    _prefetch(session, {job.model or session.model for job in jobs if job.error is None})
    runner = _Runner(session, jobs, concurrency, on_error)
    if jobs:
        try:
            _wait(runner, progress)
        finally:
            runner.batch_id = _log_batch(session, runner)
    if runner.first_error is not None:
        raise runner.first_error
    return runner


# -- templates and data -------------------------------------------------------------------------


def _fields(template: str) -> tuple[set[str], bool]:
    """The named fields a template uses, and whether it has positional ones (``{}``, ``{0}``)."""
    names: set[str] = set()
    positional = False
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ParameterError(f"the template is not a valid format string: {exc}.") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = name.split(".")[0].split("[")[0]
        if root == "" or root.isdigit():
            positional = True
        else:
            names.add(root)
    return names, positional


def _table(data: Any) -> tuple[pd.DataFrame, list[dict[str, Any]], bool]:
    """The data as a DataFrame, its rows as dicts, and whether rows are bare strings."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data.copy()
        return frame, frame.to_dict(orient="records"), False
    if isinstance(data, pd.Series):
        name = data.name if isinstance(data.name, str) else "text"
        frame = data.to_frame(name)
        return frame, [{name: v, "text": v} for v in data.tolist()], True
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise ParameterError(
            f"data must be a DataFrame, a list of dicts or a list of strings; got {type(data).__name__}."
        )
    items = list(data)
    if all(isinstance(item, str) for item in items):
        return pd.DataFrame({"text": items}), [{"text": item} for item in items], True
    if all(isinstance(item, dict) for item in items):
        return pd.DataFrame(items), [dict(item) for item in items], False
    raise ParameterError("data must be a list of all dicts or all strings, not a mix.")


def _fill(template: str, row: dict[str, Any], positional: bool) -> str:
    args = (row["text"],) if positional else ()
    return template.format(*args, **{str(k): v for k, v in row.items()})


def _check_template(template: str, columns: set[str], strings: bool) -> bool:
    if not isinstance(template, str) or not template.strip():
        raise ParameterError("template is empty: give a prompt such as 'Classify: {text}'.")
    names, positional = _fields(template)
    if positional and not strings:
        raise ParameterError(
            "the template uses {} but the rows have named columns: name the column, as in {review}."
        )
    missing = sorted(names - columns)
    if missing:
        raise ParameterError(
            f"the template uses {', '.join('{' + m + '}' for m in missing)} but the data has no such "
            f"column; columns: {', '.join(sorted(columns)) or 'none'}."
        )
    return positional


# -- map ----------------------------------------------------------------------------------------


def _result_columns(frame: pd.DataFrame, outcomes: list[_Outcome]) -> pd.DataFrame:
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
        values["reply"].append(message.content if message.content or done else None)
        values["finish_reason"].append(message.finish_reason)
        values["prompt_tokens"].append(message.prompt_tokens)
        values["completion_tokens"].append(message.completion_tokens)
        values["latency_s"].append(message.duration_s)
        values["cost_usd"].append(message.cost_usd)
        values["cached"].append(message.cached)
        values["error"].append(None if done else outcome.error)
    dtypes = {"reply": "string", "finish_reason": "string", "prompt_tokens": "Int64",
              "completion_tokens": "Int64", "latency_s": "Float64", "cost_usd": "Float64",
              "cached": "boolean", "error": "string"}  # fmt: skip
    for name in MAP_COLUMNS:
        frame[name] = pd.Series(values[name], index=frame.index, dtype="object").astype(dtypes[name])
    return frame


def run_map(
    session: Session,
    data: Any,
    template: str,
    *,
    concurrency: int = 8,
    on_error: str = "record",
    progress: bool | Callable[[BatchProgress], Any] = True,
    **params: Any,
) -> pd.DataFrame:
    """See :meth:`Session.map`."""
    frame, rows, strings = _table(data)
    positional = _check_template(template, {str(c) for c in frame.columns} | {"text"} if strings
                                 else {str(c) for c in frame.columns}, strings)  # fmt: skip
    model = params.pop("model", None)
    jobs = []
    for row in rows:
        try:
            jobs.append(_Job(_fill(template, row, positional), model, dict(params)))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            jobs.append(_Job(None, model, dict(params), error=f"the template could not be filled: {exc!r}"))
    runner = _execute(session, jobs, concurrency, on_error, progress)
    out = _result_columns(frame, runner.outcomes)
    out.attrs["batch_id"] = runner.batch_id
    out.attrs["interrupted"] = runner.interrupted
    return out


# -- the batch log ------------------------------------------------------------------------------


def batch_log_frame(session: Session) -> pd.DataFrame:
    """Every message ``map``/``compare`` sent and received, with ``batch_id`` and ``row`` first."""
    with session._state:
        entries = list(session._batch_log)
    frame = messages_to_dataframe([message for _, _, message in entries])
    frame.insert(0, "row", [row for _, row, _ in entries])
    frame.insert(0, "batch_id", [batch for batch, _, _ in entries])
    return frame.astype({"batch_id": "string", "row": "Int64"})
