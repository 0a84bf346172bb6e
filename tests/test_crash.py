"""A kernel killed (SIGKILL) mid-reply: the journal keeps what was received, less about a second.

A real IPython kernel runs ``%%oxen`` on a session with a journal, against the loopback fake API,
which streams a long reply slowly. The test reads the kernel's display messages on iopub the way
a frontend does, kills the kernel about five seconds after the first word showed up, and then
reads the journal back with ``Session.load`` in this process.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oxen_notebook import Session
from tests.fake_api import FakeAPI, Script

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
KEY = "crash-test-key"
PROMPT = "tell me a long story"
DELTAS = 3000
DELAY = 0.0035  # seconds between deltas: about 10.5 s for the whole reply
KILL_AFTER = 5.0  # seconds after the first word showed up on iopub
#: How much of the reply, in seconds of streaming, a crash may lose: the journal checkpoints
#: every 0.5 s, so 1 s leaves room for a late checkpoint on a busy machine.
ALLOWED_LOSS_SECONDS = 1.0
WORD = re.compile(r"\bw(\d{4})\b")


def story(deltas: int = DELTAS) -> list[str]:
    """``w0000 w0001 ...`` one word a delta, a paragraph every 40 words: each word is unique, so
    the last one on screen says exactly how much of the reply was shown."""
    return [f"w{i:04d}" if i == 0 else ("\n\n" if i % 40 == 0 else " ") + f"w{i:04d}" for i in range(deltas)]


def chars_per_second(chunks: list[str], delay: float) -> float:
    """The fastest the script can stream: it sleeps ``delay`` before each delta, so no faster."""
    return len("".join(chunks)) / (len(chunks) * delay)


class Kernel:
    """A real IPython kernel whose default session talks to ``api`` and journals to ``journal``."""

    def __init__(self, api: FakeAPI, journal: Path, config_dir: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        env = {k: v for k, v in os.environ.items() if k not in ("OXEN_API_KEY", "OXEN_BASE_URL")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["OXEN_CONFIG_DIR"] = str(config_dir)
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
        # What a user writes to journal the magic's conversation: the default session, made
        # with a journal before the extension makes one without.
        self.run(
            "import oxen_notebook\n"
            f"oxen_notebook.default_session(model='test-model', base_url={api.base_url!r}, "
            f"api_key={KEY!r}, journal={str(journal)!r})"
        )
        self.run("%load_ext oxen_notebook")

    def run(self, code: str, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Run ``code`` to the end; its iopub messages. Fails unless it ran without error."""
        msg_id = self.kc.execute(code)
        messages = list(self.iopub(msg_id, timeout=timeout, until_idle=True))
        reply = self.kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=10)
        assert reply["content"]["status"] == "ok", (code, reply["content"])
        return messages

    def iopub(self, msg_id: str, *, timeout: float, until_idle: bool = False) -> Iterator[dict[str, Any]]:
        """The iopub messages of ``msg_id`` as they come; ``{}`` every 50 ms with none."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                yield {}
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            yield msg
            if until_idle and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return
        raise TimeoutError(f"no end after {timeout} s of {msg_id}")

    def kill(self) -> None:
        """``kill -9`` the kernel process: nothing in it gets to run, no cleanup, no flush."""
        process = self.km.provisioner.process
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def last_word_shown(msg: dict[str, Any]) -> int:
    """The highest word number in a display message's HTML (-1 if none)."""
    if msg.get("msg_type") not in ("display_data", "update_display_data"):
        return -1
    html = msg["content"]["data"].get("text/html", "")
    return max((int(n) for n in WORD.findall(html)), default=-1)


def folded(records: list[dict[str, Any]], message_id: str) -> str:
    """A message's text as its journal records build it: a full record, then appended text."""
    text = ""
    for record in records:
        if record.get("message_id") == message_id:
            text = text + record["content_append"] if "content_append" in record else record["content"]
    return text


