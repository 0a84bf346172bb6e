"""The journal: checkpoints of a streaming reply, and reading back the last state of each message."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oxen_notebook import ParameterError, Session
from oxen_notebook._persist import CHECKPOINT_SECONDS
from tests.fake_api import Script

ROOT = Path(__file__).resolve().parent.parent


def test_a_streaming_reply_is_checkpointed_and_loads_once(fake_api, tmp_path):
    journal = tmp_path / "chat.jsonl"
    chunks = [f"w{i} " for i in range(300)]
    # Long enough for several checkpoints whatever the machine's speed.
    fake_api.enqueue(Script(chunks=chunks, delay=CHECKPOINT_SECONDS * 2.6 / len(chunks)))
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=fake_api.api_key, journal=journal)
    reply = s.ask("story")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    partial = [r for r in records if r.get("finish_reason") == "interrupted" or "content_append" in r]
    assert len(partial) >= 2 and all(r["message_id"] == reply.message.message_id for r in partial)
    first, *later = partial
    # The first checkpoint is the record so far; later ones only the text that came since.
    assert all(set(r) == {"message_id", "content_append"} for r in later)
    assert reply.text.startswith(first["content"] + "".join(r["content_append"] for r in later))
    loaded = Session.load(journal).messages
    assert [(m.role, m.finish_reason, m.content) for m in loaded] == [
        ("user", None, "story"),
        ("assistant", "stop", "".join(chunks)),
    ]


def test_load_keeps_the_last_checkpoint_and_drops_a_torn_last_line(fake_api, tmp_path):
    journal = tmp_path / "chat.jsonl"
    chunks = [f"w{i} " for i in range(300)]
    fake_api.enqueue(Script(chunks=chunks, delay=CHECKPOINT_SECONDS * 2.6 / len(chunks)))
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=fake_api.api_key, journal=journal)
    s.ask("story")
    lines = journal.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    last_partial = max(i for i, r in enumerate(records) if "content_append" in r)
    expected = "".join(
        r.get("content", "") + r.get("content_append", "") for r in records[1 : last_partial + 1]
    )
    # What a process killed mid-reply leaves: the lines up to a checkpoint, then half a line.
    journal.write_text("\n".join(lines[: last_partial + 1]) + "\n" + lines[-1][:40])
    loaded = Session.load(journal).messages
    assert [m.role for m in loaded] == ["user", "assistant"]
    assert loaded[1].finish_reason == "interrupted"
    assert loaded[1].content == expected


def journal_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "oxen_notebook" and "journal" in r.getMessage()]


def test_damaged_lines_inside_the_journal_are_skipped_and_counted(tmp_path, caplog):
    journal = tmp_path / "chat.jsonl"
    a, b, c = ({"message_id": m, "role": "user", "content": m} for m in "abc")
    torn = json.dumps({"message_id": "t", "role": "assistant", "content": "cut short by a full d"})[:-12]
    journal.write_text(
        # A line cut short, then more appends: on a line of their own (this writer), or right after
        # the torn piece (the writer of 0.x, which did not start a new line).
        f"{json.dumps(a)}\n{torn}\n{json.dumps(b)}\n{torn}{json.dumps(c)}\nnot json\n[1, 2]\n"
    )
    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        loaded = Session.load(journal).messages
    assert [m.content for m in loaded] == ["a", "b", "c"]
    (said,) = journal_lines(caplog.records)
    assert "skipped 4 damaged lines" in said and "loaded the 3 whole messages" in said
    # Checkpoints after a lost line may continue lost text: the last whole state is kept instead.
    first = {"message_id": "r", "role": "assistant", "content": "one ", "finish_reason": "interrupted"}
    lost = json.dumps({"message_id": "r", "content_append": "two "})[:-5]
    later = {"message_id": "r", "content_append": "three "}
    journal.write_text(f"{json.dumps(a)}\n{json.dumps(first)}\n{lost}\n{json.dumps(later)}\n")
    assert [m.content for m in Session.load(journal).messages] == ["a", "one "]


def test_a_file_with_no_whole_record_is_an_error(tmp_path):
    journal = tmp_path / "chat.jsonl"
    journal.write_text('not json\n{"role": "us\n')
    with pytest.raises(ParameterError, match="2 damaged lines and no whole record"):
        Session.load(journal)


def test_a_journal_that_cannot_be_written_says_so_once_and_catches_up(fake_api, tmp_path, caplog):
    journal = tmp_path / "chat.jsonl"
    # A file replaced by a directory: nobody, root included, can append to it (chmod stops no root).
    journal.mkdir()
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=fake_api.api_key, journal=journal)
    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        replies = [s.ask("one"), s.ask("two")]
        assert [r.text for r in replies] == ["Echo: one", "Echo: two"] and not s.busy
        (said,) = journal_lines(caplog.records)
        assert "is not being written: Is a directory" in said and "\n" not in said
        journal.rmdir()
        s.ask("three")  # the records that waited are written first, in order
    assert "being written again (4 records that waited were added)" in journal_lines(caplog.records)[-1]
    loaded = Session.load(journal).messages
    assert [m.content for m in loaded] == [m.content for m in s.messages] == [
        "one", "Echo: one", "two", "Echo: two", "three", "Echo: three",
    ]  # fmt: skip


# A real full disk and a real read-only file system: a small tmpfs in a private mount namespace
# (unshare), which disappears with the process. Root ignores file modes, not a full or read-only
# file system, so this holds on CI, which runs as root; --map-root-user lets others run it too.
_DISK_SCRIPT = r"""
import json, logging, os, subprocess, sys
from oxen_notebook import Session

