"""cache="replay": answers only from a recorded cache and sends nothing, not even GET /models/{id};
a miss is a one-line CacheMissError naming the key (and, in map, the row)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from oxen_notebook import CacheMissError, OxenError, ParameterError, Session
from oxen_notebook._cache import ResponseCache, cache_key
from tests.conftest import TEST_KEY
from tests.fake_api import NO_JSON_SCHEMA_MODEL, Script, _prompt_text

GPT = "gpt-5-2-chat-latest"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "responses.sqlite"


def session(fake_api, cache, model: str = GPT, **kwargs) -> Session:
    return Session(model=model, base_url=fake_api.base_url, api_key=TEST_KEY, cache=cache, **kwargs)


def replayer(fake_api, db: Path, **kwargs) -> Session:
    return session(fake_api, ResponseCache(db, mode="replay"), **kwargs)


def record(fake_api, db: Path) -> tuple[Session, list[str]]:
    """A notebook's run: a conversation, a streamed one-shot, and a map, all at temperature 0."""
    s = session(fake_api, db, temperature=0, system="Be brief.")
    s.ask("first question")
    s.ask("second question")
    "".join(s.stream("streamed", history=False))
    rows = [f"row {i}" for i in range(5)]
    s.map(rows, "Label: {text}", progress=False, max_cost_usd=1.0)
    assert len(fake_api.chat_requests()) == 8
    return s, rows


def test_every_answer_comes_from_the_cache_and_nothing_is_sent(fake_api, db):
    recorded, rows = record(fake_api, db)
    stored = len(recorded.cache)
    fake_api.reset()
    fake_api.handler = lambda body: Script(text="SENT")  # anything that reaches the server shows

    s = replayer(fake_api, db, temperature=0, system="Be brief.")
    assert s.cache.replaying
    assert s.ask("first question").text == "Echo: first question"
    assert s.ask("second question").text == "Echo: second question"  # its key holds the history
    assert "".join(s.stream("streamed", history=False)) == "Echo: streamed"
    out = s.map(rows, "Label: {text}", progress=False, max_cost_usd=1.0)  # no prices needed: nothing sent
    assert list(out["reply"]) == [f"Echo: Label: {r}" for r in rows]
    assert out["cached"].all() and out["error"].isna().all()
    assert out.attrs["cost_usd"] == 0 and out.attrs["budget_stopped"] is False

    assert fake_api.requests == []  # not even GET /models/{id}
    history = s.to_dataframe()
    assert list(history["role"]) == ["system", "user", "assistant", "user", "assistant"]
    assert list(history["cached"][history["role"] == "assistant"]) == [True, True]
    assert s.usage()["cache_hits"].sum() == 8 and s.usage()["requests"].sum() == 0
    assert len(s.cache) == stored  # replay writes nothing


def test_session_cache_replay_reads_the_default_file(fake_api, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    recording = session(fake_api, True, temperature=0)
    recording.ask("hello", history=False)
    recording.close()
    fake_api.reset()
    s = session(fake_api, "replay", temperature=0)
    assert s.cache.mode == "replay" and s.cache.path == recording.cache.path
    assert s.ask("hello", history=False).message.cached
    assert fake_api.requests == []


def test_a_miss_names_the_key_and_sends_nothing(fake_api, db):
    session(fake_api, db, temperature=0).ask("recorded", history=False)
    fake_api.reset()
    s = replayer(fake_api, db, temperature=0)
    with pytest.raises(CacheMissError) as info:
        s.ask("never asked", history=False)
    body = {"model": GPT, "messages": [{"role": "user", "content": "never asked"}], "temperature": 0}
    key = cache_key(fake_api.base_url, body)
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"not in the replay cache (key {key[:12]}…) — record it first")
    assert "\n" not in message
    assert isinstance(info.value, OxenError)
    failed = s.to_dataframe(batch=False)
    assert failed.empty  # a one-shot request: no history
    assert fake_api.requests == []

    # A request the recording did not store (no temperature=0 under mode "on") misses too.
    with pytest.raises(CacheMissError):
        s.ask("recorded", history=False, temperature=0.7)
    assert fake_api.requests == []


