"""Session.map(checkpoint=DIR) against the loopback fake API: lazy sources, Parquet parts, resume
after a kill, a Ctrl-C and an exception, refused changes, failed rows kept."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from oxen_notebook import MissingDependencyError, ParameterError, Session
from oxen_notebook._batch import MAP_COLUMNS
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text

ROOT = Path(__file__).resolve().parent.parent


def make_session(fake_api, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=30.0, **kwargs)


def sent(fake_api) -> collections.Counter:
    """How many requests the server got for each prompt (not counting a body cut off mid-way by
    a cancelled request: it never reached the model)."""
    return collections.Counter(_prompt_text(body) for body in fake_api.chat_requests() if body is not None)


def parts(folder: Path) -> list[Path]:
    return sorted((folder / "rows").glob("part-*.parquet"))


def stored_prompts(folder: Path) -> list[str]:
    """The ``text`` of every row in the checkpoint's parts and pending files (what is finished)."""
    files = [*parts(folder), *sorted((folder / "pending").glob("rows-*.parquet"))]
    return [t for path in files for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()]


@pytest.mark.slow
def test_a_generator_of_5000_strings_is_read_lazily_into_parts(fake_api, tmp_path):
    s = make_session(fake_api)
    finished = 0
    leads = []

    def count(event):
        nonlocal finished
        finished += 1  # on the batch's loop, as the generator is read: no race

    s.on("finish", count)

    def rows():
        for i in range(5000):
            leads.append(i - finished)  # rows read (this one not yet) minus rows finished
            yield f"item {i}"

    out = s.map(rows(), "Say {text}", concurrency=16, checkpoint=tmp_path / "run", progress=False)

    assert list(out["text"]) == [f"item {i}" for i in range(5000)]
    assert list(out["reply"]) == [f"Echo: Say item {i}" for i in range(5000)]
    assert out["error"].isna().all() and set(out["finish_reason"]) == {"stop"}
    assert isinstance(out.index, pd.RangeIndex) and list(out.columns) == ["text", *MAP_COLUMNS]
    # Lazily: after the first 100 rows (read ahead to tell dicts from strings), a row is read only when
    # a worker is free, so the reader is never more than the rows in flight ahead of what finished.
    assert max(leads) <= 100
    assert max(leads[200:]) <= 16
    # Parts of at most 1,000 rows (or what 5 s let through), each row in exactly one.
    files = parts(tmp_path / "run")
    sizes = [pq.read_metadata(path).num_rows for path in files]
    assert len(files) >= 5 and max(sizes) <= 1000 and sum(sizes) == 5000
    assert not list((tmp_path / "run").rglob("*.tmp"))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["rows_done"] == 5000 and manifest["parts"] == len(files)
    assert manifest["template"] == "Say {text}" and manifest["model"] == "test-model"
    assert manifest["data"]["kind"] == "strings" and manifest["data"]["columns"] == ["text"]
    # The batch log went to the checkpoint, not to the Session's memory, and still exports.
    assert len(s.batch_log) == 0
    log = s.to_dataframe(batch=True)
    assert len(log) == 10000
    assert set(log["batch_id"]) == {out.attrs["batch_id"]}
    replies = log[log["role"] == "assistant"].sort_values("row")
    assert list(replies["content"]) == list(out["reply"]) and list(replies["row"]) == list(range(5000))
    assert len(list((tmp_path / "run" / "log").glob("part-*.parquet"))) == len(files)


def test_a_parquet_file_gives_the_same_result_as_the_dataframe(fake_api, tmp_path):
    s = make_session(fake_api)
    frame = pd.DataFrame(
        {"review": [f"review {i}" for i in range(300)], "stars": [i % 5 for i in range(300)]}
    )
    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=64)
    template = "{review} ({stars} stars)"

    expected = s.map(frame, template, progress=False)
    from_file = s.map(str(path), template, checkpoint=tmp_path / "a", progress=False)
    in_memory = s.map(path, template, progress=False)  # no checkpoint: read whole, as before
    checkpointed_frame = s.map(frame, template, checkpoint=tmp_path / "b", progress=False)

    timing = ["latency_s"]
    assert list(expected["reply"]) == [f"Echo: review {i} ({i % 5} stars)" for i in range(300)]
    for out in (from_file, in_memory, checkpointed_frame):
        pd.testing.assert_frame_equal(out.drop(columns=timing), expected.drop(columns=timing))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["data"]["kind"] == "parquet" and manifest["data"]["rows"] == 300
    assert manifest["data"]["path"] == str(path) and manifest["data"]["size"] == path.stat().st_size

    # A DataFrame keeps its index and dtypes through a checkpoint.
    indexed = frame.head(5).set_axis(list("abcde")).astype({"stars": "int32"})
    out = s.map(indexed, template, checkpoint=tmp_path / "c", progress=False)
    assert list(out.index) == list("abcde") and out["stars"].dtype == "int32"


