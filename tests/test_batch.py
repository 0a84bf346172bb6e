"""Session.map and Session.compare against the loopback fake API: order, faults, 429 pauses, interrupts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from pydantic import BaseModel
from pydantic import Field as PydanticField
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from oxen_notebook import BadRequestError, ParameterError, SchemaError, Session, _registry
from oxen_notebook._batch import MAP_COLUMNS, compare_html
from oxen_notebook._batch._progress import BatchProgress, _WidgetBar
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text


def make_session(fake_api, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0, **kwargs)


def priced_session(fake_api) -> Session:
    """On a model the fake catalogue prices, so that every request has a cost."""
    return Session(model="gpt-5-2-chat-latest", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0)


def echo_after(latency: float):
    return lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=latency)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert "unknown" in markup and "<span>$</span>0.0000" in markup  # no $ left for the math typesetter

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


# -- schema= ------------------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int
    height_m: float
    alive: bool
    field: Literal["math", "computing", "navy"]


@dataclass
class PersonDC:
    name: str
    age: int
    height_m: float
    alive: bool
    field: Literal["math", "computing", "navy"]


class PersonTD(TypedDict):
    name: str
    age: int
    height_m: float
    alive: bool
    field: Literal["math", "computing", "navy"]


PERSON_DICT = {
    "type": "object",
    "title": "Person",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "height_m": {"type": "number"},
        "alive": {"type": "boolean"},
        "field": {"enum": ["math", "computing", "navy"]},
    },
    "required": ["name", "age", "height_m", "alive", "field"],
}
PEOPLE = {
    "Ada": {"name": "Ada Lovelace", "age": 36, "height_m": 1.65, "alive": False, "field": "math"},
    "Alan": {"name": "Alan Turing", "age": 41, "height_m": 1.78, "alive": False, "field": "computing"},
    "Grace": {"name": "Grace Hopper", "age": 85, "height_m": 1.68, "alive": False, "field": "navy"},
}
TYPED = {"name": "string", "age": "Int64", "height_m": "Float64", "alive": "boolean", "field": "category"}


def _row_prompt(body) -> str:
    """The row's own prompt: the first user message (a repair request ends with another one)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def _is_repair(body) -> bool:
    return sum(m["role"] == "user" for m in body["messages"]) > 1


def people_handler(answers=None):
    """Answer each row with its person as JSON, unless ``answers[first word]`` says otherwise:
    ``(first reply, repair reply)``."""

    def handler(body):
        key = _row_prompt(body).split(": ")[-1].split(",")[0]
        good = json.dumps(PEOPLE.get(key, {}))
        first, repair = (answers or {}).get(key, (good, good))
        return Script(text=repair if _is_repair(body) else first)

    return handler


def bios() -> pd.DataFrame:
    return pd.DataFrame(
        {"bio": ["Ada, mathematician", "Alan, logician", "Grace, admiral"]}, index=[10, 20, 30]
    )


@pytest.mark.parametrize(
    ("spec", "kind"),
    [(Person, Person), (PersonDC, PersonDC), (PersonTD, dict), (PERSON_DICT, dict)],
    ids=["pydantic", "dataclass", "TypedDict", "JSON Schema"],
)
def test_map_with_a_schema_adds_typed_columns_after_the_data(fake_api, spec, kind):
    fake_api.handler = people_handler()
    s = make_session(fake_api)
    out = s.map(bios(), "Extract the person from: {bio}", schema=spec, progress=False)

    assert list(out.columns) == ["bio", *TYPED, "parsed", *MAP_COLUMNS]
    assert {name: str(out[name].dtype) for name in TYPED} == TYPED
    assert list(out.index) == [10, 20, 30]
    assert list(out["name"]) == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert list(out["age"]) == [36, 41, 85]
    assert list(out["height_m"]) == [1.65, 1.78, 1.68]
    assert not out["alive"].any()
    assert list(out["field"]) == ["math", "computing", "navy"]
    assert all(isinstance(value, kind) for value in out["parsed"])
    assert out["error"].isna().all() and list(out["reply"]) == [json.dumps(p) for p in PEOPLE.values()]
    for body in fake_api.chat_requests():
        assert body["response_format"]["type"] == "json_schema" and body["stream"] is False
    log = s.to_dataframe(batch=True)
    assert list(log["parsed"][1::2]) == list(PEOPLE.values())


