"""The Session against the loopback fake API: streaming, history, records, faults."""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import time
import weakref

import pytest

from oxen_notebook import (
    APITimeoutError,
    AuthenticationError,
    InsufficientCreditsError,
    MissingAPIKeyError,
    NotFoundError,
    ParameterError,
    RateLimitError,
    ServerError,
    Session,
    SessionBusyError,
    SessionSettings,
    StreamError,
)
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script


def test_ask_returns_text_usage_and_finish_reason(session: Session, fake_api: FakeAPI):
    reply = session.ask("Name three primes", temperature=0.2)
    assert reply.text == "Echo: Name three primes"
    assert reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    body = fake_api.chat_requests()[0]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.2
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Name three primes"}]
    assert fake_api.requests[-1]["headers"]["Authorization"] == f"Bearer {TEST_KEY}"


def test_stream_yields_deltas_in_order_and_history_is_sent(session: Session, fake_api: FakeAPI):
    session.system = "You are terse."
    session.ask("first")
    fake_api.enqueue(Script(chunks=["a", "b", "c"]))
    deltas = list(session.stream("second"))
    assert deltas == ["a", "b", "c"]
    messages = fake_api.chat_requests()[-1]["messages"]
    assert messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]
    records = session.messages
    assert [(m.role, m.turn) for m in records] == [
        ("system", 0), ("user", 1), ("assistant", 1), ("user", 2), ("assistant", 2),
    ]  # fmt: skip
    assert records[-1].content == "abc"
    assert records[-1].ttft_s is not None and records[-1].duration_s >= records[-1].ttft_s


def test_astream_streams_and_records(session: Session):
    async def run() -> list[str]:
        return [d async for d in session.astream("async one")]

    assert asyncio.run(run()) == ["Echo:", " async", " one"]
    assert session.messages[-1].content == "Echo: async one"
    assert session.messages[-1].finish_reason == "stop"


def test_defaults_and_per_call_overrides(fake_api: FakeAPI):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, temperature=0.5, seed=7)
    s.ask("x", temperature=1.0, max_tokens=20, extra_body={"custom": 1}, extra_headers={"X-Trace": "t1"})
    body = fake_api.chat_requests()[-1]
    assert (body["temperature"], body["seed"], body["max_tokens"], body["custom"]) == (1.0, 7, 20, 1)
    assert fake_api.requests[-1]["headers"]["X-Trace"] == "t1"
    assert s.messages[-1].params == {"temperature": 1.0, "seed": 7, "max_tokens": 20}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"temprature": 1}, "temprature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_invalid_parameters_rejected_before_any_request(session, fake_api, params, name):
    with pytest.raises(ParameterError, match=name) as info:
        session.ask("hi", **params)
    assert "\n" not in str(info.value)
    assert fake_api.chat_requests() == []
    assert session.messages == []


def test_empty_prompt_rejected(session: Session, fake_api: FakeAPI):
    with pytest.raises(ParameterError, match="prompt is empty"):
        session.ask("   ")
    assert fake_api.requests == []


def test_schema_from_model_info_checks_parameters(fake_api: FakeAPI):
    s = Session(base_url=fake_api.base_url, api_key=TEST_KEY)  # the fake publishes a schema for this model
    with pytest.raises(ParameterError, match="max_tokens=20000 is out of range"):
        s.ask("hi", max_tokens=20000)
    assert fake_api.chat_requests() == []
    assert s.ask("hi", max_tokens=100).text == "Echo: hi"


def test_status_errors_carry_oxen_fields_and_keep_the_user_message(session, fake_api):
    fake_api.enqueue(
        Script(
            status=402,
            error={
                "error": {
                    "type": "insufficient_credits",
                    "title": "Out of credits",
                    "detail": "Balance is $0",
                },
                "status": "error",
                "status_message": "insufficient_credits",
            },
        )
    )
    with pytest.raises(InsufficientCreditsError) as info:
        session.ask("hello")
    error = info.value
    assert (error.status, error.type, error.title, error.detail) == (
        402, "insufficient_credits", "Out of credits", "Balance is $0",
    )  # fmt: skip
    assert error.request_id.startswith("req-")
    assert str(error).startswith("402 Out of credits: Balance is $0 — add credits")
    user, failed = session.messages
    assert (user.role, user.content) == ("user", "hello")
    assert (failed.finish_reason, failed.error) == ("error", str(error))
    # The failed turn is not sent again; the next request carries only the new prompt.
    session.ask("again")
    assert fake_api.chat_requests()[-1]["messages"] == [{"role": "user", "content": "again"}]