base_url, key, folder = sys.argv[1:4]
said = []
handler = logging.Handler()
handler.emit = lambda record: said.append(record.getMessage())
logging.getLogger("oxen_notebook").addHandler(handler)
journal = os.path.join(folder, "chat.jsonl")
s = Session(model="test-model", base_url=base_url, api_key=key, journal=journal)
out = {"texts": [], "said": said, "busy": []}

def ask(prompt):
    out["texts"].append(s.ask(prompt).text)
    out["busy"].append(s.busy)

ask("one")
saved = os.path.join(folder, "saved.json")
s.save(saved)
fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError as exc:
    out["fill"] = exc.strerror
os.close(fd)
try:
    s.save(saved)  # written to a new file first: no room for it
except OSError as exc:
    out["save"] = exc.strerror
out["saved"] = [m.content for m in Session.load(saved).messages]
out["folder"] = sorted(os.listdir(folder))
ask(" ".join(["two"] * 1500))  # longer than the room left in the journal's last page: a line cut short
ask("three")
out["said_while_full"] = len(said)
os.remove(os.path.join(folder, "filler"))
ask("four")
out["loaded"] = [m.content for m in Session.load(journal).messages]
subprocess.run(["mount", "-o", "remount,ro", folder], check=True)
ask("five")
ask("six")
out["loaded_read_only"] = [m.content for m in Session.load(journal).messages]
subprocess.run(["mount", "-o", "remount,rw", folder], check=True)
ask("seven")
out["loaded_at_end"] = [m.content for m in Session.load(journal).messages]
out["messages"] = [m.content for m in s.messages]
with open(journal, "rb") as f:
    out["torn"] = sum(1 for line in f.read().split(b"\n") if line and not line.endswith(b"}"))
print(json.dumps(out))
"""


def test_a_full_disk_and_a_read_only_folder_leave_the_session_usable(fake_api, tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = 'mount -t tmpfs -o size=64k tmpfs "$1" && shift && exec "$@"'
    command = ["unshare", "--mount", "--map-root-user", "sh", "-c", mount, "sh", str(folder)]
    command += [sys.executable, "-c", _DISK_SCRIPT, fake_api.base_url, fake_api.api_key, str(folder)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    asked = ["one", " ".join(["two"] * 1500), "three", "four", "five", "six", "seven"]
    both = [text for prompt in asked for text in (prompt, f"Echo: {prompt}")]
    assert out["fill"] == "No space left on device"
    # An explicit save on a full disk fails, leaving the file as it was and no half-written copy.
    assert out["save"] == "No space left on device" and out["saved"] == both[:2]
    assert out["folder"] == ["chat.jsonl", "filler", "saved.json"]
    assert out["texts"] == both[1::2] and not any(out["busy"])
    # One line per change: cannot write (and why), written again, and each load's skipped torn line.
    journal = repr(str(folder / "chat.jsonl"))
    cannot = f"oxen_notebook: the journal {journal} is not being written: "
    again = f"oxen_notebook: the journal {journal} is being written again (4 records that waited were added)."
    skipped = f"oxen_notebook: skipped 1 damaged line of the journal {journal} (cut short by a crash or a full disk)"
    starts = [
        cannot + "No space left on device. The conversation goes on in memory",
        again,
        skipped + " and loaded the 8 whole messages.",
        cannot + "Read-only file system.",
        skipped + " and loaded the 8 whole messages.",
        again,
        skipped + " and loaded the 14 whole messages.",
    ]
    assert len(out["said"]) == len(starts) and out["said_while_full"] == 1, out["said"]
    assert all(line.startswith(start) for line, start in zip(out["said"], starts, strict=True)), out["said"]
    assert out["torn"] == 1  # the record the full disk cut short, on a line of its own
    assert out["loaded"] == both[:8]  # nothing lost: what waited was written once there was room
    assert out["loaded_read_only"] == both[:8]
    assert out["loaded_at_end"] == out["messages"] == both
