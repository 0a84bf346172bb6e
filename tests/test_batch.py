"""Session.map and Session.compare against the loopback fake API: order, faults, 429 pauses, interrupts."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from oxen_notebook import BadRequestError, ParameterError, Session, _registry
from oxen_notebook._batch import compare_html
from oxen_notebook._batch._progress import BatchProgress, _WidgetBar
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text


def make_session(fake_api, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0, **kwargs)


def echo_after(latency: float):
    return lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=latency)


def test_1000_rows_with_faults_complete_in_order(fake_api):
    """500s, 429s and mid-stream drops on first attempts; every row still ends with its exact reply."""
    attempts: dict[str, int] = {}
    faults = {"500": 0, "429": 0, "drop": 0}
    lock = threading.Lock()

    def handler(body):
        prompt = _prompt_text(body)
        row = int(prompt.split()[-1])
        with lock:
            attempt = attempts[prompt] = attempts.get(prompt, 0) + 1
        if attempt == 1 and row % 97 == 5:
            faults["500"] += 1
            return Script(status=500, error={"error": {"type": "unknown_error", "title": "boom"}})
        if attempt == 1 and row % 89 == 7:
            faults["429"] += 1
            return Script(status=429, headers={"Retry-After": "0.2"}, error={"error": {"message": "slow"}})
        if attempt == 1 and row % 83 == 11:
            faults["drop"] += 1
            return Script(text=f"Echo: {prompt}", drop_after=1, latency=0.05)
        return Script(text=f"Echo: {prompt}", latency=0.05)

    fake_api.handler = handler
    s = make_session(fake_api)
    rows = [f"item {i}" for i in range(1000)]
    out = s.map(rows, "Say {text}", concurrency=16, progress=False)

    assert faults == {"500": 11, "429": 12, "drop": 12}
    assert list(out["text"]) == rows
    assert list(out["reply"]) == [f"Echo: Say item {i}" for i in range(1000)]
    assert set(out["finish_reason"]) == {"stop"}
    assert out["error"].isna().all()
    assert (out["completion_tokens"] == 4).all()
    assert (out["latency_s"] >= 0.05).all()
    assert s.messages == []  # rows are one-shot: the conversation is untouched
    log = s.to_dataframe(batch=True)
    assert len(log) == 2000
    assert list(log["row"][1::2]) == list(range(1000))
    assert list(log["content"][1::2]) == list(out["reply"])
    assert set(log["source"]) == {"batch"}
    assert log["batch_id"].nunique() == 1


def test_429_storm_sends_nothing_during_the_pause(fake_api):
    count = 0
    storms: list[float] = []
    lock = threading.Lock()

    def handler(body):
        nonlocal count
        with lock:
            count += 1
            n = count
        if 40 <= n < 56:  # the first hits one worker; the rest hit the burst after the pause
            with lock:
                storms.append(time.monotonic())
            return Script(status=429, headers={"Retry-After": "1"}, error={"error": {"message": "slow"}})
        return Script(text=f"Echo: {_prompt_text(body)}", latency=0.05)

    fake_api.handler = handler
    s = make_session(fake_api, max_retries=6)
    out = s.map([f"n{i}" for i in range(300)], "{text}", concurrency=16, progress=False)

    assert list(out["reply"]) == [f"Echo: n{i}" for i in range(300)]
    assert len(storms) == 16
    received = [r["time"] for r in fake_api.requests if r["path"].endswith("/chat/completions")]
    # Requests already in flight when a 429 came back may reach the server a little later; any
    # request received well inside a 1 s pause was sent during it. Without the shared pause, the
    # other 15 workers would send about 200 requests in each window.
    for start in storms:
        during = [t for t in received if start + 0.15 < t < start + 0.85]
        assert during == [], f"{len(during)} requests sent during a Retry-After pause"
    # The pause held all 16 workers: the batch took at least two full pauses longer than the work.
    assert max(received) - min(received) > 2.0


def test_interrupt_from_progress_callback_keeps_finished_rows(fake_api):
    fake_api.handler = lambda body: Script(
        text=f"Echo: {_prompt_text(body)}", latency=0 if int(_prompt_text(body)) < 20 else 10
    )
    s = make_session(fake_api)

    def progress(stats: BatchProgress) -> None:
        if stats.done >= 20:
            raise KeyboardInterrupt

    t0 = time.perf_counter()
    out = s.map([str(i) for i in range(200)], "{text}", concurrency=8, progress=progress)
    assert time.perf_counter() - t0 < 5  # the 8 in-flight 10-second requests were cancelled

    assert out.attrs["interrupted"] is True
    assert list(out["reply"][:20]) == [f"Echo: {i}" for i in range(20)]
    assert set(out["finish_reason"][:20]) == {"stop"}
    assert set(out["finish_reason"][20:]) == {"interrupted"}
    assert set(out["error"][20:28]) == {"interrupted before the reply finished"}
    assert set(out["error"][28:]) == {"not sent: the batch was interrupted"}
    assert out["reply"][20:].isna().all()
    # Nothing was sent after the interrupt (a worker cancelled mid-connect may not have reached the server).
    assert 20 <= len(fake_api.chat_requests()) <= 28
    log = s.to_dataframe(batch=True)
    assert set(log["row"]) == set(range(28))


def test_real_sigint_cancels_in_flight_requests(fake_api):
    fake_api.handler = lambda body: Script(text="ok", latency=0 if int(_prompt_text(body)) < 10 else 10)
    s = make_session(fake_api)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    try:
        out = s.map([str(i) for i in range(50)], "{text}", concurrency=4, progress=False)
    finally:
        timer.cancel()
    assert 1.0 <= time.perf_counter() - t0 < 5
    assert list(out["reply"][:10]) == ["ok"] * 10
    assert set(out["finish_reason"][10:]) == {"interrupted"}
    assert 10 <= len(fake_api.chat_requests()) <= 14


def test_failed_row_is_recorded_and_the_others_continue(fake_api):
    def handler(body):
        if _prompt_text(body) == "3":
            return Script(
                status=400, error={"error": {"type": "invalid_params", "title": "Bad", "detail": "no 3s"}}
            )
        return Script(text=f"Echo: {_prompt_text(body)}")

    fake_api.handler = handler
    s = make_session(fake_api)
    out = s.map([str(i) for i in range(8)], "{text}", progress=False)
    assert out["finish_reason"][3] == "error"
    assert "no 3s" in out["error"][3]
    assert pd.isna(out["reply"][3])
    others = out.drop(index=3)
    assert list(others["reply"]) == [f"Echo: {i}" for i in range(8) if i != 3]
    assert others["error"].isna().all()

    with pytest.raises(BadRequestError, match="no 3s"):
        s.map([str(i) for i in range(8)], "{text}", concurrency=1, on_error="raise", progress=False)
    # concurrency=1: rows after the failure were never sent
    assert [_prompt_text(b) for b in fake_api.chat_requests()[8:]] == ["0", "1", "2", "3"]


def test_input_shapes_and_template_errors(fake_api):
    s = make_session(fake_api)
    frame = pd.DataFrame({"review": ["good", "bad"], "stars": [5, 1]}, index=["a", "b"])
    out = s.map(frame, "{review} ({stars} stars)", progress=False)
    assert list(out.index) == ["a", "b"]
    assert list(out["reply"]) == ["Echo: good (5 stars)", "Echo: bad (1 stars)"]
    assert list(frame.columns) == ["review", "stars"]  # the caller's frame is not modified

    out = s.map([{"q": "x"}, {"q": "y"}], "Q: {q}", progress=False)
    assert list(out["reply"]) == ["Echo: Q: x", "Echo: Q: y"]
    out = s.map(["x", "y"], "P: {}", progress=False)
    assert list(out["reply"]) == ["Echo: P: x", "Echo: P: y"]
    out = s.map(pd.Series(["z"], name="word"), "W: {word}", progress=False)
    assert list(out["reply"]) == ["Echo: W: z"]

    sent = len(fake_api.chat_requests())
    with pytest.raises(ParameterError, match=r"\{nope\}"):
        s.map(frame, "{nope}", progress=False)
    with pytest.raises(ParameterError, match="concurrency"):
        s.map(frame, "{review}", concurrency=0, progress=False)
    with pytest.raises(ParameterError, match="temperature"):
        s.map(frame, "{review}", temperature=9, progress=False)
    assert len(fake_api.chat_requests()) == sent


def test_rows_are_sent_unstreamed_unless_stream_is_true(fake_api):
    """An unstreamed row reads one chat.completion body: its usage arrives even from servers that
    ignore stream_options (llama-cpp-python's), and no other request can cut it short."""
    fake_api.handler = lambda body: Script(
        text=f"Echo: {_prompt_text(body)}", usage={"prompt_tokens": 11, "completion_tokens": 3}
    )
    s = make_session(fake_api)
    out = s.map(["a", "b"], "{text}", progress=False)
    assert list(out["reply"]) == ["Echo: a", "Echo: b"]
    assert list(out["prompt_tokens"]) == [11, 11] and list(out["completion_tokens"]) == [3, 3]
    bodies = fake_api.chat_requests()
    assert [b["stream"] for b in bodies] == [False, False]
    assert not any("stream_options" in b for b in bodies)

    fake_api.reset()
    fake_api.api_key = TEST_KEY
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}")
    out = s.map(["a", "b"], "{text}", stream=True, progress=False)
    assert list(out["reply"]) == ["Echo: a", "Echo: b"]
    assert [b["stream"] for b in fake_api.chat_requests()] == [True, True]
    assert all(b["stream_options"] == {"include_usage": True} for b in fake_api.chat_requests())

    fake_api.reset()
    fake_api.api_key = TEST_KEY
    cmp = s.compare("hi", models=["test-model", "cheap-model"], show=False)
    assert list(cmp["reply"]) == ["Echo: hi", "Echo: hi"]
    assert [b["stream"] for b in fake_api.chat_requests()] == [False, False]
    with pytest.raises(ParameterError, match="stream"):
        s.map(["a"], "{text}", stream="yes", progress=False)