def test_other_error_body_shape_and_bad_request(session, fake_api):
    fake_api.enqueue(Script(status=400, error={"error": {"message": "messages must not be empty"}}))
    with pytest.raises(Exception, match="400 error: messages must not be empty"):
        session.ask("x")


def test_unknown_model_says_how_to_list_models(session, fake_api):
    with pytest.raises(NotFoundError) as info:
        session.ask("x", model="no-such-model")
    assert "model 'no-such-model' not found" in str(info.value)
    assert "list_models()" in str(info.value)


def test_401_is_not_retried_and_says_how_to_fix(fake_api: FakeAPI):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key="wrong-key")
    with pytest.raises(AuthenticationError, match="OXEN_API_KEY"):
        s.ask("x")
    assert len(fake_api.chat_requests()) == 1
    assert "wrong-key" not in str(s.messages[-1].error)


def test_missing_key_is_raised_at_request_time_not_construction(fake_api: FakeAPI):
    s = Session(model="test-model", base_url=fake_api.base_url)
    with pytest.raises(MissingAPIKeyError, match="OXEN_API_KEY"):
        s.ask("x")
    assert fake_api.requests == []
    assert s.messages[0].content == "x"  # the prompt is kept


def test_429_is_retried_honouring_retry_after(session, fake_api):
    error = {"error": {"type": "rate_limited", "title": "Too many requests"}}
    fake_api.enqueue(Script(status=429, error=error, headers={"Retry-After": "0.3"}))
    start = time.monotonic()
    assert session.ask("x").text == "Echo: x"
    chats = [r for r in fake_api.requests if r["method"] == "POST"]
    assert len(chats) == 2
    assert chats[1]["time"] - chats[0]["time"] >= 0.29
    assert time.monotonic() - start < 3


def test_retries_give_up_after_max_retries(fake_api):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=1)
    fake_api.enqueue(*[Script(status=500, error={"error": {"message": "boom"}})] * 2)
    with pytest.raises(ServerError, match="500 error: boom"):
        s.ask("x")
    assert len(fake_api.chat_requests()) == 2
    fake_api.enqueue(*[Script(status=429, headers={"Retry-After": "0"})] * 2)
    with pytest.raises(RateLimitError):
        s.ask("y")


def test_connection_refused_is_a_connection_error():
    s = Session(model="test-model", base_url="http://127.0.0.1:9/api/ai", api_key=TEST_KEY, max_retries=0)
    with pytest.raises(Exception, match=r"cannot reach 127\.0\.0\.1:9") as info:
        s.ask("x")
    assert type(info.value).__name__ == "APIConnectionError"


def test_drop_mid_stream_keeps_partial_text_and_is_not_retried(session, fake_api):
    fake_api.enqueue(Script(chunks=["one ", "two ", "three"], drop_after=2))
    seen = []
    with pytest.raises(StreamError, match="partial reply was kept"):
        for delta in session.stream("count"):
            seen.append(delta)
    assert seen == ["one ", "two "]
    last = session.messages[-1]
    assert (last.content, last.finish_reason) == ("one two ", "error")
    assert len(fake_api.chat_requests()) == 1


def test_malformed_json_line_is_a_stream_error(session, fake_api):
    fake_api.enqueue(Script(chunks=["ok", "never"], malformed_after=1))
    with pytest.raises(StreamError, match="malformed data"):
        session.ask("x")
    assert session.messages[-1].content == "ok"


def test_in_stream_error_event_carries_oxens_message(session, fake_api):
    fake_api.enqueue(Script(chunks=["partial", "x"], error_event_after=1))
    with pytest.raises(ServerError, match="Upstream failed: model crashed"):
        session.ask("x")
    assert session.messages[-1].content == "partial"


def test_stall_past_read_timeout(fake_api):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=0.5)
    fake_api.enqueue(Script(chunks=["a", "b"], stall_after=1, stall_seconds=3))
    with pytest.raises(StreamError, match="stalled past the read timeout"):
        s.ask("x")
    assert s.messages[-1].content == "a"


