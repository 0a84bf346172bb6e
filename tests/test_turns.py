"""Typed results through the Session: ``schema=`` (parse, repair, fallback) and ``tools=`` (the loop),
against the loopback server in the real SSE protocol."""

from __future__ import annotations

import asyncio
import json
import typing
from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import BaseModel

from oxen_notebook import ParameterError, SchemaError, Session, ToolLoopError, Turn
from tests.conftest import TEST_KEY
from tests.fake_api import NO_JSON_SCHEMA_MODEL, TOOL_MODEL, Script


class Person(BaseModel):
    name: str
    age: int


@dataclass
class City:
    name: str
    country: str


def make(fake_api, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0, **kwargs)


# -- schemas ------------------------------------------------------------------------------------


def test_schema_parses_into_the_model_and_records_both(fake_api):
    s = make(fake_api)
    fake_api.enqueue(Script(text='{"name": "Ada Lovelace", "age": 36}'))
    turn = s.ask("Ada Lovelace, born 1815, died at 36.", schema=Person)
    assert isinstance(turn, Turn)
    assert turn.parsed == Person(name="Ada Lovelace", age=36)
    assert turn.text == '{"name": "Ada Lovelace", "age": 36}'
    sent = fake_api.chat_requests()[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["name", "age"]
    reply = s.messages[-1]
    assert reply.parsed == {"name": "Ada Lovelace", "age": 36} and reply.content == turn.text
    frame = s.to_dataframe()
    assert frame["parsed"].iloc[-1] == {"name": "Ada Lovelace", "age": 36}
    assert Session.from_dataframe(frame).messages[-1].parsed == reply.parsed


def test_list_and_dataclass_schemas(fake_api):
    s = make(fake_api)
    fake_api.enqueue(
        Script(
            text='{"items": [{"name": "Oslo", "country": "Norway"}, {"name": "Rome", "country": "Italy"}]}'
        )
    )
    cities = s.ask("Two capitals", schema=list[City]).parsed
    assert cities == [City("Oslo", "Norway"), City("Rome", "Italy")]


def test_an_invalid_reply_gets_one_repair_turn(fake_api):
    s = make(fake_api)
    fake_api.enqueue(
        Script(text='{"name": "Ada", "age": "thirty-six"}'), Script(text='{"name": "Ada", "age": 36}')
    )
    turn = s.ask("Ada, 36", schema=Person)
    assert turn.parsed == Person(name="Ada", age=36) and len(turn.replies) == 2
    repair = fake_api.chat_requests()[-1]["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert repair[1]["content"] == '{"name": "Ada", "age": "thirty-six"}' and "age" in repair[2]["content"]
    roles = [(m.role, m.source, m.error is not None) for m in s.messages]
    assert roles == [("user", "api", False), ("assistant", "api", True), ("user", "repair", False),
                     ("assistant", "api", False)]  # fmt: skip
    assert len({m.turn for m in s.messages}) == 1  # one turn, however many requests


def test_schema_error_after_the_repairs_keeps_everything(fake_api):
    s = make(fake_api)
    bad = Script(text='{"name": "Ada"}')
    fake_api.enqueue(bad, Script(text='{"nom": "Ada"}'))
    with pytest.raises(SchemaError) as info:
        s.ask("Ada", schema=Person)
    error = info.value
    assert "\n" not in str(error) and "name: Field required" in str(error)
    assert error.text == '{"nom": "Ada"}' and error.errors
    assert [m.role for m in s.messages] == ["user", "assistant", "user", "assistant"]
    assert s.messages[-1].error == str(error) and s.messages[-1].content == '{"nom": "Ada"}'
    fake_api.enqueue(Script(text='{"name": "Ada"}'))
    with pytest.raises(SchemaError):
        s.ask("again", schema=Person, max_repairs=0)
    assert len(fake_api.chat_requests()) == 3


def test_a_model_that_refuses_json_schema_gets_json_object_once_and_the_record_says_so(fake_api):
    s = make(fake_api, validate_schema=False)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'), Script(text='{"name": "Bo", "age": 7}'))
    turn = s.ask("Ada, 36", schema=Person, model=NO_JSON_SCHEMA_MODEL)
    assert turn.parsed.age == 36
    first, second = fake_api.chat_requests()[-2:]
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"] == {"type": "json_object"}
    assert "JSON Schema" in second["messages"][0]["content"] and second["messages"][0]["role"] == "system"
    assert "json_object" in s.messages[-1].note
    assert [m.role for m in s.messages] == ["user", "assistant"]  # one exchange, sent twice, said so
    s.ask("Bo, 7", schema=Person, model=NO_JSON_SCHEMA_MODEL)  # remembered: json_object at once
    assert fake_api.chat_requests()[-1]["response_format"] == {"type": "json_object"}
    assert len(fake_api.chat_requests()) == 3


def test_a_published_request_schema_without_json_schema_means_json_object_from_the_start(fake_api):
    s = make(fake_api)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    assert s.ask("Ada", schema=Person, model=NO_JSON_SCHEMA_MODEL).parsed.name == "Ada"
    assert [r["response_format"]["type"] for r in fake_api.chat_requests()] == ["json_object"]


def test_stream_with_a_schema_yields_text_then_sets_parsed(fake_api):
    s = make(fake_api)
    fake_api.enqueue(Script(chunks=['{"name": ', '"Ada", ', '"age": 36}']))
    turn = s.stream("Ada", schema=Person)
    deltas = []
    for delta in turn:
        deltas.append(delta)
        assert turn.parsed is None
    assert "".join(deltas) == '{"name": "Ada", "age": 36}' and turn.parsed.name == "Ada"


def test_async_twin_with_a_schema(fake_api):
    s = make(fake_api)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    turn = asyncio.run(s.aask("Ada", schema=Person))
    assert turn.parsed == Person(name="Ada", age=36)


def test_bad_schema_arguments_are_one_line(fake_api):
    s = make(fake_api)
    with pytest.raises(ParameterError, match="not both"):
        s.ask("x", schema=Person, response_format={"type": "json_object"})
    with pytest.raises(ParameterError):
        s.ask("x", schema=42)
    assert fake_api.chat_requests() == []


# -- tools --------------------------------------------------------------------------------------

CALLS = []


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict:
    """Current weather for a city.

    Args:
        city: The city's name.
        unit: Celsius or Fahrenheit.
    """
    CALLS.append(city)
    return {"city": city, "temp": {"Oslo": 4, "Rome": 18}[city], "unit": unit}


def explode(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no weather in {city}")


def tool_session(fake_api) -> Session:
    return Session(model=TOOL_MODEL, base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0)


def test_the_tool_loop_runs_parallel_calls_and_sends_the_results_back(fake_api):
    CALLS.clear()
    s = tool_session(fake_api)
    prompt = 'Warmer? CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}'
    turn = s.ask(prompt, tools=[get_weather])
    assert CALLS == ["Oslo", "Rome"]
    assert turn.text.startswith("Results: get_weather[call_0_0] = ")
    assert '"temp": 18' in turn.text and '"temp": 4' in turn.text
    first, second = fake_api.chat_requests()
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "tool"]
    records = [m for m in s.messages if m.role == "tool"]
    assert [(m.tool_name, m.tool_arguments, m.tool_call_id) for m in records] == [
        ("get_weather", {"city": "Oslo"}, "call_0_0"),
        ("get_weather", {"city": "Rome"}, "call_0_1"),
    ]
    assert all(m.duration_s is not None and m.error is None for m in records)
    frame = s.to_dataframe()
    assert list(frame["tool_name"].dropna()) == ["get_weather", "get_weather"]
    again = Session.from_dataframe(frame)
    assert [m.tool_arguments for m in again.messages if m.role == "tool"] == [
        {"city": "Oslo"},
        {"city": "Rome"},
    ]


def test_a_failing_tool_an_unknown_tool_and_bad_arguments_go_back_as_text(fake_api):
    s = tool_session(fake_api)
    prompt = 'CALL explode {"city": "Oslo"} ; CALL nope {} ; CALL get_weather {"town": "Oslo"}'
    turn = s.ask(prompt, tools=[get_weather, explode])
    results = {r.call.name: r for r in turn.tool_results}
    assert results["explode"].content == "ValueError: no weather in Oslo"
    assert "nope" in results["nope"].content and "get_weather" in results["nope"].content
    assert "city" in results["get_weather"].content
    assert turn.text.startswith("Results: ")


def test_denied_calls_are_answered_and_not_run(fake_api):
    CALLS.clear()
    s = tool_session(fake_api)
    prompt = 'CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}'
    turn = s.ask(prompt, tools=[get_weather], approve=lambda call: call.arguments["city"] != "Rome")
    assert CALLS == ["Oslo"]
    assert "call_0_1] = denied by the user" in turn.text
    assert [m.error for m in s.messages if m.role == "tool"] == [None, "denied by the user"]


def test_more_rounds_than_allowed_is_a_clear_error(fake_api):
    s = tool_session(fake_api)
    with pytest.raises(ToolLoopError, match="after 2 rounds"):
        s.ask('CALL get_weather {"city": "Oslo"} LOOP', tools=[get_weather], max_tool_rounds=2)
    assert len(fake_api.chat_requests()) == 3


def test_dict_tools_are_not_run(fake_api):
    s = tool_session(fake_api)
    spec = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    reply = s.ask('CALL get_weather {"city": "Oslo"}', tools=[spec])
    assert not isinstance(reply, Turn)
    assert reply.tool_calls[0]["function"]["name"] == "get_weather"
    assert len(fake_api.chat_requests()) == 1


def test_one_shot_tool_turns_carry_their_own_messages(fake_api):
    s = tool_session(fake_api)
    turn = s.ask('CALL get_weather {"city": "Rome"}', tools=[get_weather], history=False)
    assert '"temp": 18' in turn.text and s.messages == []
    second = fake_api.chat_requests()[-1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]


def test_async_tool_loop(fake_api):
    CALLS.clear()
    s = tool_session(fake_api)
    turn = asyncio.run(s.aask('CALL get_weather {"city": "Oslo"}', tools=[get_weather]))
    assert CALLS == ["Oslo"] and '"temp": 4' in turn.text
    assert json.loads(s.messages[2].content)["temp"] == 4


def test_calls_past_the_limit_are_answered_so_the_history_stays_sendable(fake_api):
    s = tool_session(fake_api)
    with pytest.raises(ToolLoopError):
        s.ask('CALL get_weather {"city": "Oslo"} LOOP', tools=[get_weather], max_tool_rounds=1)
    last = s.messages[-1]
    assert last.role == "tool" and last.content == "not run: max_tool_rounds (1) reached"
    assert last.tool_call_id == s.messages[-2].tool_calls[0]["id"]
    s.ask("thanks")  # the fake model echoes: the history it was sent pairs every call with an answer
    sent = fake_api.chat_requests()[-1]["messages"]
    calls = {c["id"] for m in sent for c in m.get("tool_calls") or []}
    answers = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
    assert calls == answers and len(calls) == 2


def test_tool_choice_applies_to_the_first_request_only(fake_api):
    s = tool_session(fake_api)
    s.ask('CALL get_weather {"city": "Oslo"}', tools=[get_weather], tool_choice="required")
    first, second = fake_api.chat_requests()
    assert first["tool_choice"] == "required" and "tool_choice" not in second


def interrupted(city: str) -> str:
    """Ctrl-C while it runs."""
    raise KeyboardInterrupt


def test_ctrl_c_while_a_tool_runs_answers_the_calls_so_the_history_stays_sendable(fake_api):
    s = tool_session(fake_api)
    with pytest.raises(KeyboardInterrupt):
        s.ask('CALL interrupted {"city": "Oslo"}', tools=[interrupted])
    assert (s.messages[-1].role, s.messages[-1].content) == ("tool", "not run: interrupted")
    s.ask("go on")
    sent = fake_api.chat_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]


def test_undo_removes_a_repaired_turn_whole(fake_api):
    s = make(fake_api)
    s.ask("first")
    fake_api.enqueue(Script(text='{"name": "Ada"}'), Script(text='{"name": "Ada", "age": 36}'))
    s.ask("Ada, 36", schema=Person)
    removed = s.undo()
    assert [m.role for m in removed] == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in s.messages] == ["first", "Echo: first"]