def test_rows_that_do_not_validate_have_na_fields_their_error_and_their_raw_reply(fake_api):
    answers = {
        "Alan": ('{"name": "Alan Turing", "age": "forty-one"}', '{"name": "Alan Turing"}'),
        "Grace": ("Sorry, I cannot help.", "Still no."),
    }
    fake_api.handler = people_handler(answers)
    s = priced_session(fake_api)
    out = s.map(bios(), "Extract the person from: {bio}", schema=Person, progress=False)

    assert (
        out.loc[10, "name"] == "Ada Lovelace" and out.loc[10, "age"] == 36 and pd.isna(out.loc[10, "error"])
    )
    for row in (20, 30):
        assert all(pd.isna(out.loc[row, name]) for name in [*TYPED, "parsed"])
        assert out.loc[row, "finish_reason"] == "stop"
    assert out.loc[20, "reply"] == '{"name": "Alan Turing"}'  # the repair's reply, as the model wrote it
    assert out.loc[30, "reply"] == "Still no."
    assert out.loc[20, "error"].startswith("the reply does not match Person: age: Field required")
    assert out.loc[30, "error"].startswith("the reply is not valid JSON for Person")
    assert out["error"].str.contains("\n").eq(False).all()
    assert str(out["age"].dtype) == "Int64" and str(out["field"].dtype) == "category"

    log = s.to_dataframe(batch=True)
    assert list(log.groupby("row").size()) == [2, 4, 4]  # the repair prompt and its reply too
    alan = log[log["row"] == 1]
    assert list(alan["role"]) == ["user", "assistant", "user", "assistant"]
    assert list(alan["source"]) == ["batch", "batch", "repair", "batch"]
    assert alan["content"].iloc[2].startswith("Your reply did not match the JSON Schema:")
    assert alan["error"].iloc[1].startswith("the reply does not match Person: age:")
    replies = log[log["role"] == "assistant"].groupby("row")
    assert list(out["prompt_tokens"]) == list(replies["prompt_tokens"].sum())
    assert list(out["completion_tokens"]) == list(replies["completion_tokens"].sum())
    assert list(out["cost_usd"]) == pytest.approx(list(replies["cost_usd"].sum()))
    prices = (1.25e-06, 1e-05)  # gpt-5-2-chat-latest in the fake catalogue
    expected = out["prompt_tokens"] * prices[0] + out["completion_tokens"] * prices[1]
    assert list(out["cost_usd"]) == pytest.approx(list(expected))
    assert out.loc[20, "cost_usd"] > alan["cost_usd"].iloc[1] > 0  # both requests, not the first
    assert s.usage()["requests"].sum() == len(fake_api.chat_requests()) == 5


def test_a_row_fixed_by_its_repair_is_typed_and_counts_both_requests(fake_api):
    answers = {"Alan": ('{"name": "Alan Turing", "age": 41}', json.dumps(PEOPLE["Alan"]))}
    fake_api.handler = people_handler(answers)
    s = priced_session(fake_api)
    out = s.map(bios(), "Extract the person from: {bio}", schema=Person, progress=False)

    assert out["error"].isna().all()
    assert list(out["age"]) == [36, 41, 85] and out.loc[20, "parsed"] == Person(**PEOPLE["Alan"])
    assert out.loc[20, "reply"] == json.dumps(PEOPLE["Alan"])
    requests = fake_api.chat_requests()
    repair = next(b for b in requests if _is_repair(b))
    assert [m["role"] for m in repair["messages"]] == ["user", "assistant", "user"]
    assert repair["messages"][1]["content"] == '{"name": "Alan Turing", "age": 41}'
    assert "height_m: Field required" in repair["messages"][2]["content"]
    assert repair["stream"] is False and repair["response_format"]["type"] == "json_schema"
    log = s.to_dataframe(batch=True)
    alan = log[(log["row"] == 1) & (log["role"] == "assistant")]
    assert len(alan) == 2 and alan["error"].notna().tolist() == [True, False]
    assert out.loc[20, "prompt_tokens"] == alan["prompt_tokens"].sum()
    assert out.loc[20, "completion_tokens"] == alan["completion_tokens"].sum()
    assert out.loc[20, "cost_usd"] == pytest.approx(alan["cost_usd"].sum())
    assert out.loc[20, "latency_s"] == pytest.approx(alan["duration_s"].sum())
    assert out.loc[20, "cost_usd"] > out.loc[10, "cost_usd"]


def test_streamed_schema_rows_stream_their_repairs_too(fake_api):
    fake_api.handler = people_handler({"Ada": ("{}", json.dumps(PEOPLE["Ada"]))})
    s = make_session(fake_api)
    out = s.map(bios()[:1], "Extract the person from: {bio}", schema=Person, stream=True, progress=False)
    assert out["age"].tolist() == [36]
    assert [b["stream"] for b in fake_api.chat_requests()] == [True, True]


