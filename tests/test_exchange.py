"""A reply's failure path against hostile servers (the loopback fake API): malformed chunks, an
error inside the assembler, answers that are not event streams, bodies without end, trickles.

Whatever goes wrong, the reply ends recorded as an error, the session is free for the next ask,
and the error is one line that says what came."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import tracemalloc

import pytest
from IPython.utils.capture import capture_output

import oxen_notebook
from oxen_notebook import APITimeoutError, OxenError, Session, StreamError
from oxen_notebook._assembler import Assembler
from oxen_notebook._magics import OxenCellError
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script, _prompt_text

DEEP = "[" * 100_000 + "]" * 100_000


def _delta(delta: object) -> dict:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


def _call(function: object) -> dict:
    return _delta({"tool_calls": [{"index": 0, "id": "call_0", "type": "function", "function": function}]})


# Valid JSON of the wrong shape, each after a first piece of text ("ok"), and what the error names.
HOSTILE = {
    "content a number": (_delta({"content": 5}), "content is 5"),
    "content an object": (_delta({"content": {"text": "x"}}), "content is {'text': 'x'}"),
    "choices a string": ({"choices": "nope"}, "choices is 'nope'"),
    "choices an object": ({"choices": {"0": {}}}, "choices is {'0': {}}"),
    "choices a list of null": ({"choices": [None]}, "choices[0] is None"),
    "delta a list": (_delta(["x"]), "delta is ['x']"),
    "tool name a number": (_call({"name": 7, "arguments": ""}), "function.name is 7"),
    "arguments an object": (_call({"name": "f", "arguments": {"a": 1}}), "function.arguments is {'a': 1}"),
    "finish_reason a list": (
        {"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}]},
        "finish_reason is ['stop']",
    ),
    "tool index a string": (
        _delta({"tool_calls": [{"index": "0", "function": {"name": "f"}}]}),
        "index is '0'",
    ),
    "JSON nested 100,000 deep": (DEEP, "nested too deeply"),
    "a long value is cut short": (_delta({"content": {"text": "y" * 10_000}}), "content is {'text': 'yyyy"),
}


def make_session(fake_api: FakeAPI, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0, **kwargs)


def assert_usable(s: Session, fake_api: FakeAPI) -> None:
    """The session is free: the next ask on it works, and its history is whole."""
    assert not s.busy
    fake_api.enqueue(Script(text="fine again"))
    assert s.ask("next").text == "fine again"
    assert s.messages[-1].content == "fine again"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_malformed_chunk_ends_the_reply_and_the_session_goes_on(fake_api, name):
    payload, named = HOSTILE[name]
    s = make_session(fake_api)
    fake_api.enqueue(Script(chunks=["ok"], events=[payload]))
    with pytest.raises(StreamError) as info:
        s.ask("x")
    message = str(info.value)
    assert named in message and "\n" not in message and len(message) < 300
    last = s.messages[-1]
    assert (last.role, last.content, last.finish_reason) == ("assistant", "ok", "error")
    assert last.error == message
    assert_usable(s, fake_api)


@pytest.mark.parametrize("name", ["content a number", "choices a list of null", "JSON nested 100,000 deep"])
def test_a_malformed_chunk_on_the_async_path(fake_api, name):
    payload, named = HOSTILE[name]
    s = make_session(fake_api)
    fake_api.enqueue(Script(chunks=["ok"], events=[payload]))

    async def run() -> None:
        with pytest.raises(StreamError, match=re.escape(named)):
            await s.aask("x")
        fake_api.enqueue(Script(text="async again"))
        assert (await s.aask("next")).text == "async again"

    asyncio.run(run())
    assert [m.finish_reason for m in s.messages if m.role == "assistant"] == ["error", "stop"]
    assert not s.busy


def test_a_usage_that_is_not_an_object_is_counted_locally(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(chunks=["fine"], usage=None, events=[{"choices": [], "usage": [1, 2, 3]}]))
    reply = s.ask("x")
    assert (reply.text, reply.finish_reason) == ("fine", "stop")
    assert reply.message.usage_estimated and reply.message.completion_tokens >= 1
    assert_usable(s, fake_api)


@pytest.mark.parametrize(
    "script",
    [
        Script(chunks=["ok"], events=[{"error": {"type": "unknown_error", "title": 500, "detail": 7}}]),
        Script(status=400, error={"error": {"title": 400, "detail": {"why": "x"}}}),
        Script(status=500, error={"error": {"title": ["boom"]}}),
    ],
    ids=["in-stream error with a number title", "400 with a number title", "500 with a list title"],
)
def test_an_error_body_of_the_wrong_shape_is_an_oxen_error(fake_api, script):
    s = make_session(fake_api, max_retries=0)
    fake_api.enqueue(script)
    with pytest.raises(OxenError) as info:
        s.ask("x")
    assert "\n" not in str(info.value)
    assert s.messages[-1].finish_reason == "error"
    assert_usable(s, fake_api)


def test_any_exception_inside_the_assembler_ends_the_reply_and_frees_the_session(fake_api, monkeypatch):
    """The generic promise: a bug of ours (here a ZeroDivisionError injected into the assembler)
    still ends the reply as an error and leaves the session usable, sync and async."""
    feed = Assembler.feed

    def buggy(self: Assembler, data: str) -> str | None:
        if self.events >= 2:
            raise ZeroDivisionError("injected fault")
        return feed(self, data)

    monkeypatch.setattr(Assembler, "feed", buggy)
    s = make_session(fake_api)
    fake_api.enqueue(Script(chunks=["one ", "two ", "three"]))
    with pytest.raises(StreamError, match=r"could not be read \(ZeroDivisionError: injected fault\)") as info:
        s.ask("x")
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert (s.messages[-1].content, s.messages[-1].finish_reason) == ("one ", "error")
    assert not s.busy

    fake_api.enqueue(Script(chunks=["one ", "two "]))

    async def run() -> None:
        with pytest.raises(StreamError, match="ZeroDivisionError"):
            await s.aask("y")

    asyncio.run(run())
    assert not s.busy
    monkeypatch.undo()
    assert_usable(s, fake_api)
    s.undo()
    s.reset()  # %oxen reset / undo are not refused as busy


def test_a_journal_that_fails_as_a_reply_starts_does_not_hold_the_session(fake_api, tmp_path):
    journal = tmp_path / "chat.jsonl"
    s = make_session(fake_api, journal=journal)
    assert s.ask("first").text == "Echo: first"
    journal.unlink()
    journal.mkdir()  # the next line cannot be written
    # Whether a journal that cannot be written fails the ask is the journal's business; it must
    # not hold the session.
    with contextlib.suppress(OSError):
        s.ask("second")
    assert not s.busy
    journal.rmdir()
    assert s.ask("third").text == "Echo: third"


def test_the_magic_shows_a_malformed_chunk_in_one_line_and_the_next_cell_runs(ip, fake_api):
    fake_api.enqueue(Script(chunks=["ok"], events=[HOSTILE["choices a string"][0]]))
    with capture_output():
        result = ip.run_cell("%%oxen\nhello")
    assert isinstance(result.error_in_exec, OxenCellError)
    rendered = result.error_in_exec._render_traceback_()
    assert len(rendered) == 1 and "choices is 'nope'" in rendered[0]
    fake_api.enqueue(Script(text="next cell"))
    with capture_output():
        result = ip.run_cell("%%oxen\nagain")
    assert result.error_in_exec is None
    session = oxen_notebook.default_session()
    assert session.messages[-1].content == "next cell" and not session.busy
    with capture_output():
        assert ip.run_cell("%oxen undo").error_in_exec is None


def test_the_panel_shows_a_malformed_chunk_and_stays_usable(fake_api, session):
    from oxen_notebook import ChatPanel
    from tests.test_panel import shown_html, text_of

    panel = ChatPanel(session)
    try:
        fake_api.enqueue(Script(chunks=["partial"], events=[HOSTILE["delta a list"][0]]))
        panel.send("hi")
        assert panel.wait(5) and not panel.streaming
        last = shown_html(panel)[-1]
        assert "partial" in text_of(last) and "delta is ['x']" in text_of(last)
        assert session.messages[-1].finish_reason == "error" and not session.busy
        fake_api.enqueue(Script(text="second answer"))
        panel.send("again")
        assert panel.wait(5)
        assert "second answer" in text_of(shown_html(panel)[-1])
        panel._clear_button.click()
        assert session.messages == [] and shown_html(panel) == []
    finally:
        panel.close()


def test_map_rows_say_what_broke_not_interrupted(fake_api):
    """A batch row (unstreamed) whose body has the wrong shape fails with what came, after the
    runner's retries; the other rows are done, and none says "not sent"."""

    def handler(body: dict) -> Script:
        if _prompt_text(body) == "bad":
            return Script(raw=b'{"object": "chat.completion", "choices": [{"message": {"content": 5}}]}')
        return Script(text=f"Echo: {_prompt_text(body)}")

    fake_api.handler = handler
    s = make_session(fake_api, max_retries=1)
    out = s.map(["a", "bad", "b"], "{text}", progress=False)
    assert list(out["finish_reason"]) == ["stop", "error", "stop"]
    assert "message.content is 5" in out["error"][1]
    assert "not sent" not in out["error"][1] and "interrupted" not in out["error"][1]
    assert list(out["reply"][[0, 2]]) == ["Echo: a", "Echo: b"]
    assert_usable(s, fake_api)