def test_streamed_rows_retry_broken_streams_and_streams_that_end_with_nothing(fake_api):
    """llama-cpp-python's server cancels a running stream when another request arrives: the
    cancelled one gets its role chunk, then [DONE], no text, no finish reason. Such a row is not an
    empty answer: it is sent again like a broken stream, and reported as an error if it stays so."""
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def handler(body):
        prompt = _prompt_text(body)
        with lock:
            attempt = attempts[prompt] = attempts.get(prompt, 0) + 1
        if prompt == "never":
            return Script(chunks=[], finish_reason=None, usage=None)
        if attempt == 1 and int(prompt) % 3 == 0:
            return Script(chunks=[], finish_reason=None, usage=None)
        if attempt == 1 and int(prompt) % 3 == 1:
            return Script(text=f"Echo: {prompt}", drop_after=1)
        return Script(text=f"Echo: {prompt}", finish_reason=None, usage=None)  # Oxen's documented ending

    fake_api.handler = handler
    s = make_session(fake_api)
    rows = [str(i) for i in range(12)]
    out = s.map([*rows, "never"], "{text}", concurrency=4, stream=True, progress=False)

    assert list(out["reply"][:12]) == [f"Echo: {i}" for i in range(12)]
    assert set(out["finish_reason"][:12]) == {"stop"}
    assert out["error"][:12].isna().all()
    assert [attempts[r] for r in rows] == [2, 2, 1] * 4
    assert attempts["never"] == 3  # the first try and the client's two retries
    assert out["finish_reason"][12] == "error"
    assert pd.isna(out["reply"][12])
    assert "no content and no finish reason" in out["error"][12]


