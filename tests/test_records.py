"""Records, DataFrame export, save/load, journal: round trips are exact and nothing is lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from oxen_notebook import Message, ParameterError, Session, StreamError
from tests.fake_api import FakeAPI, Script


def _conversation(session: Session, fake_api: FakeAPI) -> None:
    session.system = "You are terse."
    session.ask("one", temperature=0.3)
    fake_api.enqueue(Script(chunks=["partial", "rest"], drop_after=1))
    with pytest.raises(StreamError):
        session.ask("two")
    with session.stream("three") as reply:
        for _ in reply:
            break


def test_dataframe_has_one_row_per_message_with_dtypes(session, fake_api):
    _conversation(session, fake_api)
    df = session.to_dataframe()
    assert list(df["role"]) == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert list(df["finish_reason"].astype(object).fillna("-")) == [
        "-", "-", "stop", "-", "error", "-", "interrupted",
    ]  # fmt: skip
    assert isinstance(df["created_at"].dtype, pd.DatetimeTZDtype) and str(df["created_at"].dt.tz) == "UTC"
    assert str(df["total_tokens"].dtype) == "Int64"
    assert str(df["ttft_s"].dtype) == "Float64"
    assert df.loc[2, "total_tokens"] == 6  # the fake counts words: 4 in, 2 out
    assert pd.isna(df.loc[4, "total_tokens"])  # no usage came: unknown, not zero
    assert df.loc[1, "params"] == {"temperature": 0.3}
    assert df["conversation_id"].nunique() == 1
    assert df["message_id"].is_unique
    assert (df["source"] == "api").all()
    assert "partial reply was kept" in df.loc[4, "error"]


def test_from_dataframe_round_trips_exactly(session, fake_api):
    _conversation(session, fake_api)
    df = session.to_dataframe()
    again = Session.from_dataframe(df)
    assert again.messages == session.messages
    pd.testing.assert_frame_equal(again.to_dataframe(), df)
    assert again.conversation_id == session.conversation_id
    assert again.system == "You are terse."


def test_csv_copy_reads_back(session, fake_api, tmp_path):
    _conversation(session, fake_api)
    df = session.to_dataframe()
    path = tmp_path / "chat.csv"
    df.assign(params=df["params"].map(json.dumps), images=df["images"].map(json.dumps)).to_csv(
        path, index=False
    )
    again = Session.from_dataframe(pd.read_csv(path))
    assert [(m.role, m.content, m.finish_reason) for m in again.messages] == [
        (m.role, m.content, m.finish_reason) for m in session.messages
    ]


def test_save_and_load_round_trip_and_continue(session, fake_api, tmp_path):
    _conversation(session, fake_api)
    path = session.save(tmp_path / "chat.json")
    loaded = Session.load(path, base_url=fake_api.base_url, api_key="test-key")
    assert loaded.messages == session.messages
    assert loaded.model == "test-model"
    loaded.ask("four")
    sent = fake_api.chat_requests()[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assert sent[-1] == {"role": "user", "content": "four"}


def test_journal_appends_each_message_and_loads_back(fake_api, tmp_path):
    journal = tmp_path / "chat.jsonl"
    s = Session(model="test-model", base_url=fake_api.base_url, api_key="test-key", journal=journal)
    s.ask("a")
    fake_api.enqueue(Script(chunks=["half", "rest"], drop_after=1))
    with pytest.raises(StreamError):
        s.ask("b")
    lines = journal.read_text().splitlines()
    assert [json.loads(x)["role"] for x in lines] == ["user", "assistant", "user", "assistant"]
    assert Session.load(journal).messages == s.messages


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        Session.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParameterError, match="not a saved session"):
        Session.load(bad)
    with pytest.raises(ParameterError, match="lacks the column"):
        Session.from_dataframe(pd.DataFrame({"x": [1]}))


def test_message_to_api_with_images():
    m = Message(role="user", content="look", images=["https://e.com/a.png"])
    assert m.to_api() == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
        ],
    }


def test_usage_estimated_is_recorded_exported_and_read_back(session, fake_api, tmp_path):
    fake_api.enqueue(Script(text="counted here", usage=None))
    session.ask("one")
    session.ask("two")  # the fake sends usage for this one
    assert [m.usage_estimated for m in session.messages] == [False, True, False, False]
    df = session.to_dataframe()
    assert str(df["usage_estimated"].dtype) == "boolean"
    assert df["usage_estimated"].tolist() == [False, True, False, False]
    again = Session.from_dataframe(df)
    assert again.messages == session.messages
    pd.testing.assert_frame_equal(again.to_dataframe(), df)
    loaded = Session.load(session.save(tmp_path / "chat.json"))
    assert [m.usage_estimated for m in loaded.messages] == [False, True, False, False]
    path = tmp_path / "chat.csv"
    df.assign(params=df["params"].map(json.dumps), images=df["images"].map(json.dumps)).to_csv(
        path, index=False
    )
    assert [m.usage_estimated for m in Session.from_dataframe(pd.read_csv(path)).messages] == [
        False, True, False, False,
    ]  # fmt: skip


def test_files_written_before_usage_estimated_read_as_not_estimated(tmp_path):
    old = {"role": "assistant", "content": "hi", "prompt_tokens": 3, "completion_tokens": 1, "cached": True}
    message = Message.from_dict(old)
    assert (message.usage_estimated, message.cached, message.prompt_tokens) == (False, True, 3)
    assert Message.from_dict({**old, "usage_estimated": pd.NA}).usage_estimated is False
    assert Message.from_dict({**old, "usage_estimated": "False", "cached": "false"}).usage_estimated is False
    assert Message.from_dict({**old, "usage_estimated": "True"}).usage_estimated is True
    journal = tmp_path / "old.jsonl"
    journal.write_text(json.dumps({**old, "role": "user"}) + "\n" + json.dumps(old) + "\n")
    assert [m.usage_estimated for m in Session.load(journal).messages] == [False, False]


def test_facts_give_tokens_in_and_out_as_compare_does(fake_api: FakeAPI) -> None:
    from oxen_notebook._records import message_facts
    from tests.conftest import TEST_KEY

    fake_api.enqueue(Script(text="one two three"), Script(text="four"))
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    s.ask("first")
    reply = s.ask("second: the history goes in too")
    message = s.messages[-1]
    facts = message_facts(message)
    assert facts[0] == "test-model" and facts[1] == f"{message.total_tokens} tokens"
    assert facts[-1] == f"{message.prompt_tokens} in, {message.completion_tokens} out"
    assert message.prompt_tokens + message.completion_tokens == message.total_tokens
    assert reply.usage is not None