@pytest.mark.slow
def test_resume_after_the_process_is_killed_sends_no_finished_row_again(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=0.1)
    folder = tmp_path / "run"
    code = textwrap.dedent(f"""
        from oxen_notebook import Session
        s = Session(model="test-model", base_url={fake_api.base_url!r}, api_key={TEST_KEY!r}, timeout=30)
        rows = (f"row {{i}}" for i in range(1000))
        s.map(rows, "{{text}}", concurrency=4, checkpoint={str(folder)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while not parts(folder) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parts(folder), "no part was written"
        time.sleep(1.0)  # rows in flight, and rows finished since the part
        assert proc.poll() is None, "the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    finished = stored_prompts(folder)
    assert 0 < len(finished) < 1000
    before = sent(fake_api)
    assert all(before[p] == 1 for p in finished)

    fake_api.handler = None  # fast now
    s = make_session(fake_api)
    out = s.map((f"row {i}" for i in range(1000)), "{text}", concurrency=8, checkpoint=folder, progress=False)

    assert list(out["reply"]) == [f"Echo: row {i}" for i in range(1000)]
    assert out["error"].isna().all()
    assert out.attrs["resumed_rows"] == len(finished)
    counts = sent(fake_api)
    assert set(counts) == {f"row {i}" for i in range(1000)}
    assert all(counts[p] == 1 for p in finished)  # a finished row was never sent again
    # Only what the killed process had in flight or had not yet written was sent twice.
    again = [p for p, n in counts.items() if n > 1]
    assert all(n <= 2 for n in counts.values()) and len(again) < 1000 - len(finished)


def test_resume_after_a_ctrl_c(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(
        text=f"Echo: {_prompt_text(body)}", latency=0 if int(_prompt_text(body)) < 150 else 10
    )
    s = make_session(fake_api)

    def progress(stats):
        if stats.done >= 150:
            raise KeyboardInterrupt  # as a kernel interrupt arrives in the waiting thread

    rows = [str(i) for i in range(300)]
    t0 = time.perf_counter()
    out = s.map(rows, "{text}", concurrency=8, checkpoint=tmp_path / "run", progress=progress)
    assert time.perf_counter() - t0 < 8  # the 10-second rows in flight were cancelled
    assert out.attrs["interrupted"] is True
    # The checkpoint has what finished (the cut-short rows are not finished: they run again).
    assert list(out["text"]) == rows[:150] and list(out.index) == list(range(150))
    assert list(out["reply"]) == [f"Echo: {i}" for i in range(150)]
    assert sorted(stored_prompts(tmp_path / "run"), key=int) == rows[:150]

    fake_api.handler = None
    out = s.map(rows, "{text}", concurrency=8, checkpoint=tmp_path / "run", progress=False)
    assert list(out["reply"]) == [f"Echo: {i}" for i in range(300)]
    assert out.attrs["interrupted"] is False and out.attrs["resumed_rows"] == 150
    counts = sent(fake_api)
    assert all(counts[str(i)] == 1 for i in range(150))
    assert all(1 <= counts[str(i)] <= 2 for i in range(150, 300))


def test_resume_after_an_exception_in_the_data_or_the_progress_callback(fake_api, tmp_path):
    s = make_session(fake_api)
    folder = tmp_path / "run"

    def broken():
        for i in range(200):
            yield f"n{i}"
        raise RuntimeError("the disk went away")

    with pytest.raises(RuntimeError, match="the disk went away"):
        s.map(broken(), "{text}", concurrency=8, checkpoint=folder, progress=False)
    assert sorted(stored_prompts(folder)) == sorted(f"n{i}" for i in range(200))  # in flight finished

    def progress(stats):
        if stats.done >= 100:
            raise ValueError("the progress bar broke")

    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=0.02)
    with pytest.raises(ValueError, match="the progress bar broke"):
        s.map((f"n{i}" for i in range(600)), "{text}", concurrency=8, checkpoint=folder, progress=progress)
    kept = stored_prompts(folder)
    assert len(kept) >= 300 and len(set(kept)) == len(kept)

    fake_api.handler = None
    out = s.map((f"n{i}" for i in range(600)), "{text}", concurrency=8, checkpoint=folder, progress=False)
    assert list(out["reply"]) == [f"Echo: n{i}" for i in range(600)]
    counts = sent(fake_api)
    assert all(counts[p] == 1 for p in kept)
    assert set(counts) == {f"n{i}" for i in range(600)}


def test_a_changed_template_model_or_parameters_is_refused_until_resume_false(fake_api, tmp_path):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    rows = [f"r{i}" for i in range(20)]
    s.map(rows, "Say {text}", checkpoint=folder, temperature=0, progress=False)
    before = len(fake_api.chat_requests())

    cases = [
        ({"template": "Tell {text}"}, "template ('Say {text}' there, 'Tell {text}' now)"),
        ({"model": "cheap-model"}, "model ('test-model' there, 'cheap-model' now)"),
        ({"temperature": 0.5}, 'parameters ({"temperature": 0} there, {"temperature": 0.5} now)'),
    ]
    for change, named in cases:
        kwargs = {"template": "Say {text}", "temperature": 0, **change}
        template = kwargs.pop("template")
        with pytest.raises(ParameterError) as caught:
            s.map(rows, template, checkpoint=folder, progress=False, **kwargs)
        message = str(caught.value)
        assert "\n" not in message
        assert named in message and "resume=False starts over" in message, message
    with pytest.raises(ParameterError, match=r"in its template \(.*\) and model \("):
        s.map(rows, "Tell {text}", checkpoint=folder, model="cheap-model", temperature=0, progress=False)
    with pytest.raises(ParameterError, match=r"in its data's columns: resume=False starts over"):
        s.map(
            [{"text": t, "lang": "en"} for t in rows],
            "Say {text}",
            checkpoint=folder,
            temperature=0,
            progress=False,
        )
    assert len(fake_api.chat_requests()) == before  # nothing was sent

    out = s.map(rows, "Tell {text}", checkpoint=folder, resume=False, temperature=0, progress=False)
    assert list(out["reply"]) == [f"Echo: Tell r{i}" for i in range(20)]
    assert sorted(_prompt_text(b) for b in fake_api.chat_requests()[before:]) == sorted(
        f"Tell r{i}" for i in range(20)
    )
    assert len(parts(folder)) == 1  # the old parts were cleared
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["template"] == "Tell {text}" and manifest["rows_done"] == 20

    # A call that finished no row (interrupted at once here) holds the folder to nothing.
    fake_api.handler = lambda body: Script(text="slow", latency=5)

    def stop(stats):
        raise KeyboardInterrupt

    empty = tmp_path / "empty"
    assert len(s.map(rows, "A {text}", checkpoint=empty, progress=stop)) == 0 and not parts(empty)
    fake_api.handler = None
    out = s.map(rows, "B {text}", checkpoint=empty, progress=False)
    assert list(out["reply"]) == [f"Echo: B r{i}" for i in range(20)]

    # A folder that holds other things, and no manifest, is not cleared.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ParameterError, match=r"holds other files \(notes.txt\)"):
        s.map(rows, "{text}", checkpoint=tmp_path / "mine", resume=False, progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_a_failed_row_is_kept_and_not_sent_again_unless_retry_errors(fake_api, tmp_path):
    def handler(body):
        if _prompt_text(body) == "3":
            return Script(
                status=400, error={"error": {"type": "invalid_params", "title": "Bad", "detail": "no 3s"}}
            )
        return Script(text=f"Echo: {_prompt_text(body)}")

    fake_api.handler = handler
    s = make_session(fake_api)
    folder = tmp_path / "run"
    rows = [str(i) for i in range(10)]
    out = s.map(rows, "{text}", checkpoint=folder, progress=False)
    assert out["finish_reason"][3] == "error" and "no 3s" in out["error"][3] and pd.isna(out["reply"][3])

    fake_api.handler = None  # would succeed now
    again = s.map(rows, "{text}", checkpoint=folder, progress=False)
    assert sent(fake_api)["3"] == 1  # by default a failed row is finished: not sent again
    pd.testing.assert_frame_equal(again, out)

    fixed = s.map(rows, "{text}", checkpoint=folder, retry_errors=True, progress=False)
    assert sent(fake_api)["3"] == 2 and sum(sent(fake_api).values()) == 11
    assert list(fixed["reply"]) == [f"Echo: {i}" for i in range(10)] and fixed["error"].isna().all()
    final = s.map(rows, "{text}", checkpoint=folder, progress=False)  # its last run counts
    pd.testing.assert_frame_equal(final.drop(columns="latency_s"), fixed.drop(columns="latency_s"))


class Person(BaseModel):
    name: str
    age: int


def test_typed_columns_survive_the_checkpoint(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(text=json.dumps({"name": _prompt_text(body), "age": 7}))
    s = make_session(fake_api)
    out = s.map(({"who": f"p{i}"} for i in range(30)), "{who}", schema=Person, checkpoint=tmp_path / "run",
                progress=False)  # fmt: skip
    assert list(out.columns) == ["who", "name", "age", "parsed", *MAP_COLUMNS]
    assert list(out["name"]) == [f"p{i}" for i in range(30)] and str(out["age"].dtype) == "Int64"
    assert out["parsed"][4] == Person(name="p4", age=7)
    with pytest.raises(ParameterError, match="schema="):
        s.map(({"who": f"p{i}"} for i in range(30)), "{who}", checkpoint=tmp_path / "run", progress=False)


def test_sources_and_missing_pyarrow(fake_api, tmp_path, monkeypatch):
    s = make_session(fake_api)
    out = s.map((f"g{i}" for i in range(3)), "{text}", progress=False)  # no checkpoint: read whole
    assert list(out["reply"]) == ["Echo: g0", "Echo: g1", "Echo: g2"]
    with pytest.raises(ParameterError, match="not a file"):
        s.map(str(tmp_path / "missing.parquet"), "{text}", progress=False)
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ParameterError, match="is not a Parquet file"):
        s.map(tmp_path / "x.parquet", "{text}", checkpoint=tmp_path / "run", progress=False)

    def mixed():
        yield "a"
        yield {"text": "b"}

    with pytest.raises(ParameterError, match="all dicts or all strings"):
        s.map(mixed(), "{text}", checkpoint=tmp_path / "mixed", progress=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match=r"checkpoint= needs pyarrow: pip install pyarrow"):
        s.map(["a"], "{text}", checkpoint=tmp_path / "nopa", progress=False)


def test_the_batch_log_of_two_runs_is_read_back_in_place(fake_api, tmp_path):
    s = make_session(fake_api)
    s.map(["a", "b"], "{text}", progress=False)
    first = s.map(("c" for _ in range(1)), "{text}", checkpoint=tmp_path / "one", progress=False)
    s.map(["d"], "{text}", progress=False)
    log = s.to_dataframe(batch=True)
    assert list(log["content"]) == ["a", "Echo: a", "b", "Echo: b", "c", "Echo: c", "d", "Echo: d"]
    assert list(log["batch_id"][4:6]) == [first.attrs["batch_id"]] * 2
    s.map(["e"], "{text}", checkpoint=tmp_path / "two", progress=False)
    assert list(s.to_dataframe(batch=True)["content"][8:]) == ["e", "Echo: e"]
    assert s.to_dataframe(batch=True).dtypes.equals(log.dtypes)


def test_a_budget_stops_a_checkpointed_run_and_a_larger_one_resumes_it(fake_api, tmp_path):
    s = Session(model="gpt-5-2-chat-latest", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=30.0)
    rows = (f"item {i}" for i in range(40))
    # With max_tokens a row costs at most its prompt plus 10 reply tokens: about 1e-4 dollars.
    out = s.map(rows, "Say {text}", checkpoint=tmp_path / "run", max_cost_usd=0.001, max_tokens=10,
                concurrency=1, progress=False)  # fmt: skip
    assert out.attrs["budget_stopped"] is True
    assert 0 < len(out) < 40 and out.attrs["cost_usd"] <= 0.001
    assert list(out["reply"]) == [f"Echo: Say item {i}" for i in range(len(out))]  # a prefix, all done
    first = len(out)

    out = s.map((f"item {i}" for i in range(40)), "Say {text}", checkpoint=tmp_path / "run", max_cost_usd=1.0,
                max_tokens=10, progress=False)  # fmt: skip
    assert out.attrs["budget_stopped"] is False and out.attrs["resumed_rows"] == first
    assert list(out["reply"]) == [f"Echo: Say item {i}" for i in range(40)]
    assert all(n == 1 for n in sent(fake_api).values()) and len(sent(fake_api)) == 40


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_checkpoint_in_use_by_another_process_is_refused_until_it_ends(fake_api, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    hold = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
    hold += "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(folder / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        s = make_session(fake_api)
        with pytest.raises(ParameterError, match="is in use by another run"):
            s.map(["a"], "{text}", checkpoint=folder, progress=False)
        assert fake_api.chat_requests() == []
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert list(s.map(["a"], "{text}", checkpoint=folder, progress=False)["reply"]) == ["Echo: a"]
    assert list(s.map(["a"], "{text}", checkpoint=folder, progress=False)["reply"]) == ["Echo: a"]  # let go