def test_unstreamed_rows_survive_body_faults(fake_api):
    """The stream faults, as an unstreamed body gets them: a body cut off mid-way or a 500 is
    retried by the client, a malformed body or one with nothing in it is sent again by the batch;
    an error body is the row's error, at once."""
    attempts: dict[str, int] = {}
    lock = threading.Lock()
    first = {
        0: {"drop_after": 0},
        1: {"malformed_after": 0},
        2: {"status": 500, "error": {"error": {"type": "unknown_error", "title": "boom"}}},
        3: {"text": "", "finish_reason": None, "usage": None},
    }

    def handler(body):
        prompt = _prompt_text(body)
        with lock:
            attempt = attempts[prompt] = attempts.get(prompt, 0) + 1
        if prompt == "broken":
            return Script(error_event_after=0)
        if prompt == "empty":
            return Script(chunks=[], finish_reason=None, usage=None)
        if attempt == 1 and int(prompt) % 5 in first:
            return Script(text="wrong", **first[int(prompt) % 5])
        return Script(text=f"Echo: {prompt}")

    fake_api.handler = handler
    s = make_session(fake_api)
    rows = [str(i) for i in range(10)]
    out = s.map([*rows, "broken", "empty"], "{text}", concurrency=3, progress=False)

    assert list(out["reply"][:10]) == [f"Echo: {i}" for i in range(10)]
    assert out["error"][:10].isna().all()
    assert (out["completion_tokens"][:10] == 2).all()
    assert [attempts[r] for r in rows] == [2, 2, 2, 2, 1] * 2
    assert (attempts["broken"], out["finish_reason"][10]) == (1, "error")
    assert "Upstream failed" in out["error"][10]
    assert (attempts["empty"], out["finish_reason"][11]) == (3, "error")
    assert "no content and no finish reason" in out["error"][11]
    assert all(b["stream"] is False for b in fake_api.chat_requests())


