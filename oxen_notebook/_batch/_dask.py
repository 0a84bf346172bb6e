"""``Session.map`` over a Dask DataFrame: its partitions, mapped on ``dask.distributed`` workers.

Each partition is a plain ``Session.map`` on the worker that runs it, by a Session made there from
the caller's ``Session.settings`` (one :class:`SessionSettings`: model, defaults, base URL, timeouts,
retries, deadline, schema validation, context limits, the cache's path and mode) and its system
prompt. The API key is not among them: each worker finds its own
(``OXEN_API_KEY`` or the Oxen CLI's config on that machine), so no key is ever in the task graph.

Two cluster-wide objects, both on the scheduler, hold the workers together:

- **Concurrency**: a ``distributed.Semaphore`` with ``concurrency`` leases. A partition takes one
  lease (waiting for it), then up to its share, ``ceil(concurrency / partitions that can run at
  once)``, without waiting; it runs with as many rows in flight as it holds leases and returns
  them when it ends. A row has one request in flight at a time (a retry or a repair comes after
  the one before), so the cluster never has more than ``concurrency`` requests in flight.
- **The 429 pause**: every worker's client sends through :class:`_PausingTransport`, which waits
  while the cluster is paused; a 429 it receives pauses the cluster for its ``Retry-After`` (or
  0.5 s without one), written as a wall-clock time to a ``distributed.Variable`` that every
  partition polls every 50 ms. (The worker's own client pauses too, as on one machine.) Workers on
  several machines need clocks that agree to well under a second.

``map`` returns when every partition is done, with the result persisted on the workers: a Dask
DataFrame whose ``.compute()``, or any further step, never sends the requests again. The
partitions' frames carry the run in ``attrs`` (as a pandas ``map`` result does), so the computed
frame goes straight to ``commit_results``. Ctrl-C sets a stop event: the running partitions see it
at their next poll and stop as ``map`` stops on Ctrl-C, the ones not begun begin with no rows, and
``map`` waits for them before it raises ``KeyboardInterrupt``, so nothing is sent after it. With
``on_error="raise"`` the first failing partition stops the others the same way and its error is
raised here, as the same class. The usage ledger and the batch log of each partition stay on its
worker; the result's columns have every row's tokens and cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from .._client import Client, proxy_for
from .._errors import MissingDependencyError, OxenError, ParameterError
from .._records import new_id
from .._session import Session
from .._settings import SessionSettings
from ._commit import record_run
from ._types import MapOptions

if TYPE_CHECKING:
    import pandas as pd

    from .._attachments import Attachment

__all__ = ["ClusterMap", "ClusterSession", "map_dask", "plan_dask_map"]

_POLL_S = 0.05  # how often a partition reads the cluster's pause and stop
_RPC_TIMEOUT_S = 5.0
_MAX_PAUSE_S = 60.0
_STOP_WAIT_S = 30.0  # how long a stopped map waits for its running partitions
_DEFAULT_PAUSE_S = 0.5  # a 429 without Retry-After (the client's first backoff)


class ClusterSession(Protocol):
    """What the cluster path reads of the caller's Session."""

    system: str | None
    settings: SessionSettings

    def map(self, data: Any, template: str, **kwargs: Any) -> pd.DataFrame: ...


# -- what every partition takes (picklable, and without the key) ---------------------------------


def _worker_session(settings: SessionSettings, system: str | None, pause: _ClusterPause) -> Session:
    """A worker's Session: the caller's settings and system prompt, but the key found here."""
    session = Session.from_settings(settings, system)
    # The hosted API through the cluster's pause; the key is looked up on this worker.
    transport = _PausingTransport(pause, session.base_url)
    session.clients.hosted = Client(
        session.base_url,
        async_transport=transport,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=settings.max_retries,
        deadline=settings.deadline,
    )
    return session


def _map(
    session: ClusterSession,
    data: Any,
    template: str,
    plan: _Plan,
    concurrency: int,
    progress: Any,
) -> pd.DataFrame:
    """``session.map`` as the plan says, ``concurrency`` rows at a time."""
    options = plan.options
    return session.map(
        data,
        template,
        concurrency=concurrency,
        progress=progress,
        on_error=options.on_error,
        stream=options.stream,
        schema=options.schema,
        max_repairs=options.max_repairs,
        files=plan.files,
        **plan.params,
    )


