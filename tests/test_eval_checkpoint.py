"""evaluate(checkpoint=DIR): finished requests kept on disk, matched by what they send, so a rerun
over edited data sends exactly the changed requests and never shows a reply next to another row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from oxen_notebook import scorers
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"a": "A {text}", "b": "B {text}"}


def echoes(reply, row):
    """The reply is the echo of this row's own prompt (any other row's would fail)."""
    return reply in (f"Echo: A {row['text']}", f"Echo: B {row['text']}")


def run(session, data, path, **kwargs):
    return session.evaluate(data, VARIANTS, scorers=[echoes], checkpoint=path, progress=False, **kwargs)


def test_a_rerun_sends_nothing_and_edited_rows_only_their_requests(session, fake_api, tmp_path):
    data = pd.DataFrame({"text": [f"row {i}" for i in range(150)]})
    first = run(session, data, tmp_path / "ck")
    assert len(fake_api.chat_requests()) == 300 and first.summary["echoes"].tolist() == [1.0, 1.0]
    again = run(session, data, tmp_path / "ck")
    assert len(fake_api.chat_requests()) == 300  # nothing sent
    assert again.summary["echoes"].tolist() == [1.0, 1.0] and again.rows["cached"].all()
    edited = data.drop(index=[120]).copy()  # a row removed after row 100
    edited.loc[5, "text"] = "row 5, edited"
    edited = pd.concat([edited.iloc[:50], pd.DataFrame({"text": ["a new row"]}), edited.iloc[50:]])
    edited = edited.iloc[::-1].reset_index(drop=True)  # and the order reversed
    before = len(fake_api.chat_requests())
    after = run(session, edited, tmp_path / "ck")
    sent = sorted(_prompt_text(b) for b in fake_api.chat_requests()[before:])
    assert sent == ["A a new row", "A row 5, edited", "B a new row", "B row 5, edited"]
    assert after.summary["echoes"].tolist() == [1.0, 1.0]  # every reply is its own row's
    assert after.summary["n"].tolist() == [150, 150]


def test_a_torn_line_is_skipped_and_its_request_sent_again(session, fake_api, tmp_path):
    data = pd.DataFrame({"text": [f"row {i}" for i in range(10)]})
    run(session, data, tmp_path / "ck")
    log = tmp_path / "ck" / "requests.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the disk filled mid-line
    lost = json.loads(lines[-1])["key"]
    before = len(fake_api.chat_requests())
    again = run(session, data, tmp_path / "ck")
    sent = [_prompt_text(b) for b in fake_api.chat_requests()[before:]]
    assert len(sent) == 1 and json.loads(lost)[0] == sent[0]
    assert again.summary["echoes"].tolist() == [1.0, 1.0]


def test_failed_requests_stay_finished_unless_retry_errors(session, fake_api, tmp_path):
    data = pd.DataFrame({"text": ["x", "y"]})
    fake_api.handler = lambda body: Script(status=400, error={"error": {"message": "bad"}}) if "y" in _prompt_text(
        body) else Script(text=f"Echo: {_prompt_text(body)}")  # fmt: skip
    first = run(session, data, tmp_path / "ck")
    assert first.summary["errors"].tolist() == [1, 1]
    fake_api.handler = None
    run(session, data, tmp_path / "ck")
    assert len(fake_api.chat_requests()) == 4
    fixed = run(session, data, tmp_path / "ck", retry_errors=True)
    assert len(fake_api.chat_requests()) == 6 and fixed.summary["errors"].tolist() == [0, 0]
    over = run(session, data, tmp_path / "ck", resume=False)
    assert len(fake_api.chat_requests()) == 10 and over.summary["n"].tolist() == [2, 2]


@pytest.mark.slow
def test_a_killed_run_resends_at_most_about_a_seconds_worth(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=0.05)
    script = textwrap.dedent(f"""
        import pandas as pd
        from oxen_notebook import Session
        s = Session(model="test-model", base_url={fake_api.base_url!r}, api_key={TEST_KEY!r})
        data = pd.DataFrame({{"text": [f"row {{i}}" for i in range(4000)]}})
        s.evaluate(data, {VARIANTS!r}, scorers=[lambda reply, row: True], concurrency=8,
                   checkpoint={str(tmp_path / "ck")!r}, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while len(fake_api.chat_requests()) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    sent_before = len(fake_api.chat_requests())
    logged = len((tmp_path / "ck" / "requests.jsonl").read_text().splitlines())
    assert 200 <= sent_before < 8000
    # The log holds every finished request but those in flight, and at most a second's writes.
    assert logged >= sent_before - 8 - 8 * 20, (logged, sent_before)
    s = __import__("oxen_notebook").Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    data = pd.DataFrame({"text": [f"row {i}" for i in range(4000)]})
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}")
    ev = s.evaluate(data, VARIANTS, scorers=[scorers.regex("Echo")], checkpoint=tmp_path / "ck", progress=False,
                    concurrency=16)  # fmt: skip
    resent = len(fake_api.chat_requests()) - sent_before - (8000 - logged)
    assert resent == 0  # what the log had is never sent again
    assert ev.summary["n"].tolist() == [4000, 4000]