def test_max_repairs_zero_sends_no_repair(fake_api):
    fake_api.handler = people_handler({"Alan": ("{}", json.dumps(PEOPLE["Alan"]))})
    s = make_session(fake_api)
    out = s.map(bios(), "Extract: {bio}", schema=Person, max_repairs=0, progress=False)
    assert len(fake_api.chat_requests()) == 3
    assert out["age"].isna().tolist() == [False, True, False]
    with pytest.raises(ParameterError, match="max_repairs=-1"):
        s.map(bios(), "Extract: {bio}", schema=Person, max_repairs=-1, progress=False)


def test_on_error_raise_raises_the_schema_error(fake_api):
    fake_api.handler = people_handler({"Ada": ('{"name": 1}', '{"name": 2}')})
    s = make_session(fake_api)
    with pytest.raises(SchemaError) as info:
        s.map(bios(), "Extract: {bio}", schema=Person, on_error="raise", concurrency=1, progress=False)
    assert str(info.value).startswith("the reply does not match Person: name: Input should be a valid string")
    assert info.value.text == '{"name": 2}'
    log = s.to_dataframe(batch=True)
    assert list(log["row"]) == [0, 0, 0, 0]  # the failed row's requests, the repair included
    assert len(fake_api.chat_requests()) == 2  # stopped there: no other row was sent


def test_cached_rows_are_validated_the_same_way(fake_api, tmp_path):
    fake_api.handler = people_handler({"Alan": ("{}", "{}"), "Grace": ("{}", json.dumps(PEOPLE["Grace"]))})
    first = make_session(fake_api, cache=tmp_path / "cache.sqlite", temperature=0)
    out = first.map(bios(), "Extract: {bio}", schema=Person, progress=False)
    assert len(fake_api.chat_requests()) == 5 and not out["cached"].any()

    again = make_session(fake_api, cache=tmp_path / "cache.sqlite", temperature=0)
    hit = again.map(bios(), "Extract: {bio}", schema=Person, progress=False)
    assert len(fake_api.chat_requests()) == 5  # all from the cache, the repairs too
    assert hit["cached"].all() and (hit["cost_usd"] == 0).all()
    assert hit["age"].isna().tolist() == [False, True, False]
    assert list(hit["age"].dropna()) == [36, 85] and str(hit["age"].dtype) == "Int64"
    assert hit.loc[20, "error"] == out.loc[20, "error"]
    assert hit.loc[30, "parsed"] == Person(**PEOPLE["Grace"])
    pd.testing.assert_frame_equal(
        hit.drop(columns=["latency_s", "cost_usd", "cached"]),
        out.drop(columns=["latency_s", "cost_usd", "cached"]),
    )


def test_a_list_schema_keeps_one_row_per_data_row_with_the_items_in_parsed(fake_api):
    fake_api.handler = lambda body: Script(
        text=json.dumps({"items": [PEOPLE[w] for w in _row_prompt(body).split() if w in PEOPLE]})
    )
    s = make_session(fake_api)
    out = s.map(["Ada and Alan", "Grace", "nobody"], "People in: {text}", schema=list[Person], progress=False)
    assert list(out.columns) == ["text", "parsed", *MAP_COLUMNS]
    assert [len(items) for items in out["parsed"]] == [2, 1, 0]
    assert out["parsed"][0] == [Person(**PEOPLE["Ada"]), Person(**PEOPLE["Alan"])]
    items = out.explode("parsed").dropna(subset=["parsed"])
    assert [p.name for p in items["parsed"]] == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]


def test_names_that_clash_are_refused_before_anything_is_sent(fake_api):
    s = make_session(fake_api)
    data = pd.DataFrame({"name": ["Ada"], "bio": ["Ada, mathematician"]})
    with pytest.raises(ParameterError, match="field 'name' clashes with the data's column 'name'"):
        s.map(data, "Extract: {bio}", schema=Person, progress=False)

    class Log(BaseModel):
        error: str

    class Car(BaseModel):
        model: str

    with pytest.raises(
        ParameterError, match=r"field 'error' clashes with the result's column 'error'.*alias"
    ):
        s.map(["x"], "{text}", schema=Log, progress=False)
    with pytest.raises(ParameterError, match="column 'parsed'"):
        s.map([{"parsed": 1}], "{parsed}", schema=Person, progress=False)
    with pytest.raises(ParameterError, match="field 'model' clashes with the result's column 'model'"):
        s.compare("x", models=["test-model"], schema=Car, show=False)
    with pytest.raises(ParameterError, match="not both"):
        s.map(["x"], "{text}", schema=Person, response_format={"type": "json_object"}, progress=False)
    with pytest.raises(ParameterError, match="schema=42"):
        s.map(["x"], "{text}", schema=42, progress=False)
    assert fake_api.chat_requests() == []