def test_timeout_before_headers_is_retried_then_api_timeout(fake_api):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=0.3, max_retries=1)
    fake_api.enqueue(Script(latency=1.0), Script(latency=1.0))
    with pytest.raises(APITimeoutError, match=r"Session\(timeout=\.\.\.\)"):
        s.ask("x")
    assert len(fake_api.chat_requests()) == 2


@pytest.mark.parametrize("option", ["crlf", "comments", "byte_by_byte"])
def test_wire_variants_give_the_same_reply(session, fake_api, option):
    fake_api.enqueue(Script(chunks=["héllo", " wörld ", "🐂"], **{option: True}))
    assert session.ask("x").text == "héllo wörld 🐂"


def test_finish_reason_without_done_is_complete(session, fake_api):
    fake_api.enqueue(Script(chunks=["a"], done=False, finish_reason="length"))
    reply = session.ask("x")
    assert (reply.text, reply.finish_reason) == ("a", "length")


def test_body_ending_with_neither_done_nor_finish_is_cut_off(session, fake_api):
    fake_api.enqueue(Script(chunks=["a"], done=False, finish_reason=None, usage=None))
    with pytest.raises(StreamError, match="closed before the reply was complete"):
        session.ask("x")


def test_tool_call_fragments_assembled_by_index(session, fake_api):
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
        {"id": "call_2", "type": "function", "function": {"name": "neg", "arguments": '{"x": 5}'}},
    ]
    fake_api.enqueue(Script(chunks=[], tool_calls=calls, finish_reason="tool_calls"))
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    reply = session.ask("add", tools=tools, tool_choice="auto")
    assert reply.tool_calls == calls
    assert reply.finish_reason == "tool_calls"
    session.add_message("tool", "3", tool_call_id="call_1")
    session.ask("next")
    sent = fake_api.chat_requests()[-1]["messages"]
    assert sent[1]["tool_calls"] == calls
    assert sent[2] == {"role": "tool", "content": "3", "tool_call_id": "call_1"}


def test_break_closes_the_response_at_once_and_records_interrupted(session, fake_api):
    fake_api.enqueue(Script(chunks=[f"w{i} " for i in range(200)], delay=0.02))
    for i, _ in enumerate(session.stream("long")):
        if i == 2:
            break
    deadline = time.monotonic() + 2
    while fake_api.closed_early == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake_api.closed_early == 1
    last = session.messages[-1]
    assert last.finish_reason == "interrupted"
    assert last.content == "w0 w1 w2 "


def test_context_manager_close_and_keyboard_interrupt(session, fake_api):
    fake_api.enqueue(Script(chunks=["a", "b", "c", "d"], delay=0.05))
    with pytest.raises(KeyboardInterrupt), session.stream("x") as reply:
        for delta in reply:
            if delta == "b":
                raise KeyboardInterrupt
    assert reply.finish_reason == "interrupted"
    assert reply.text == "ab"
    assert session.messages[-1].content == "ab"
    with pytest.raises(RuntimeError, match="already consumed"):
        list(reply)


def test_a_reply_left_mid_read_records_only_what_its_reader_was_given(session, fake_api):
    # The whole body comes in one write, so one read carries every event: leaving after "b"
    # must not record "c" and "d", which no reader (nor the panel, nor the journal) ever saw.
    fake_api.enqueue(Script(chunks=["a", "b", "c", "d"], batch_write=True))
    seen = []
    session.on("delta", lambda event: seen.append(event.delta))
    with session.stream("x") as reply:
        for delta in reply:
            if delta == "b":
                break
    assert reply.finish_reason == "interrupted"
    assert reply.text == "ab" == "".join(seen)
    assert session.messages[-1].content == "ab"


def test_an_async_reply_left_mid_read_records_only_what_its_reader_was_given(session, fake_api):
    fake_api.enqueue(Script(chunks=["a", "b", "c", "d"], batch_write=True))
    reply = session.astream("x")

    async def run() -> None:
        async for delta in reply:
            if delta == "b":
                break
        await reply.aclose()

    asyncio.run(run())
    assert reply.finish_reason == "interrupted"
    assert reply.text == "ab"
    assert session.messages[-1].content == "ab"