def journal_records(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the journal as JSON (each must parse); a torn last line, which a
    kill during a write can leave, is left out."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete, torn = lines[:-1], lines[-1]
    if torn:
        print(f"torn last line ({len(torn)} characters) left by the kill")
    return [json.loads(line) for line in complete]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture
def kernel(api: FakeAPI, tmp_path: Path) -> Iterator[Kernel]:
    api.reset()
    k = Kernel(api, tmp_path / "chat.jsonl", tmp_path / "oxen-config")
    yield k
    k.shutdown()


def test_sigkill_mid_reply_keeps_all_but_the_last_second(
    api: FakeAPI, kernel: Kernel, tmp_path: Path
) -> None:
    journal = tmp_path / "chat.jsonl"
    chunks = story()
    full = "".join(chunks)
    api.enqueue(Script(chunks=chunks, delay=DELAY))

    msg_id = kernel.kc.execute(f"%%oxen\n{PROMPT}")
    shown = -1  # the last word on screen
    first_shown_at: float | None = None
    for msg in kernel.iopub(msg_id, timeout=60):
        shown = max(shown, last_word_shown(msg))
        if shown >= 0 and first_shown_at is None:
            first_shown_at = time.monotonic()
        assert msg.get("msg_type") != "error", msg["content"]
        assert not (msg.get("msg_type") == "status" and msg["content"]["execution_state"] == "idle"), (
            f"the reply finished before the kill (word {shown} of {DELTAS} shown)"
        )
        if first_shown_at is not None and time.monotonic() - first_shown_at >= KILL_AFTER:
            kernel.kill()
            break
    seen = full.index(f"w{shown:04d}") + len("w0000")  # characters of the reply on screen
    loss = ALLOWED_LOSS_SECONDS * chars_per_second(chunks, DELAY)
    bound = seen - loss
    print(
        f"shown at the kill: {shown + 1} words, {seen} characters; allowed loss {loss:.0f}; bound {bound:.0f}"
    )
    assert bound > 0, "too little was shown before the kill for the test to mean anything"

    records = journal_records(journal)
    saved = Session.load(journal)
    # The user message and the partial reply, nothing else: one message per message_id.
    assert [m.role for m in saved.messages] == ["user", "assistant"], [m.role for m in saved.messages]
    user, assistant = saved.messages
    assert (user.role, user.content.strip()) == ("user", PROMPT)
    assert assistant.role == "assistant"
    assert assistant.finish_reason == "interrupted"
    assert full.startswith(assistant.content)
    print(f"in the journal: {len(assistant.content)} characters, {len(records)} records")
    assert len(assistant.content) >= bound, (len(assistant.content), seen, bound)
    assert assistant.message_id == records[-1]["message_id"]
    assert assistant.content == folded(records, assistant.message_id)

    # A kill during a write leaves a torn last line; loading must skip it, whether or not this
    # kill left one.
    torn = tmp_path / "torn.jsonl"
    last = json.dumps(records[-1], ensure_ascii=False)
    torn.write_text(journal.read_text(encoding="utf-8") + last[: len(last) // 2], encoding="utf-8")
    again = Session.load(torn)
    assert [(m.message_id, m.content, m.finish_reason) for m in again.messages] == [
        (m.message_id, m.content, m.finish_reason) for m in saved.messages
    ]


def test_finished_reply_is_one_message_after_its_checkpoints(
    api: FakeAPI, kernel: Kernel, tmp_path: Path
) -> None:
    journal = tmp_path / "chat.jsonl"
    chunks = story()
    full = "".join(chunks)
    api.enqueue(Script(chunks=chunks, delay=DELAY))

    kernel.run(f"%%oxen\n{PROMPT}")

    records = journal_records(journal)
    saved = Session.load(journal)
    assert [m.role for m in saved.messages] == ["user", "assistant"], [m.role for m in saved.messages]
    user, assistant = saved.messages
    assert (user.role, user.content.strip()) == ("user", PROMPT)
    assert (assistant.role, assistant.finish_reason, assistant.content) == ("assistant", "stop", full)
    states = [r for r in records if r["message_id"] == assistant.message_id]
    print(f"{len(states)} records of the reply: {len(states) - 1} checkpoints, then the final one")
    # The reply streamed for seconds, so it was checkpointed; the final record comes last.
    assert len(states) >= 3
    first, *appended, final = states
    assert first["finish_reason"] == "interrupted" and full.startswith(first["content"])
    # Later checkpoints carry only the new text: the journal grows linearly with the reply.
    assert all(set(r) == {"message_id", "content_append"} for r in appended)
    assert full.startswith(first["content"] + "".join(r["content_append"] for r in appended))
    assert records[-1] == final and final["finish_reason"] == "stop"
    assert len(records) == 1 + len(states)
    assert journal.stat().st_size < 3 * len(full.encode()) + 4096