def test_an_aliased_field_is_written_by_its_alias_and_read_by_its_name(fake_api):
    class Log(BaseModel):
        message: str = PydanticField(alias="error")
        code: int

    fake_api.handler = lambda body: Script(text='{"error": "disk full", "code": 28}')
    out = make_session(fake_api).map(["log line"], "{text}", schema=Log, progress=False)
    assert out["message"].tolist() == ["disk full"] and out["code"].tolist() == [28]
    assert out["error"].isna().all()
    sent = fake_api.chat_requests()[0]["response_format"]["json_schema"]["schema"]
    assert list(sent["properties"]) == ["error", "code"]


def test_compare_with_a_schema_has_the_typed_columns_per_variant(fake_api):
    def handler(body):
        if body["model"] == "cheap-model":
            return Script(text='{"name": "Ada"}' if not _is_repair(body) else "no idea")
        return Script(text=json.dumps(PEOPLE["Ada"]))

    fake_api.handler = handler
    s = make_session(fake_api)
    cmp = s.compare("Extract: {bio}", models=["test-model", "cheap-model"], schema=Person, show=False,
                    bio="Ada, mathematician")  # fmt: skip
    assert list(cmp.columns) == ["variant", "model", "params", *TYPED, "parsed", *MAP_COLUMNS]
    assert {name: str(cmp[name].dtype) for name in TYPED} == TYPED
    assert cmp["name"].tolist()[0] == "Ada Lovelace" and pd.isna(cmp["name"][1])
    assert cmp["age"].tolist()[0] == 36 and pd.isna(cmp["age"][1])
    assert cmp["error"][1].startswith("the reply is not valid JSON for Person") and pd.isna(cmp["error"][0])
    assert cmp["reply"][1] == "no idea"
    assert cmp["prompt_tokens"][1] > cmp["prompt_tokens"][0]  # the repair request counts too
    assert len(s.to_dataframe(batch=True)) == 6
    markup = compare_html(cmp)
    assert "Ada Lovelace" in markup and "<code" in markup  # the JSON shown as code


@pytest.mark.local
def test_the_local_model_extracts_rows_into_typed_columns_offline():
    class Figure(BaseModel):
        name: str
        age: int

    s = Session(model="local")
    data = pd.DataFrame(
        {
            "bio": [
                "Ada Lovelace is 36 years old.",
                "Alan Turing is 41 years old.",
                "Grace Hopper is 85 years old.",
            ]
        }
    )
    out = s.map(data, "Extract the person as JSON: {bio}", schema=Figure, temperature=0, max_tokens=60,
                concurrency=2, progress=False)  # fmt: skip
    assert out["error"].isna().all(), list(out["error"])
    assert (str(out["name"].dtype), str(out["age"].dtype)) == ("string", "Int64")
    assert out["name"].tolist() == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert out["age"].notna().all() and out["age"].between(1, 120).all()  # a 135M model reads ages loosely
    assert [p.age for p in out["parsed"]] == out["age"].tolist()
    assert (out["cost_usd"] == 0).all() and (out["completion_tokens"] > 0).all()


def _count_validations(monkeypatch) -> list[dict]:
    """Every call of ``validate_params`` from any of the package's modules, whichever imported it."""
    import sys

    from oxen_notebook import _params

    calls: list[dict] = []
    real = _params.validate_params

    def counted(params):
        calls.append(dict(params))
        return real(params)

    for name, module in list(sys.modules.items()):
        if name.startswith("oxen_notebook") and getattr(module, "validate_params", None) is real:
            monkeypatch.setattr(module, "validate_params", counted)
    return calls


def test_parameters_are_validated_once_per_map_row_and_once_per_stream(fake_api, monkeypatch):
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}")
    s = make_session(fake_api)
    s.defaults = {"max_tokens": 50}
    calls = _count_validations(monkeypatch)
    out = s.map([str(i) for i in range(10)], "{text}", temperature=0.5, progress=False)
    assert out["error"].isna().all() and len(fake_api.chat_requests()) == 10
    # Each row's Ask: 10; and once before any row is sent, so a bad parameter fails the whole
    # batch at once (map's rows share their parameters: one check for all of them).
    assert len(calls) == 10 + 1
    assert all(call == {"max_tokens": 50, "temperature": 0.5} for call in calls)
    assert all(b["temperature"] == 0.5 and b["max_tokens"] == 50 for b in fake_api.chat_requests())

    del calls[:]
    s.stream("hi", temperature=0.2).consume()
    assert calls == [{"max_tokens": 50, "temperature": 0.2}]
    with pytest.raises(ParameterError, match="temperature=5"):
        s.map(["a", "b"], "{text}", temperature=5, progress=False)
    assert len(fake_api.chat_requests()) == 11  # the bad batch sent nothing