# -- answers that are not event streams -----------------------------------------------------------


def test_a_redirect_says_where_it_points_and_is_not_followed(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(status=307, headers={"Location": "https://elsewhere.example/api"}, error={}))
    with pytest.raises(OxenError, match=r"307 redirect \(https://elsewhere\.example/api\).*base_url"):
        s.ask("x")
    assert len(fake_api.chat_requests()) == 1
    assert_usable(s, fake_api)


def test_an_html_page_says_what_came(fake_api):
    s = make_session(fake_api)
    page = b"<!doctype html><html><body>Sign in to the proxy</body></html>" + b" " * 5000
    fake_api.enqueue(Script(raw=page, content_type="text/html; charset=utf-8"))
    with pytest.raises(StreamError) as info:
        s.ask("x")
    message = str(info.value)
    assert "200 (text/html; charset=utf-8)" in message and "<!doctype html><html>" in message
    assert "closed before" not in message and len(message) < 300
    assert_usable(s, fake_api)


def test_a_plain_body_with_no_content_type_says_what_came(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(raw=b"upstream connect error", content_type=""))
    with pytest.raises(StreamError, match=r"answered 200 \(no content type\): b'upstream connect error'"):
        s.ask("x")


def test_a_json_completion_to_a_stream_request_is_the_reply(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(text="whole at once", unstreamed=True))
    reply = s.ask("x")
    assert (reply.text, reply.finish_reason) == ("whole at once", "stop")
    assert reply.message.prompt_tokens and not reply.message.usage_estimated  # its usage was read

    fake_api.enqueue(Script(text="async whole", unstreamed=True))

    async def run() -> str:
        try:
            return (await s.aask("y")).text
        finally:  # a JSON body leaves its connection in the loop's pool
            await s.client().aclose_loop()

    assert asyncio.run(run()) == "async whole"


