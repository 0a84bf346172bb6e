"""Session.map over a Dask DataFrame, on a LocalCluster of 2 worker processes, against the fake API.

The fake API runs in this process; the workers reach it with ``OXEN_BASE_URL`` and find the key in
``OXEN_API_KEY``, both in their environment only.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time

import dask.dataframe as dd
import distributed
import pandas as pd
import pytest

from oxen_notebook import BadRequestError, ParameterError, Session
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script, _prompt_text


@pytest.fixture(scope="module")
def api():
    with FakeAPI() as server:
        yield server.track_in_flight()


@pytest.fixture(scope="module")
def cluster(api, tmp_path_factory):
    env = {"OXEN_API_KEY": TEST_KEY, "OXEN_BASE_URL": api.base_url,
           "OXEN_CONFIG_DIR": str(tmp_path_factory.mktemp("worker-oxen-config"))}  # fmt: skip
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", env=env
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture
def fresh(api):
    api.reset()
    api.reset_in_flight()
    yield api
    api.reset()


def _session(api, model: str = "test-model") -> Session:
    return Session(model=model, base_url=api.base_url, api_key=TEST_KEY, timeout=10.0)


def _graphs_sent(monkeypatch) -> list[bytes]:
    """Every task graph the client sends to the scheduler, as the bytes that go on the wire."""
    sent: list[bytes] = []
    original = distributed.Client._send_to_scheduler

    def spy(self, msg):
        if msg.get("op") == "update-graph":
            serialized = msg["expr_ser"]
            sent.append(
                b"".join(bytes(frame) for frame in serialized.frames) + repr(serialized.header).encode()
            )
        return original(self, msg)

    monkeypatch.setattr(distributed.Client, "_send_to_scheduler", spy)
    return sent


@pytest.mark.cluster
def test_ten_thousand_rows_on_two_workers_in_order_within_concurrency(fresh, cluster, monkeypatch):
    graphs = _graphs_sent(monkeypatch)
    fresh.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=0.002)
    rows = [f"row {i}" for i in range(10_000)]
    ddf = dd.from_pandas(pd.DataFrame({"text": rows}), npartitions=7)  # of unequal sizes and costs
    s = _session(fresh, model="cheap-model")

    t0 = time.perf_counter()
    out = s.map(ddf, "Say {text}", concurrency=8, progress=False)
    elapsed = time.perf_counter() - t0

    assert isinstance(out, dd.DataFrame)
    assert len(fresh.chat_requests()) == 10_000  # all sent before map returned
    holders = {worker for workers in cluster.who_has(out).values() for worker in workers}
    assert len(holders) == 2  # persisted on both workers
    frame = out.compute()
    assert len(fresh.chat_requests()) == 10_000  # .compute() sends nothing again
    assert frame.index.tolist() == list(range(10_000))
    assert frame["text"].tolist() == rows
    assert frame["reply"].tolist() == [f"Echo: Say row {i}" for i in range(10_000)]
    assert frame["error"].isna().all() and set(frame["finish_reason"]) == {"stop"}
    assert (frame["completion_tokens"] == 4).all()
    assert frame["cost_usd"].notna().all()
    # The run, as commit_results reads it: the same on every partition, so .compute() keeps it.
    assert frame.attrs == {"oxen_notebook": {"template": "Say {text}", "model": "cheap-model", "params": {},
                                             "batch_id": frame.attrs["batch_id"]},
                           "batch_id": frame.attrs["batch_id"]}  # fmt: skip
    # A partition holds at most ceil(8 / 2) = 4 leases: more than 4 at once is both workers sending.
    assert 4 < fresh.max_in_flight <= 8, fresh.max_in_flight
    # The key stays on this machine and in the workers' environment, never in a task graph.
    assert graphs and all(b"Say {text}" in graph for graph in graphs)
    assert not any(TEST_KEY.encode() in graph for graph in graphs)
    print(f"10,000 rows on 2 workers: {elapsed:.1f} s, at most {fresh.max_in_flight} in flight")


@pytest.mark.cluster
def test_a_429_pauses_every_worker(fresh, cluster):
    count = itertools.count(1)
    storm: list[float] = []
    lock = threading.Lock()

    def handler(body):
        with lock:
            n = next(count)
        if n == 300:
            storm.append(time.monotonic())
            return Script(status=429, headers={"Retry-After": "1"}, error={"error": {"message": "slow down"}})
        return Script(text=f"Echo: {_prompt_text(body)}", latency=0.01)

    fresh.handler = handler
    rows = [f"{i}" for i in range(1000)]
    ddf = dd.from_pandas(pd.DataFrame({"text": rows}), npartitions=2)  # one per worker, both running
    frame = _session(fresh).map(ddf, "{text}", concurrency=8, progress=False).compute()

    assert frame["reply"].tolist() == [f"Echo: {i}" for i in range(1000)]
    assert len(storm) == 1
    start = storm[0]
    arrivals = [(r["time"], int(_prompt_text(r["body"]))) for r in fresh.requests if r["body"]]
    before = {row < 500 for t, row in arrivals if start - 0.2 < t < start}
    assert before == {True, False}  # both partitions (one per worker) were sending when it came
    # Requests already on their way may arrive just after; none was sent in the pause.
    during = [row for t, row in arrivals if start + 0.2 < t < start + 0.9]
    assert during == [], f"{len(during)} requests arrived during the cluster's Retry-After pause"
    after = {row < 500 for t, row in arrivals if start + 0.9 <= t < start + 1.5}
    assert after == {True, False}  # and both went on after it
    assert fresh.max_in_flight <= 8


@pytest.mark.cluster
def test_on_error_raise_stops_the_cluster_with_the_same_error(fresh, cluster):
    def handler(body):
        if _prompt_text(body) == "row 7":
            return Script(
                status=400, error={"error": {"type": "invalid_params", "title": "Bad", "detail": "no"}}
            )
        return Script(text="ok", latency=0.01)

    fresh.handler = handler
    ddf = dd.from_pandas(pd.DataFrame({"text": [f"row {i}" for i in range(400)]}), npartitions=2)
    with pytest.raises(BadRequestError) as caught:
        _session(fresh).map(ddf, "{text}", concurrency=4, on_error="raise", progress=False)
    assert "\n" not in str(caught.value) and "no" in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.cluster
def test_ctrl_c_stops_every_worker_before_map_raises(fresh, cluster):
    fresh.handler = lambda body: Script(text="ok", latency=0.05)
    ddf = dd.from_pandas(pd.DataFrame({"text": [f"row {i}" for i in range(4000)]}), npartitions=4)
    interrupted: list[float] = []

    def interrupt_once_rows_flow() -> None:
        while len(fresh.chat_requests()) < 100:
            time.sleep(0.01)
        interrupted.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_rows_flow, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _session(fresh).map(ddf, "{text}", concurrency=8, progress=False)
    raised = time.monotonic()
    assert raised - interrupted[0] < 2  # the partitions stopped at their next poll, then map raised
    sent = len(fresh.chat_requests())
    time.sleep(0.5)
    assert len(fresh.chat_requests()) == sent  # nothing is sent once map has raised
    assert sent < 400  # 4000 rows: the rest never went
    assert all(r["time"] < raised for r in fresh.requests)


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"checkpoint": "runs/x"}, "checkpoint= is for a map on one machine; a Dask DataFrame's result stays "
         "on the cluster: write it with .to_parquet(...)."),
        ({"max_cost_usd": 1.0}, "max_cost_usd= is not supported with a Dask DataFrame: leave it out."),
        ({"progress": print}, "progress= is True (Dask's progress bar) or False with a Dask DataFrame."),
        ({"concurrency": 0}, "concurrency=0 is invalid: expected a positive integer."),
    ],
)  # fmt: skip
def test_what_a_cluster_map_refuses_is_one_line_and_nothing_is_sent(fresh, cluster, options, error):
    ddf = dd.from_pandas(pd.DataFrame({"text": ["a", "b"]}), npartitions=1)
    with pytest.raises(ParameterError) as caught:
        _session(fresh).map(ddf, "{text}", **options)
    assert str(caught.value) == error
    assert fresh.requests == []


@pytest.mark.cluster
def test_a_template_field_missing_from_the_dask_frame_is_refused_before_sending(fresh, cluster):
    ddf = dd.from_pandas(pd.DataFrame({"text": ["a"]}), npartitions=1)
    with pytest.raises(ParameterError, match=r"the template uses \{review\}"):
        _session(fresh).map(ddf, "Classify {review}", progress=False)
    assert fresh.requests == []


def test_importing_the_package_imports_neither_dask_nor_oxen():
    code = (
        "import sys, oxen_notebook, oxen_notebook._batch; "
        "print(sorted(m for m in ('dask', 'distributed', 'oxen') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.cluster
def test_a_workers_rows_keep_the_sessions_deadline(fresh, cluster):
    def handler(body):
        if _prompt_text(body) == "row 3":
            return Script(text="s" * 2000, trickle=0.05)  # 100 s a byte at a time: past the deadline
        return Script(text="ok")

    fresh.handler = handler
    s = Session(model="test-model", base_url=fresh.base_url, api_key=TEST_KEY, timeout=10.0, deadline=1.5)
    ddf = dd.from_pandas(pd.DataFrame({"text": [f"row {i}" for i in range(8)]}), npartitions=2)
    start = time.monotonic()
    out = s.map(ddf, "{text}", concurrency=4, progress=False).compute()
    assert time.monotonic() - start < 60  # the workers' first imports take a while
    assert "1.5 s deadline" in out["error"].iloc[3]
    assert list(out["reply"].drop(index=3)) == ["ok"] * 7


@pytest.mark.cluster
def test_the_sessions_settings_reach_every_workers_session(fresh, cluster):
    # validate_schema=False: the model's request schema caps max_tokens at 16,384, and a worker
    # that checked it would refuse every row; context_chars=30: a {field} shows 30 characters.
    s = Session(
        model="gpt-5-2-chat-latest",
        base_url=fresh.base_url,
        api_key=TEST_KEY,
        timeout=10.0,
        validate_schema=False,
        context_chars=30,
        max_tokens=20_000,
    )
    s.system = "Be brief."
    frame = pd.DataFrame({"text": [f"row {i} " + "x" * 100 for i in range(4)]})
    out = s.map(dd.from_pandas(frame, npartitions=2), "Say {text}", progress=False).compute()
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["reply"].tolist() == [f"Echo: Say row {i} " + "x" * 23 + "…" for i in range(4)]
    chats = fresh.chat_requests()
    assert len(chats) == 4 and {body["max_tokens"] for body in chats} == {20_000}
    assert all(body["messages"][0] == {"role": "system", "content": "Be brief."} for body in chats)