def test_stop_from_another_thread_within_half_a_second(session, fake_api):
    fake_api.enqueue(Script(chunks=["a"] + ["b"] * 100, delay=0.1, stall_after=1, stall_seconds=5))
    reply = session.stream("x")
    got = []
    thread = threading.Thread(target=lambda: got.extend(reply))
    thread.start()
    time.sleep(0.3)
    stopped = time.monotonic()
    reply.stop()
    thread.join(2)
    assert time.monotonic() - stopped < 0.5
    assert not thread.is_alive()
    assert reply.finish_reason == "interrupted"
    assert session.messages[-1].content == "a"


def test_concurrent_requests_are_serialized_never_interleaved(session, fake_api):
    fake_api.handler = lambda body: Script(chunks=["x", "y"], delay=0.02)
    threads = [threading.Thread(target=session.ask, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    roles = [m.role for m in session.messages]
    assert roles == ["user", "assistant"] * 4
    # Each request carried all the exchanges finished before it.
    assert [len(b["messages"]) for b in fake_api.chat_requests()] == [1, 3, 5, 7]


def test_same_thread_reentry_is_refused(session, fake_api):
    with session.stream("a") as reply:
        deltas = iter(reply)
        next(deltas)
        with pytest.raises(SessionBusyError):
            session.ask("b")
        with pytest.raises(SessionBusyError):
            session.undo()


def test_observers_see_messages_deltas_and_finish(session, fake_api):
    events = []
    session.on("message", lambda e: events.append(("message", e.message.role)))
    session.on("delta", lambda e: events.append(("delta", e.delta)))
    session.on("finish", lambda e: events.append(("finish", e.message.finish_reason)))
    session.on("history", lambda e: events.append(("history", None)))
    session.on("delta", lambda e: 1 / 0)  # a broken observer does not break the stream
    fake_api.enqueue(Script(chunks=["a", "b"]))
    session.ask("x")
    session.undo()
    assert events == [
        ("message", "user"), ("delta", "a"), ("delta", "b"), ("message", "assistant"),
        ("finish", "stop"), ("history", None),
    ]  # fmt: skip


def test_history_false_is_one_off(session, fake_api):
    session.system = "sys"
    session.ask("kept")
    reply = session.ask("one-off", history=False)
    assert fake_api.chat_requests()[-1]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "one-off"},
    ]
    assert reply.message.content == "Echo: one-off"
    assert [m.content for m in session.messages] == ["sys", "kept", "Echo: kept"]


def test_undo_and_reset(session, fake_api):
    session.system = "sys"
    session.ask("a")
    session.ask("b")
    first_id = session.conversation_id
    removed = session.undo()
    assert [m.content for m in removed] == ["b", "Echo: b"]
    assert [m.content for m in session.messages] == ["sys", "a", "Echo: a"]
    session.reset()
    assert [m.content for m in session.messages] == ["sys"]
    assert session.conversation_id != first_id


def test_images_become_content_parts(session, fake_api, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    path = tmp_path / "pic.png"
    path.write_bytes(png)
    session.ask("Describe", images=[path, "https://example.com/cat.jpg", b"\xff\xd8\xff\xe0rest"])
    content = fake_api.chat_requests()[-1]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Describe"}
    urls = [part["image_url"]["url"] for part in content[1:]]
    assert urls[0].startswith("data:image/png;base64,iVBORw0KGgo")
    assert urls[1] == "https://example.com/cat.jpg"
    assert urls[2].startswith("data:image/jpeg;base64,")
    with pytest.raises(ParameterError, match=r"images\[0\]: no such file"):
        session.ask("x", images=[tmp_path / "missing.png"])
    with pytest.raises(ParameterError, match=r"images\[0\]: bytes are not"):
        session.ask("x", images=[b"not an image"])


def test_reply_displays_as_sanitized_html(session, fake_api):
    fake_api.enqueue(Script(chunks=["**bold** <script>alert(1)</script>"]))
    html = session.ask("x")._repr_html_()
    assert "<strong>bold</strong>" in html
    assert "<script" not in html


# -- endings seen on llama-cpp-python's server (tests/test_llama_server.py), replayed here ---------


def fake_session(fake_api) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0)