@dataclass(frozen=True)
class _Plan:
    settings: SessionSettings
    system: str | None
    template: str
    options: MapOptions  # on_error, stream, schema, max_repairs (the rest is the caller's)
    files: list[Attachment] | None
    params: dict[str, Any]  # the call's, model included
    semaphore: Any  # distributed.Semaphore: pickled as its name and size
    share: int
    pause: str  # the names of the Variable and the Event
    stop: str
    batch_id: str


# -- on a worker ---------------------------------------------------------------------------------


def _retry_after(headers: httpx.Headers) -> float:
    """How long a 429 pauses the cluster: ``retry-after-ms``, ``Retry-After`` (seconds or a date),
    or the client's first backoff."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if 0 <= seconds <= _MAX_PAUSE_S:
            return seconds
    return _DEFAULT_PAUSE_S


class _ClusterPause:
    """A partition's view of the cluster's pause and stop, read every ``_POLL_S`` in a thread."""

    def __init__(self, variable: Any, event: Any) -> None:
        self.until = 0.0  # time.time() before which nothing is sent
        self.stopped = False
        self._variable = variable
        self._event = event
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="oxen-cluster-pause", daemon=True)

    def __enter__(self) -> _ClusterPause:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=_RPC_TIMEOUT_S)

    def _watch(self) -> None:
        while not self._done.wait(_POLL_S):
            try:
                self.until = max(self.until, float(self._variable.get(timeout=_RPC_TIMEOUT_S)))
                self.stopped = self.stopped or bool(self._event.is_set())
            except Exception:  # the scheduler is busy or gone: keep what is known, try again
                continue

    def pause(self, seconds: float) -> None:
        """Pause this partition now and every other one at its next poll."""
        until = time.time() + seconds
        if until <= self.until:
            return
        self.until = until
        threading.Thread(target=self._publish, args=(until,), daemon=True).start()

    def _publish(self, until: float) -> None:
        with contextlib.suppress(Exception):  # this partition pauses anyway; the others: at the next 429
            self._variable.set(max(until, self.until), timeout=_RPC_TIMEOUT_S)

    async def wait(self) -> None:
        while (left := self.until - time.time()) > 0:
            await asyncio.sleep(left)

    def check(self, _stats: Any) -> None:
        """The partition's progress callback: a stop from the caller stops it as Ctrl-C would."""
        if self.stopped:
            raise KeyboardInterrupt


class _PausingTransport(httpx.AsyncBaseTransport):
    """httpx's transport, but it waits out the cluster's pause and spreads a 429's. It goes through
    the proxy the environment names for ``base_url``, as httpx's own transport would."""

    def __init__(self, pause: _ClusterPause, base_url: str) -> None:
        self._pause = pause
        self._proxy = proxy_for(base_url)
        self._inner: httpx.AsyncHTTPTransport | None = None  # made on the loop that uses it

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._pause.wait()
        if self._inner is None:
            self._inner = httpx.AsyncHTTPTransport(proxy=self._proxy)
        response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            self._pause.pause(_retry_after(response.headers))
        return response

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.aclose()


class _Raised(Exception):
    """An OxenError on its way from a worker: rebuilt as the same class, whatever its constructor."""

    def rebuild(self) -> OxenError:
        cls, message, state = self.args
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        error.__dict__.update(state)
        return error


def _take_leases(semaphore: Any, share: int) -> int:
    semaphore.acquire()
    leases = 1
    while leases < share and semaphore.acquire(timeout=0):
        leases += 1
    return leases


def _map_partition(part: pd.DataFrame, plan: _Plan) -> pd.DataFrame:
    """One partition, on a worker: its leases, its Session, ``Session.map``."""
    from distributed import Event, Variable, get_client

    client = get_client()
    stop = Event(plan.stop, client=client)
    leases = _take_leases(plan.semaphore, plan.share)
    try:
        if stop.is_set():  # the caller stopped the map before this partition began: send nothing
            part = part.iloc[:0]
        with _ClusterPause(Variable(plan.pause, client=client), stop) as pause:
            session = _worker_session(plan.settings, plan.system, pause)
            try:
                out = _map(session, part, plan.template, plan, leases, pause.check)
            except OxenError as exc:
                raise _Raised(type(exc), str(exc), dict(vars(exc))) from None
            finally:
                session.close()
    finally:
        for _ in range(leases):
            plan.semaphore.release()
    # The same attrs on every partition (pandas keeps only attrs that agree when .compute() concatenates
    # them): the run and its batch id, not this partition's cost or its own batch id.
    out.attrs.clear()
    params = {k: v for k, v in plan.params.items() if k != "model"}
    model = plan.params.get("model") or plan.settings.model
    record_run(
        out,
        template=plan.template,
        model=model,
        params={**plan.settings.defaults, **params},
        batch_id=plan.batch_id,
    )
    out.attrs["batch_id"] = plan.batch_id
    return out