def test_a_json_error_body_with_status_200_to_a_stream_request(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(unstreamed=True, error_event_after=0))
    with pytest.raises(OxenError, match="Upstream failed"):
        s.ask("x")
    assert_usable(s, fake_api)


# -- bounds ----------------------------------------------------------------------------------------


def test_an_endless_line_fails_early_with_bounded_memory(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(line_bytes=64 * 2**20))
    tracemalloc.start()
    try:
        with pytest.raises(StreamError, match=r"line of more than 16,777,216 bytes"):
            s.ask("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20  # the bound and a read, not the 64 MiB the server would send
    assert_usable(s, fake_api)


def test_an_unstreamed_body_over_the_bound_is_refused_before_it_is_read(fake_api):
    s = make_session(fake_api, max_retries=0)
    fake_api.enqueue(Script(raw=b" " * (20 * 2**20)))
    reply = s.stream("x")
    reply.streamed = False
    tracemalloc.start()
    try:
        with pytest.raises(StreamError, match=r"too large \(20,971,520 bytes, over the 16 MiB limit\)"):
            reply.consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
    assert_usable(s, fake_api)


def test_a_body_of_unknown_length_over_the_bound_stops_at_the_bound(fake_api):
    s = make_session(fake_api)
    fake_api.enqueue(Script(line_bytes=40 * 2**20, content_type="application/json"))
    with pytest.raises(StreamError, match=r"too large \(more than 16,777,216 bytes"):
        s.ask("x")
    assert_usable(s, fake_api)


# -- the deadline ----------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False])
@pytest.mark.slow
def test_a_trickling_server_is_stopped_at_the_deadline(fake_api, streamed):
    s = make_session(fake_api, deadline=1.5)
    s.clients.hosted.timeout = 3.0  # each byte comes well within the read timeout
    fake_api.enqueue(Script(chunks=["a"] * 200, trickle=0.05))
    reply = s.stream("x")
    reply.streamed = streamed
    start = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        reply.consume()
    took = time.monotonic() - start
    assert 1.4 < took < 4.0
    message = str(info.value)
    assert "within the 1.5 s deadline" in message and "\n" not in message
    assert s.messages[-1].finish_reason == "error"
    assert_usable(s, fake_api)


@pytest.mark.slow
def test_a_trickling_server_is_stopped_at_the_deadline_async(fake_api):
    s = make_session(fake_api, deadline=1.5)
    fake_api.enqueue(Script(chunks=["a"] * 200, trickle=0.05))

    async def run() -> float:
        start = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"1\.5 s deadline"):
            await s.aask("x")
        return time.monotonic() - start

    assert 1.4 < asyncio.run(run()) < 4.0
    assert not s.busy


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed rows", "streamed rows"])
@pytest.mark.slow
def test_a_map_row_on_a_trickling_server_fails_at_the_deadline(fake_api, stream):
    def handler(body: dict) -> Script:
        if _prompt_text(body) == "slow":
            return Script(text="s" * 400, trickle=0.05)
        return Script(text=f"Echo: {_prompt_text(body)}")

    fake_api.handler = handler
    s = make_session(fake_api, deadline=1.5)
    start = time.monotonic()
    out = s.map(["a", "slow", "b"], "{text}", progress=False, stream=stream)
    assert time.monotonic() - start < 5.0
    assert list(out["finish_reason"]) == ["stop", "error", "stop"]
    assert "1.5 s deadline" in out["error"][1]
    assert len(fake_api.chat_requests()) == 3  # a row past its deadline is not sent again


@pytest.mark.slow
def test_a_server_that_never_answers_is_stopped_at_the_deadline_with_retries_left(fake_api):
    s = make_session(fake_api, deadline=1.0, max_retries=5)
    fake_api.enqueue(*[Script(latency=3.0)] * 6)
    start = time.monotonic()
    with pytest.raises(APITimeoutError, match="1 s deadline"):
        s.ask("x")
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize(
    "script",
    [
        Script(chunks=["ok"], events=[_delta({"content": {"echo": f"Bearer {TEST_KEY}"}})]),
        Script(raw=f"<html>your key: {TEST_KEY}</html>".encode(), content_type="text/html"),
        Script(status=307, headers={"Location": f"https://elsewhere.example/?key={TEST_KEY}"}, error={}),
    ],
    ids=["a malformed chunk", "a page", "a redirect"],
)
def test_what_the_server_sent_is_quoted_with_the_key_redacted(fake_api, script):
    s = make_session(fake_api)
    fake_api.enqueue(script)
    with pytest.raises(OxenError) as info:
        s.ask("x")
    assert TEST_KEY not in str(info.value) and "***" in str(info.value)
    assert TEST_KEY not in (s.messages[-1].error or "")
