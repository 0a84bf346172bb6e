"""The response cache: hits, misses, refresh, what the key covers, and concurrent writers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from oxen_notebook import CacheMissError, ParameterError, ServerError, Session, StreamError
from oxen_notebook._cache import ResponseCache, cache_key
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache.sqlite"


def cached_session(fake_api, cache, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, cache=cache, **kwargs)


def test_hit_and_miss(fake_api, db):
    s = cached_session(fake_api, db, temperature=0)
    first = s.ask("hello", history=False)
    second = s.ask("hello", history=False)
    other = s.ask("hello again", history=False)
    assert len(fake_api.chat_requests()) == 2
    assert second.text == first.text == "Echo: hello"
    assert (first.message.cached, second.message.cached, other.message.cached) == (False, True, False)
    assert second.message.completion_tokens == first.message.completion_tokens == 2
    # a conversation's first turn, asked again after a reset, is a hit recorded in history
    s.ask("hello")
    s.reset()
    s.ask("hello")
    assert list(s.to_dataframe()["cached"]) == [False, True]
    # streaming a hit yields its text; a second session on the same file hits too
    s2 = cached_session(fake_api, db, temperature=0)
    assert "".join(s2.stream("hello again", history=False)) == "Echo: hello again"
    assert len(fake_api.chat_requests()) == 2


def test_history_is_part_of_the_key(fake_api, db):
    s = cached_session(fake_api, db, temperature=0)
    s.ask("one")
    s.ask("two")
    s.reset()
    s.ask("two")  # same prompt, no history before it: a different request
    assert len(fake_api.chat_requests()) == 3


def test_temperature_rules(fake_api, db):
    s = cached_session(fake_api, db)
    s.ask("x", history=False, temperature=0.7)
    s.ask("x", history=False, temperature=0.7)
    s.ask("x", history=False)  # no temperature: the model's default samples, so not cached either
    s.ask("x", history=False)
    assert len(fake_api.chat_requests()) == 4
    assert len(s.cache) == 0
    s.cache.mode = "always"
    s.ask("x", history=False, temperature=0.7)
    hit = s.ask("x", history=False, temperature=0.7)
    assert len(fake_api.chat_requests()) == 5 and hit.message.cached


def test_refresh_bypasses_reads_and_overwrites(fake_api, db):
    replies = iter(["old", "new", "unused"])
    fake_api.handler = lambda body: Script(text=next(replies))
    s = cached_session(fake_api, db, temperature=0)
    assert s.ask("q", history=False).text == "old"
    refreshed = cached_session(fake_api, db, temperature=0)
    refreshed.cache.mode = "refresh"
    fresh = refreshed.ask("q", history=False)
    assert fresh.text == "new" and not fresh.message.cached
    again = s.ask("q", history=False)
    assert again.text == "new" and again.message.cached
    assert len(fake_api.chat_requests()) == 2
    assert Session(cache="refresh").cache.mode == "refresh"


def test_key_covers_endpoint_model_messages_params_but_not_the_api_key(fake_api, db):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "stream": True}
    key = cache_key("https://a/api", body)
    assert key == cache_key("https://a/api/", {**body, "stream": False, "stream_options": {"x": 1}})
    assert key != cache_key("https://b/api", body)
    assert key != cache_key("https://a/api", {**body, "model": "n"})
    assert key != cache_key("https://a/api", {**body, "max_tokens": 5})
    assert key != cache_key("https://a/api", {**body, "messages": [{"role": "user", "content": "ho"}]})

    fake_api.api_key = None
    one = cached_session(fake_api, db, temperature=0)
    one.api_key = "sk-first-secret"
    one.ask("shared")
    two = cached_session(fake_api, db, temperature=0)
    two.api_key = "sk-second-secret"
    assert two.ask("shared").message.cached
    other = cached_session(fake_api, db, temperature=0, max_tokens=9)
    assert other.ask("shared").message.cached is False
    raw = b"".join(p.read_bytes() for p in db.parent.glob("cache.sqlite*"))
    assert b"secret" not in raw


def test_failed_and_cut_off_replies_are_not_stored(fake_api, db):
    s = cached_session(fake_api, db, temperature=0, max_retries=0)
    fake_api.enqueue(Script(status=500), Script(text="a b c", drop_after=1), Script(text="ok"))
    with pytest.raises(ServerError):
        s.ask("q", history=False)
    with pytest.raises(StreamError, match="connection"):
        s.ask("q", history=False)
    assert len(s.cache) == 0
    assert s.ask("q", history=False).text == "ok"
    assert len(s.cache) == 1


def test_map_uses_the_cache(fake_api, db):
    fake_api.handler = lambda body: Script(text=f"Echo: {_prompt_text(body)}", latency=0.02)
    s = cached_session(fake_api, db, temperature=0)
    rows = [f"r{i}" for i in range(100)]
    first = s.map(rows, "{text}", concurrency=16, progress=False)
    assert len(s.cache) == 100 and not first["cached"].any()
    again = s.map(rows, "{text}", concurrency=16, progress=False)
    assert len(fake_api.chat_requests()) == 100
    assert again["cached"].all()
    assert list(again["reply"]) == list(first["reply"])
    assert (again["cost_usd"] == 0).all()


def test_concurrent_writers_in_threads(db):
    cache = ResponseCache(db)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(100):
                cache.put(f"{worker}-{i}", "m", {"text": f"{worker}:{i}"})
                cache.put(f"shared-{i}", "m", {"text": f"shared {i}"})
                assert cache.get(f"{worker}-{i}") == {"text": f"{worker}:{i}"}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) == 900
    cache.close()


def test_concurrent_writers_in_two_processes(db):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from oxen_notebook._cache import ResponseCache
        name = sys.argv[1]
        cache = ResponseCache(sys.argv[2])
        for i in range(300):
            cache.put(f"{{name}}-{{i}}", "m", {{"text": f"{{name}} {{i}}"}})
            cache.put(f"shared-{{i % 50}}", "m", {{"text": "shared"}})
            assert cache.get(f"{{name}}-{{i}}") == {{"text": f"{{name}} {{i}}"}}
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, name, str(db)], stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    cache = ResponseCache(db)
    assert len(cache) == 650
    assert cache.get("a-299") == {"text": "a 299"} and cache.get("b-0") == {"text": "b 0"}
    cache.close()


def test_default_location_and_bad_values(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s = Session(cache=True)
    assert s.cache.path == tmp_path / "xdg" / "oxen_notebook" / "responses.sqlite"
    assert s.cache.path.exists() and s.cache.mode == "on"
    assert Session(cache="always").cache.mode == "always"
    assert Session().cache is None
    with pytest.raises(ParameterError, match="cache"):
        Session(cache=3)
    with pytest.raises(ParameterError, match="mode"):
        s.cache.mode = "sometimes"
    s.cache.clear()
    assert len(s.cache) == 0


def cache_lines(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage() for r in records if r.name == "oxen_notebook" and "response cache" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[1, 2]",
        '{"text": 5, "finish_reason": "stop"}',
        '{"text": "x", "tool_calls": [7]}',
        "null",
    ],
)
def test_a_damaged_row_is_a_miss_logged_once_and_then_replaced(fake_api, db, caplog, damage):
    s = cached_session(fake_api, db, temperature=0)
    for prompt in ("one", "two", "three"):
        s.ask(prompt, history=False)
    with sqlite3.connect(db) as connection:  # another program, or a bug, wrote these rows
        connection.execute("UPDATE replies SET reply = ?", (damage,))
    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        again = [s.ask("one", history=False), s.ask("two", history=False)]
        again.append(asyncio.run(s.aask("three", history=False)))
        assert [r.text for r in again] == ["Echo: one", "Echo: two", "Echo: three"]
        assert not any(r.message.cached for r in again) and not s.busy
        assert len(fake_api.chat_requests()) == 6  # every damaged row was a miss: sent again
        s.ask("four")  # the session goes on
    (said,) = cache_lines(caplog.records)  # once, however many rows
    assert f"the response cache {str(db)!r} holds a damaged reply" in said and "\n" not in said
    # The replies sent again replaced the damaged rows: now they are hits.
    assert s.ask("one", history=False).message.cached
    assert len(fake_api.chat_requests()) == 7


def test_a_damaged_row_in_replay_mode_is_a_miss_that_says_so(fake_api, db):
    s = cached_session(fake_api, db, temperature=0)
    s.ask("one", history=False)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE replies SET reply = '{not json'")
    replay = cached_session(fake_api, db, temperature=0)
    replay.cache.mode = "replay"
    with pytest.raises(CacheMissError, match="its stored reply is damaged; record it again"):
        replay.ask("one")
    assert not replay.busy and replay.messages[-1].finish_reason == "error"


def test_a_file_that_is_not_sqlite_is_one_line_naming_it_and_left_as_it_was(tmp_path):
    damaged = tmp_path / "responses.sqlite"
    damaged.write_bytes(b"these are my notes, not a database\n" * 200)
    before = damaged.read_bytes()
    for cache in (damaged, ResponseCache):
        with pytest.raises(ParameterError) as caught:
            Session(cache=cache(damaged) if cache is ResponseCache else cache)
        message = str(caught.value)
        assert message.startswith(
            f"the response cache {str(damaged)!r} cannot be used (file is not a database)"
        )
        assert "Move or delete it" in message and "\n" not in message
    assert damaged.read_bytes() == before  # the user's file is not moved or changed


def test_a_cache_damaged_while_in_use_is_skipped_and_said_once(fake_api, db, caplog):
    s = cached_session(fake_api, db, temperature=0)
    s.ask("one", history=False)
    s.cache.close()  # the file is replaced under the session (another program, a disk fault)
    for name in [db.name, f"{db.name}-wal", f"{db.name}-shm"]:
        (db.parent / name).unlink(missing_ok=True)
    db.write_bytes(b"\x00garbage" * 1000)
    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        replies = [s.ask("one"), s.ask("two"), s.ask("three")]
    assert [r.text for r in replies] == ["Echo: one", "Echo: two", "Echo: three"] and not s.busy
    lines = cache_lines(caplog.records)
    assert [line.split(" (")[0] for line in lines] == [
        f"oxen_notebook: the response cache {str(db)!r} could not be read",
        f"oxen_notebook: the response cache {str(db)!r} could not be written",
    ]