def test_replay_reads_any_temperature_that_was_recorded(fake_api, db):
    session(fake_api, ResponseCache(db, mode="always")).ask("warm", history=False, temperature=0.9)
    fake_api.reset()
    assert replayer(fake_api, db).ask("warm", history=False, temperature=0.9).text == "Echo: warm"
    assert fake_api.requests == []


def test_a_map_miss_names_the_row(fake_api, db):
    session(fake_api, db, temperature=0).map([f"r{i}" for i in range(4)], "{text}", progress=False)
    fake_api.reset()
    s = replayer(fake_api, db, temperature=0)
    out = s.map([f"r{i}" for i in range(6)], "{text}", progress=False, concurrency=3)
    assert list(out["reply"][:4]) == [f"Echo: r{i}" for i in range(4)]
    assert out["cached"][:4].all()
    misses = out["error"][4:]
    for row, error in zip((4, 5), misses, strict=True):
        body = {"model": GPT, "messages": [{"role": "user", "content": f"r{row}"}], "temperature": 0}
        assert error.startswith(f"not in the replay cache (key {cache_key(fake_api.base_url, body)[:12]}…)")
    assert out["reply"][4:].isna().all() and set(out["finish_reason"][4:]) == {"error"}

    with pytest.raises(CacheMissError) as info:
        s.map(["r0", "r1", "r9"], "{text}", progress=False, on_error="raise")
    assert str(info.value).startswith("row 2: not in the replay cache (key ")
    assert info.value.row == 2
    assert fake_api.requests == []


@dataclass
class Person:
    name: str
    age: int


def test_a_schema_row_recorded_with_the_json_object_fallback_replays(fake_api, db):
    """Replay reads no model details, so it cannot know the model takes only json_object: the
    fallback body the recording sent is looked up too, and its repair follows it."""
    fake_api.handler = lambda body: Script(text=json.dumps({"name": _prompt_text(body)[-3:], "age": 36}))
    rec = session(fake_api, db, model=NO_JSON_SCHEMA_MODEL, temperature=0)
    recorded = rec.map(["Ada", "Bob"], "Extract {text}", schema=Person, progress=False)
    sent = fake_api.chat_requests()
    assert [b["response_format"]["type"] for b in sent] == ["json_object", "json_object"]
    fake_api.reset()

    s = session(fake_api, ResponseCache(db, mode="replay"), model=NO_JSON_SCHEMA_MODEL, temperature=0)
    out = s.map(["Ada", "Bob"], "Extract {text}", schema=Person, progress=False)
    assert list(out["name"]) == list(recorded["name"]) == ["Ada", "Bob"]
    assert out["cached"].all() and out["error"].isna().all()
    assert fake_api.requests == []


def test_replay_mode_switches_and_setup_errors(fake_api, db, monkeypatch):
    with pytest.raises(ParameterError, match="does not exist"):
        ResponseCache(db, mode="replay")
    s = session(fake_api, db, temperature=0)
    s.ask("q", history=False)
    s.cache.mode = "replay"
    fake_api.reset()
    assert s.ask("q", history=False).message.cached
    with pytest.raises(CacheMissError):
        s.ask("other", history=False)
    assert fake_api.requests == []
    # OXEN_CACHE_MODE=replay: the notebook that recorded with cache=path replays unchanged (CI).
    monkeypatch.setenv("OXEN_CACHE_MODE", "replay")
    ci = session(fake_api, db, temperature=0)
    assert ci.cache.mode == "replay"
    assert ci.ask("q", history=False).message.cached and fake_api.requests == []
    monkeypatch.setenv("OXEN_CACHE_MODE", "sometimes")
    with pytest.raises(ParameterError, match="OXEN_CACHE_MODE='sometimes' is invalid"):
        session(fake_api, db)
