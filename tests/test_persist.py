"""The journal: checkpoints of a streaming reply, and reading back the last state of each message."""

from __future__ import annotations

import json

import pytest

from oxen_notebook import ParameterError, Session
from oxen_notebook._persist import CHECKPOINT_SECONDS
from tests.fake_api import Script


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


def test_a_broken_line_inside_the_journal_is_an_error(tmp_path):
    journal = tmp_path / "chat.jsonl"
    journal.write_text('{"role": "user", "content": "a"}\nnot json\n{"role": "user", "content": "b"}\n')
    with pytest.raises(ParameterError, match="is not a saved session or journal"):
        Session.load(journal)