def test_map_params_reach_every_request(fake_api):
    s = make_session(fake_api, system="be brief")
    s.map(["a", "b"], "{text}", model="cheap-model", temperature=0.5, max_tokens=7, progress=False)
    for body in fake_api.chat_requests():
        assert body["model"] == "cheap-model"
        assert body["temperature"] == 0.5 and body["max_tokens"] == 7
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        assert len(body["messages"]) == 2


def test_map_is_synchronous_inside_a_running_event_loop(fake_api):
    """As in a Jupyter cell: the kernel's loop is running while the cell calls map()."""
    s = make_session(fake_api)

    async def cell():
        return s.map(["x", "y"], "{text}", progress=False)

    out = asyncio.run(cell())
    assert list(out["reply"]) == ["Echo: x", "Echo: y"]


def test_text_progress_bar_and_silence(fake_api, capsys):
    fake_api.handler = echo_after(0.02)
    s = make_session(fake_api)
    s.map([str(i) for i in range(30)], "{text}", concurrency=4)
    err = capsys.readouterr().err
    assert "30/30" in err and "rows/s" in err and err.endswith("\n")
    s.map([str(i) for i in range(30)], "{text}", concurrency=4, progress=False)
    assert capsys.readouterr() == ("", "")


def test_widget_bar_shows_counts_rate_and_eta():
    bar = _WidgetBar(100)
    stats = BatchProgress(total=100, done=40, failed=2, started=time.perf_counter() - 4)
    bar.update(stats)
    assert bar.bar.value == 40
    assert "40/100" in bar.label.value and "2 failed" in bar.label.value
    assert "10.0 rows/s" in bar.label.value and "ETA 6s" in bar.label.value
    stats.ended = time.perf_counter()
    bar.close(stats, None)
    assert bar.bar.bar_style == "danger"