def test_a_history_turn_holds_the_session_until_its_tools_are_answered(fake_api):
    import threading

    s = tool_session(fake_api)
    running, release = threading.Event(), threading.Event()

    def slow(city: str) -> str:
        """Waits."""
        running.set()
        release.wait(10)
        return f"done {city}"

    worker = threading.Thread(target=lambda: s.ask('CALL slow {"city": "Oslo"}', tools=[slow]))
    worker.start()
    assert running.wait(10)
    assert s.busy  # between the tool call and its answer the session is taken
    other = threading.Thread(target=lambda: s.ask("meanwhile"))
    other.start()
    other.join(0.3)
    assert other.is_alive()  # it waits for the turn, instead of landing between call and answer
    release.set()
    worker.join(10)
    other.join(10)
    assert [m.role for m in s.messages] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert s.messages[4].content == "meanwhile"


# -- deep JSON from a hostile model ---------------------------------------------------------------


def _deep(depth: int) -> str:
    return '{"city": ' + "[" * depth + "]" * depth + "}"


def test_tool_arguments_nested_too_deeply_go_back_as_text_and_the_session_stays_usable(fake_api, tmp_path):
    """100,000 levels (past Python's JSON reader) and 200 (past the limit, MAX_ARGUMENT_DEPTH) are
    both answered like other bad arguments: the tool does not run, the model reads why."""
    CALLS.clear()
    s = make(fake_api, journal=tmp_path / "chat.jsonl")
    calls = [
        {"id": "deep", "type": "function", "function": {"name": "get_weather", "arguments": _deep(100_000)}},
        {"id": "mid", "type": "function", "function": {"name": "get_weather", "arguments": _deep(200)}},
        {
            "id": "ok",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
    ]
    fake_api.enqueue(Script(chunks=[], tool_calls=calls, finish_reason="tool_calls"), Script(text="noted"))
    turn = s.ask("weather?", tools=[get_weather])
    assert turn.text == "noted" and CALLS == ["Oslo"]
    sent = fake_api.chat_requests()[1]["messages"]
    answers = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
    too_deep = (
        "invalid arguments for get_weather: the arguments are nested more than 64 levels deep; "
        "send a flatter JSON object."
    )
    assert answers["deep"] == answers["mid"] == too_deep
    assert json.loads(answers["ok"])["city"] == "Oslo"
    assert [m.error for m in s.messages if m.role == "tool"] == [too_deep, too_deep, None]
    s.to_dataframe()
    fake_api.enqueue(Script(text="still here"))
    assert s.ask("and now?").text == "still here"
    assert Session.load(tmp_path / "chat.jsonl").messages[-1].content == "still here"


def test_a_schema_reply_nested_too_deeply_is_a_schema_error_and_the_session_stays_usable(fake_api):
    s = make(fake_api)
    deep = '{"name": ' + "[" * 100_000 + "]" * 100_000 + ', "age": 1}'
    fake_api.enqueue(Script(text=deep), Script(text=deep))
    with pytest.raises(SchemaError) as info:
        s.ask("Ada", schema=Person)
    assert str(info.value) == (
        "the reply is not usable JSON for Person: the JSON is nested too deeply to read; "
        "a reply that deep is not an answer."
    )
    assert len(fake_api.chat_requests()) == 2  # the reply and its repair
    assert s.messages[-1].error == str(info.value)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    assert s.ask("Ada again", schema=Person).parsed == Person(name="Ada", age=36)


class TypedPerson(typing.TypedDict):
    name: str
    age: int


def test_a_typing_typeddict_schema_through_the_session(fake_api):
    s = make(fake_api)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": "36"}'))
    assert s.ask("Ada", schema=TypedPerson).parsed == {"name": "Ada", "age": 36}
    schema = fake_api.chat_requests()[0]["response_format"]["json_schema"]
    assert schema["name"] == "TypedPerson" and schema["schema"]["required"] == ["name", "age"]
