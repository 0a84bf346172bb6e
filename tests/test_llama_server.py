"""oxen_notebook against a real third-party OpenAI-compatible server: llama.cpp's own HTTP server
(``llama-server``'s code, run by the ``xllamacpp`` package, nothing we wrote) serving the bundled
SmolLM2-135M GGUF on a TCP port, started once for the test session in a process of its own.

Facts of that server the tests rely on: it honours ``stream_options.include_usage``, queues a
request that arrives while its one slot is busy (it does not cancel the running one), and stops
generating when the client closes the connection. (llama-cpp-python's FastAPI server, tested here
before, cancelled the running stream instead; tests/test_session.py replays those endings on the
loopback fake API.)
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

from oxen_notebook import Session
from oxen_notebook._local import model_path
from tests.helpers import free_port

pytestmark = pytest.mark.local

MODEL = "smollm2"
COLORS = [f"Name one color. ({i})" for i in range(6)]
# The server, as llama-server would start it: a model, an alias, a port, a context, threads.
SERVER = """
import sys, time, xllamacpp
params = xllamacpp.CommonParams()
params.model.path, params.model_alias = sys.argv[1], {sys.argv[2]}
params.hostnames, params.port = ["127.0.0.1"], int(sys.argv[3])
params.n_ctx = 2048
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = int(sys.argv[4])
server = xllamacpp.Server(params)
print(server.listening_address, flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """The base URL of a running llama.cpp server (terminated at the end)."""
    port = free_port()
    threads = str(max(1, (os.cpu_count() or 2) // 2))  # the cores are shared: leave room for the tests
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-c", SERVER, str(model_path("local")), MODEL, str(port), threads]
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"llama.cpp's server exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp's server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def make_session(base_url: str, **kwargs) -> Session:
    return Session(model=MODEL, base_url=base_url, api_key="x", **kwargs)


def test_ask_records_the_exchange(llama_server):
    s = make_session(llama_server)
    reply = s.ask("Say hello.", max_tokens=16, temperature=0)
    assert reply.text.strip()
    assert reply.finish_reason in ("stop", "length")
    assert reply.error is None
    assert [(m.role, m.content) for m in s.messages] == [("user", "Say hello."), ("assistant", reply.text)]


def test_stream_yields_deltas_while_the_reply_is_still_coming(llama_server):
    s = make_session(llama_server)
    reply = s.stream("Count from one to ten.", max_tokens=24, temperature=0)
    seen = [(delta, reply.text, reply.finished) for delta in reply]
    deltas = [delta for delta, _, _ in seen]
    assert len(deltas) > 3
    assert not any(finished for _, _, finished in seen)
    assert [text for _, text, _ in seen] == list(itertools.accumulate(deltas))
    assert reply.finished and reply.text == "".join(deltas)
    assert reply.finish_reason in ("stop", "length")


def test_json_mode_gives_parseable_json(llama_server):
    s = make_session(llama_server)
    reply = s.ask(
        "Give a JSON object describing a cat with keys name and age.",
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=300,
    )
    assert reply.finish_reason == "stop"
    assert isinstance(json.loads(reply.text), dict)


def test_breaking_out_of_a_stream_keeps_the_partial_text_and_the_server_answers_next(llama_server):
    s = make_session(llama_server)
    with s.stream("Write a long story about a dragon.", max_tokens=300, temperature=0) as reply:
        deltas = []
        for delta in reply:
            deltas.append(delta)
            if len(deltas) == 4:
                break
    assert reply.finish_reason == "interrupted"
    assert reply.text == "".join(deltas) and reply.text.strip()
    assert (s.messages[-1].content, s.messages[-1].finish_reason) == (reply.text, "interrupted")
    assert not s.busy

    after = s.ask("Say yes.", max_tokens=8, temperature=0)
    assert after.text.strip() and after.finish_reason in ("stop", "length")


def test_close_stops_a_stream_and_the_server_answers_next(llama_server):
    s = make_session(llama_server)
    reply = s.stream("Write a long poem about the sea.", max_tokens=300, temperature=0)
    deltas = iter(reply)
    first, second = next(deltas), next(deltas)
    reply.close()
    assert reply.finish_reason == "interrupted"
    assert reply.text == first + second
    assert s.messages[-1].finish_reason == "interrupted"

    after = s.ask("Say yes.", max_tokens=8, temperature=0)
    assert after.text.strip() and after.finish_reason in ("stop", "length")


def test_list_models_lists_the_alias(llama_server):
    frame = make_session(llama_server).list_models()
    assert MODEL in set(frame["id"])


def test_export_rows_and_dtypes(llama_server):
    s = make_session(llama_server, system="Answer briefly.")
    reply = s.ask("Name a fruit.", max_tokens=8, temperature=0)
    frame = s.to_dataframe()
    assert list(frame["role"]) == ["system", "user", "assistant"]
    assert list(frame["content"]) == ["Answer briefly.", "Name a fruit.", reply.text]
    assert list(frame["turn"]) == [0, 1, 1]
    assert frame["model"][2] == MODEL and frame["finish_reason"][2] == reply.finish_reason
    assert frame["conversation_id"].nunique() == 1
    dtypes = {name: str(frame[name].dtype) for name in
              ("role", "content", "turn", "finish_reason", "prompt_tokens", "duration_s")}  # fmt: skip
    assert dtypes == {
        "role": "string", "content": "string", "turn": "Int64", "finish_reason": "string",
        "prompt_tokens": "Int64", "duration_s": "Float64",
    }  # fmt: skip
    assert isinstance(frame["created_at"].dtype, pd.DatetimeTZDtype)
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert frame["duration_s"][2] > 0


@pytest.fixture(scope="module")
def mapped(llama_server):
    """Six rows at concurrency 2, and the prompt tokens the server counts for each prompt alone."""
    s = make_session(llama_server)
    frame = s.map(COLORS, "{}", concurrency=2, progress=False, max_tokens=12, temperature=0)
    counted = []
    for prompt in COLORS:
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1}
        response = httpx.post(f"{llama_server}/chat/completions", json=body, timeout=120)
        counted.append(response.json()["usage"]["prompt_tokens"])
    return s, frame, counted


def test_map_at_concurrency_2_answers_every_row_with_the_servers_token_counts(mapped):
    """Streamed, five of these six rows came back empty with finish_reason 'stop': the server
    cancelled each running stream for the next request. Unstreamed, every row is answered."""
    s, frame, counted = mapped
    assert frame["error"].isna().all(), list(frame["error"])
    assert (frame["reply"].str.strip().str.len() > 0).all(), list(frame["reply"])
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert list(frame["prompt_tokens"]) == counted
    assert (frame["completion_tokens"] > 0).all() and (frame["completion_tokens"] <= 12).all()
    assert s.messages == []


def test_usage_totals_the_rows_real_token_counts(mapped):
    s, frame, counted = mapped
    row = s.usage().set_index("model").loc[MODEL]
    assert (row["requests"], row["errors"], row["no_usage"]) == (6, 0, 0)
    assert row["prompt_tokens"] == sum(counted)
    assert row["completion_tokens"] == frame["completion_tokens"].sum()
    assert row["total_tokens"] == sum(counted) + frame["completion_tokens"].sum()


def test_streamed_map_rows_are_all_answered_with_the_servers_usage(llama_server, mapped):
    """Streamed, the rows queue for the server's one slot: each is answered, with the usage
    chunk the server sends for ``stream_options.include_usage``."""
    _, _, counted = mapped
    s = make_session(llama_server)
    frame = s.map(COLORS, "{}", concurrency=2, stream=True, progress=False, max_tokens=12, temperature=0)
    assert frame["error"].isna().all(), list(frame["error"])
    assert (frame["reply"].str.strip().str.len() > 0).all(), list(frame["reply"])
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert list(frame["prompt_tokens"]) == counted


def test_closing_a_stream_stops_the_server_generating(llama_server):
    """Closing the response closes the connection; the server stops, so the next request is
    answered at once rather than after the first one's 1,500 tokens."""
    endless = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a story."}],
        "stream": True,
        "max_tokens": 1500,
        "min_tokens": 1500,
    }
    with httpx.Client(base_url=llama_server, timeout=300) as raw:
        with raw.stream("POST", "/chat/completions", json=endless) as a:
            for line in a.iter_lines():
                if '"content"' in line:  # generating
                    break
        t0 = time.perf_counter()
        after = make_session(llama_server).ask("Say yes.", max_tokens=4, temperature=0)
        assert after.text.strip()
        assert time.perf_counter() - t0 < 20  # 1,500 tokens take a minute here