def test_compare_runs_variants_concurrently_and_renders_safely(fake_api):
    fake_api.handler = lambda body: Script(
        text=f"<script>alert(1)</script> **{body['model']}** t={body.get('temperature')}", latency=0.4
    )
    s = make_session(fake_api)
    t0 = time.perf_counter()
    cmp = s.compare(
        "Summarize: {text}",
        models=["test-model", "cheap-model"],
        params=[{"temperature": 0}, {"temperature": 1}],
        text="the article",
    )
    assert time.perf_counter() - t0 < 1.2  # four 0.4 s requests at once, not one after another
    assert list(cmp["model"]) == ["test-model", "test-model", "cheap-model", "cheap-model"]
    assert list(cmp["variant"]) == [
        "test-model (temperature=0)", "test-model (temperature=1)",
        "cheap-model (temperature=0)", "cheap-model (temperature=1)",
    ]  # fmt: skip
    assert cmp["reply"][3].endswith("**cheap-model** t=1")
    assert all(_prompt_text(b) == "Summarize: the article" for b in fake_api.chat_requests())
    assert cmp["latency_s"].min() >= 0.4
    assert cmp["cost_usd"][2] > 0 and pd.isna(cmp["cost_usd"][0])  # cheap-model has prices

    markup = compare_html(cmp)
    assert "<script>" not in markup
    assert "<strong>cheap-model</strong>" in markup
    assert "unknown" in markup and "$0.0000" in markup

    with pytest.raises(ParameterError, match="models"):
        s.compare("hi")
    with pytest.raises(ParameterError, match=r"\{text\}"):
        s.compare("Summarize: {text}", models=["test-model"])


def test_magic_compare_flag(fake_api, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(_registry, "sessions", {"cmp": make_session(fake_api)})
    shell = InteractiveShell.instance()
    shell.magics_manager.registry.pop("OxenMagics", None)
    shell.run_line_magic("load_ext", "oxen_notebook")
    shell.user_ns["topic"] = "oxen"
    try:
        shell.run_cell_magic(
            "oxen", "--session cmp --compare test-model,cheap-model -t 0 -o cmp", "Haiku about {topic} {{x}}"
        )
    finally:
        shell.run_line_magic("unload_ext", "oxen_notebook")
    frame = shell.user_ns.pop("cmp")
    assert list(frame["model"]) == ["test-model", "cheap-model"]
    assert list(frame["reply"]) == ["Echo: Haiku about oxen {x}"] * 2
    assert all(b["temperature"] == 0 for b in fake_api.chat_requests())


@pytest.mark.kernel
def test_map_in_a_real_kernel_survives_an_interrupt(fake_api, tmp_path):
    """In a kernel (whose loop is running), map blocks the cell; the ■ button returns finished rows."""
    from jupyter_client.manager import start_new_kernel

    fake_api.handler = lambda body: Script(text="done", latency=0 if int(_prompt_text(body)) < 10 else 30)
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        code = (
            "from oxen_notebook import Session\n"
            f"s = Session(model='test-model', base_url={fake_api.base_url!r}, api_key={TEST_KEY!r})\n"
            "out = s.map([str(i) for i in range(40)], '{text}', concurrency=4)\n"
        )
        msg_id = kc.execute(code)
        deadline = time.monotonic() + 60
        while len(fake_api.chat_requests()) < 14 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 10 <= len(fake_api.chat_requests()) <= 14  # 10 answered, 4 waiting on the slow server
        time.sleep(0.3)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        while reply["parent_header"].get("msg_id") != msg_id:  # e.g. a late kernel_info reply
            reply = kc.get_shell_msg(timeout=20)
        assert reply["content"]["status"] == "ok"  # the cell finished: no KeyboardInterrupt traceback
        outputs: list[dict] = []
        check = kc.execute_interactive(
            "print(out.attrs['interrupted'], list(out.reply[:10]) == ['done'] * 10, "
            "sorted(set(out.finish_reason[10:])), len(s.to_dataframe(batch=True)))",
            timeout=20,
            output_hook=lambda msg: outputs.append(msg),
        )
        assert check["content"]["status"] == "ok"
        printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        assert printed.strip() == "True True ['interrupted'] 28"
        assert 10 <= len(fake_api.chat_requests()) <= 14
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