# -- on the caller's machine ---------------------------------------------------------------------


def _distributed() -> Any:
    try:
        import dask.dataframe  # noqa: F401  (a Dask DataFrame needs it; so does make_meta)
        import distributed
    except ImportError:
        raise MissingDependencyError(
            'map over a Dask DataFrame needs dask.distributed: pip install "oxen-notebook[dask]".'
        ) from None
    return distributed


def _dask_client(distributed: Any) -> Any:
    try:
        return distributed.get_client()
    except ValueError:
        raise ParameterError(
            "map over a Dask DataFrame runs on a dask.distributed cluster: start a client first "
            "(from dask.distributed import Client; client = Client()), or .compute() the frame."
        ) from None


def plan_dask_map(
    session: ClusterSession,
    data: Any,
    template: str,
    options: MapOptions,
    files: list[Attachment] | None,
    params: dict[str, Any],
) -> ClusterMap:
    """The map as a lazy collection, checked before anything is sent (an empty ``map`` of the
    frame's meta checks the template and options, and gives the result's columns and dtypes)."""
    distributed = _distributed()
    from dask.dataframe.utils import make_meta

    client = _dask_client(distributed)
    batch_id = new_id()
    name = f"oxen-notebook-map-{batch_id}"
    concurrency = options.concurrency
    threads = sum(client.nthreads().values()) or 1
    plan = _Plan(
        settings=session.settings,
        system=session.system,
        template=template,
        options=options,
        files=files or None,
        params=dict(params),
        semaphore=None,
        share=0,  # set below, once the meta's map checked the concurrency
        pause=f"{name}-pause",
        stop=f"{name}-stop",
        batch_id=batch_id,
    )
    meta = _map(session, make_meta(data), template, plan, concurrency, False)
    share = math.ceil(concurrency / max(1, min(threads, data.npartitions)))
    plan = replace(plan, semaphore=distributed.Semaphore(max_leases=concurrency, name=name), share=share)
    distributed.Variable(plan.pause, client=client).set(0.0)
    return ClusterMap(data.map_partitions(_map_partition, plan, meta=meta, token=name), client, plan)


@dataclass(frozen=True)
class ClusterMap:
    """A planned map: ``collection`` (lazy), the dask ``client`` it runs on, and its plan."""

    collection: Any
    client: Any
    plan: _Plan

    def run(self, progress: bool) -> Any:
        """Compute and persist the collection; stop the cluster's partitions on Ctrl-C or an error."""
        import distributed

        client, plan = self.client, self.plan
        persisted = client.persist(self.collection)
        futures = distributed.futures_of(persisted)
        try:
            if progress:
                distributed.progress(persisted)
            for future in distributed.as_completed(futures):
                if future.status == "error":  # the first failed partition stops the others
                    error = future.exception()
                    raise error.rebuild() if isinstance(error, _Raised) else error
        except BaseException:
            # Stop the running partitions (at their next poll) and wait for them, so that nothing
            # is sent once this raises; the partitions not begun yet begin with no rows.
            distributed.Event(plan.stop, client=client).set()
            with contextlib.suppress(KeyboardInterrupt, TimeoutError):  # a second Ctrl-C: go now
                distributed.wait(futures, timeout=_STOP_WAIT_S)
            client.cancel(futures)
            raise
        plan.semaphore.close()
        distributed.Variable(plan.pause, client=client).delete()
        return persisted


def map_dask(
    session: ClusterSession,
    data: Any,
    template: str,
    options: MapOptions,
    files: list[Attachment] | None,
    params: dict[str, Any],
) -> Any:
    """See the module's docstring: the mapped Dask DataFrame, computed and persisted."""
    if options.checkpoint is not None:
        raise ParameterError(
            "checkpoint= is for a map on one machine; a Dask DataFrame's result stays on the cluster: "
            "write it with .to_parquet(...)."
        )
    if options.max_cost_usd is not None:
        raise ParameterError("max_cost_usd= is not supported with a Dask DataFrame: leave it out.")
    progress = options.progress
    if callable(progress) and not isinstance(progress, bool):
        raise ParameterError("progress= is True (Dask's progress bar) or False with a Dask DataFrame.")
    return plan_dask_map(session, data, template, options, files, params).run(bool(progress))