def test_loopback_role_chunk_then_done_is_an_error_in_ask_and_stream(fake_api):
    s = fake_session(fake_api)
    fake_api.enqueue(Script(chunks=[], finish_reason=None, usage=None))
    with pytest.raises(StreamError, match=r"no content and no finish reason .* send it again\.$"):
        s.ask("first")
    assert (s.messages[-1].content, s.messages[-1].finish_reason) == ("", "error")

    fake_api.enqueue(Script(chunks=[], finish_reason=None, usage=None))
    reply = s.stream("second")
    with pytest.raises(StreamError, match="no content"):
        list(reply)
    assert reply.finish_reason == "error" and reply.error is not None

    s.ask("third")
    sent = [m["content"] for m in fake_api.chat_requests()[-1]["messages"]]
    assert sent == ["third"]  # the failed turns, with nothing in them, are not sent again


def test_loopback_async_twin_raises_too(fake_api):
    s = fake_session(fake_api)
    fake_api.enqueue(Script(chunks=[], finish_reason=None, usage=None))

    async def run():
        with pytest.raises(StreamError, match="no content"):
            await s.aask("x")

    asyncio.run(run())
    assert s.messages[-1].finish_reason == "error"


def test_loopback_text_then_done_with_no_finish_reason_is_complete(fake_api):
    """Oxen's documented stream: content chunks, then [DONE], no finish_reason chunk, no usage."""
    s = fake_session(fake_api)
    fake_api.enqueue(Script(chunks=["a", " b"], finish_reason=None, usage=None))
    reply = s.ask("x")
    assert (reply.text, reply.finish_reason, reply.error) == ("a b", "stop", None)

    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    fake_api.enqueue(Script(chunks=[], tool_calls=calls, finish_reason=None, usage=None))
    reply = s.ask("y")
    assert (reply.tool_calls, reply.error) == (calls, None)


def test_loopback_unstreamed_reply_reads_one_body(fake_api):
    s = fake_session(fake_api)
    fake_api.enqueue(Script(text="one two", usage={"prompt_tokens": 5, "completion_tokens": 2}))
    reply = s.stream("x")
    reply.streamed = False
    assert list(reply) == ["one two"]
    assert reply.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert (s.messages[-1].prompt_tokens, s.messages[-1].completion_tokens) == (5, 2)
    body = fake_api.chat_requests()[-1]
    assert body["stream"] is False and "stream_options" not in body
    with pytest.raises(RuntimeError, match="already started"):
        reply.streamed = True


def test_a_sessions_settings_are_one_value_that_pickles_without_the_key(fake_api, tmp_path):
    s = Session(
        "test-model",
        "Be brief.",
        api_key="sk-only-here",
        base_url=fake_api.base_url + "/",
        timeout=7.0,
        connect_timeout=2.0,
        max_retries=4,
        deadline=30.0,
        source="cli",
        validate_schema=False,
        cache=tmp_path / "replies.sqlite",
        context_rows=3,
        context_chars=50,
        temperature=0.5,
    )
    s.model, s.max_turns = "cheap-model", 2  # what a session is now, not what it was made with
    expected = SessionSettings(
        model="cheap-model",
        base_url=fake_api.base_url,
        timeout=7.0,
        connect_timeout=2.0,
        max_retries=4,
        deadline=30.0,
        source="cli",
        validate_schema=False,
        cache=(str(tmp_path / "replies.sqlite"), "on"),
        context_rows=3,
        context_chars=50,
        max_turns=2,
        defaults={"temperature": 0.5},
    )
    assert s.settings == expected
    sent = pickle.dumps(s.settings)
    assert b"sk-only-here" not in sent and b"Be brief." not in sent
    copy = Session.from_settings(pickle.loads(sent), "Be terse.", api_key=TEST_KEY)
    assert copy.settings == expected and copy.system == "Be terse." and copy.messages[1:] == []
    assert copy.ask("hi").text == "Echo: hi"
    assert fake_api.chat_requests()[-1]["temperature"] == 0.5


def test_a_finished_async_reply_is_freed_without_the_cycle_collector(session):
    # A reply has its exchange state, and the state holds no reference back to it: a map's
    # thousands of rows are freed as they finish, not left for the cycle collector.
    async def one() -> weakref.ref:
        reply = session.astream("hi", history=False)
        await reply.aconsume()
        assert reply.text == "Echo: hi"
        return weakref.ref(reply)

    gc.disable()
    try:
        assert asyncio.run(one())() is None
    finally:
        gc.enable()
