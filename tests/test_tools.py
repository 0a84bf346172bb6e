"""Tools: schemas from real functions, validation, running rounds of calls, and one full round
against the loopback API's scripted tool-calling model (``tool-model``)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import json
import re
import subprocess
import sys
import threading
import time
import typing
from typing import Annotated, Any, Literal, Optional

import httpx
import pydantic
import pytest

from oxen_notebook import ParameterError, Session, ToolLoopError
from oxen_notebook._assembler import Assembler
from oxen_notebook._docstrings import parse_docstring
from oxen_notebook._sse import SSEDecoder
from oxen_notebook._toolbox import Toolbox, ToolCall, ToolLoop, ToolResult, result_content, tool_messages
from oxen_notebook._tools import DENIED, MAX_TOOL_ROUNDS, Tool
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI


class Address(pydantic.BaseModel):
    street: str
    number: int = 1


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict:
    """Current weather for a city.

    Args:
        city: The city's name.
        unit: Celsius or Fahrenheit.
    """
    return {"city": city, "temp": {"Oslo": 3, "Rome": 21}.get(city, 10), "unit": unit}


def deliver(
    to: Address,
    note: Optional[str] = None,  # noqa: UP045 - Optional is what users write, too
    copies: int = 1,
    *,
    tags: list[str] | None = None,
) -> str:
    """Deliver a parcel.

    The courier comes the next working day.

    Args:
        to (Address): Where it goes.
        note: Left on
            the parcel.
        copies: How many.

    Returns:
        The tracking code.
    """
    return f"{to.street} {to.number} x{copies} {note} {tags}"


def call(name: str, arguments: Any, id: str = "call_1") -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id, "type": "function", "function": {"name": name, "arguments": raw}}


# -- schemas --------------------------------------------------------------------------------------


def test_spec_from_signature_hints_and_google_docstring():
    assert Tool.from_function(get_weather).spec() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name."},
                    "unit": {
                        "type": "string",
                        "enum": ["C", "F"],
                        "default": "C",
                        "description": "Celsius or Fahrenheit.",
                    },
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }


def test_nested_model_optional_and_keyword_only_arguments():
    tool = Tool.from_function(deliver)
    assert tool.description == "Deliver a parcel.\n\nThe courier comes the next working day."
    params = tool.parameters
    assert params["required"] == ["to"]
    assert params["$defs"]["Address"] == {
        "type": "object",
        "properties": {"street": {"type": "string"}, "number": {"type": "integer", "default": 1}},
        "required": ["street"],
    }
    props = params["properties"]
    assert props["to"] == {"$ref": "#/$defs/Address", "description": "Where it goes."}
    assert props["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
        "description": "Left on the parcel.",
    }
    assert props["copies"] == {"type": "integer", "default": 1, "description": "How many."}
    assert props["tags"]["default"] is None and "description" not in props["tags"]
    assert "title" not in json.dumps(params)  # pydantic's titles are left out: tokens for nothing


def test_an_annotated_description_wins_over_the_docstring_and_parameters_may_shadow_pydantic():
    def lookup(
        json: Annotated[str, pydantic.Field(description="from the hint", max_length=5)], schema: int = 0
    ) -> str:
        """Look up.

        Args:
            json: from the docstring
            schema: which schema
        """
        return json * (schema + 1)

    tool = Tool.from_function(lookup)
    props = tool.parameters["properties"]
    assert props["json"] == {"type": "string", "maxLength": 5, "description": "from the hint"}
    assert props["schema"]["description"] == "which schema"
    assert (
        Toolbox([lookup]).run(Toolbox.calls_from([call("lookup", {"json": "ab", "schema": 1})]))[0].content
        == "abab"
    )


def test_numpy_and_rest_docstrings():
    numpy = """Sum two numbers.

    Parameters
    ----------
    a : int
        The first
        number.
    b : int
        The second.

    Returns
    -------
    int
        Not an argument.
    """
    assert parse_docstring(numpy) == ("Sum two numbers.", {"a": "The first number.", "b": "The second."})
    rest = """Sum two numbers.

    :param a: The first
        number.
    :param int b: The second.
    :returns: the sum
    """
    assert parse_docstring(rest) == ("Sum two numbers.", {"a": "The first number.", "b": "The second."})
    assert parse_docstring(None) == ("", {})


def test_what_cannot_be_a_tool_is_refused_in_one_line():
    def star(*cities: str) -> None: ...

    def stars(**options: str) -> None: ...

    def gen():
        yield 1

    def locked(lock: threading.Event) -> None: ...

    cases = [
        (star, "tool star: *cities cannot be described to a model; name each parameter."),
        (stars, "tool stars: **options cannot be described to a model; name each parameter."),
        (lambda city: city, "has no name: use def, or Tool.from_function(f, name=...)."),
        ("get_weather", "a tool is a function or a tool spec dict, not 'get_weather'."),
        (gen, "tool gen: a generator cannot be a tool; return the value instead."),
        (locked, "tool locked: parameter 'lock' has type Event, which has no JSON Schema; use str,"),
    ]
    for func, message in cases:
        with pytest.raises(ParameterError) as info:
            Tool.from_function(func)
        assert message in str(info.value) and "\n" not in str(info.value), func
    with pytest.raises(ParameterError, match="two tools are named 'get_weather'"):
        Toolbox([get_weather, get_weather])
    with pytest.raises(ParameterError, match="tools is a list"):
        Toolbox(get_weather)
    with pytest.raises(ParameterError, match=re.escape('a tool spec is {"type": "function"')):
        Toolbox([{"type": "function", "function": {}}])


def test_a_hint_that_cannot_be_resolved_is_refused():
    def later(x: NotDefinedAnywhere) -> None: ...  # noqa: F821

    with pytest.raises(ParameterError, match="tool later: a type hint cannot be resolved"):
        Tool.from_function(later)


# -- validation -----------------------------------------------------------------------------------


def test_good_arguments_are_validated_into_what_the_function_takes():
    seen = []

    def place(to: Address, copies: int, /, *, when: datetime.date) -> str:
        seen.append((to, copies, when))
        return "ok"

    [result] = Toolbox([place]).run(
        Toolbox.calls_from([call("place", {"to": {"street": "Main"}, "copies": "3", "when": "2026-05-01"})])
    )
    assert result.ok and result.content == "ok" and result.duration_s is not None
    assert seen == [(Address(street="Main", number=1), 3, datetime.date(2026, 5, 1))]


def test_bad_arguments_name_the_field_and_the_tool_does_not_run():
    ran = []

    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        ran.append(city)
        return city

    box = Toolbox([weather])
    results = box.run(
        Toolbox.calls_from(
            [
                call("weather", {"unit": "K", "city": "Oslo"}, "a"),
                call("weather", {}, "b"),
                call("weather", {"city": "Oslo", "country": "NO"}, "c"),
            ]
        )
    )
    assert [r.content for r in results] == [
        "invalid arguments for weather: unit: Input should be 'C' or 'F' (got 'K')",
        "invalid arguments for weather: city: Field required",
        "invalid arguments for weather: country: Extra inputs are not permitted (got 'NO')",
    ]
    assert [r.error for r in results] == [r.content for r in results]
    assert [r.duration_s for r in results] == [None, None, None] and ran == []


def test_invalid_json_arguments_become_an_error_result_not_an_exception():
    ran = []

    def now() -> str:
        ran.append(1)
        return "12:00"

    calls = Toolbox.calls_from(
        [
            call("now", '{"tz": ', "a"),
            call("now", "[1, 2]", "b"),
            call("now", "", "c"),
            {"type": "function", "function": {"name": "now", "arguments": "{}"}},
        ]
    )
    assert calls[0].arguments == {} and calls[0].raw_arguments == '{"tz": '
    assert calls[0].parse_error.startswith("the arguments are not valid JSON (Expecting value")
    assert calls[1].parse_error == "the arguments must be a JSON object, not list"
    assert calls[2].parse_error is None and calls[3].id == "call_3"
    results = Toolbox([now]).run(calls)
    assert results[0].content.startswith("invalid arguments for now: the arguments are not valid JSON")
    assert results[1].content == "invalid arguments for now: the arguments must be a JSON object, not list."
    assert [r.content for r in results[2:]] == ["12:00", "12:00"] and ran == [1, 1]


# -- running --------------------------------------------------------------------------------------


def test_parallel_calls_overlap_and_results_keep_the_calls_order():
    barrier = threading.Barrier(2, timeout=5)
    finished = []

    def slow(city: str) -> str:
        barrier.wait()  # both calls must be running at once to get past this
        time.sleep(0.2)
        finished.append(city)
        return f"slow {city}"

    def fast(city: str) -> str:
        barrier.wait()
        finished.append(city)
        return f"fast {city}"

    calls = Toolbox.calls_from([call("slow", {"city": "Oslo"}, "1"), call("fast", {"city": "Rome"}, "2")])
    results = Toolbox([slow, fast]).run(calls)
    assert [(r.call.id, r.content, r.error) for r in results] == [
        ("1", "slow Oslo", None),
        ("2", "fast Rome", None),
    ]
    assert finished == ["Rome", "Oslo"]  # the second call ended first; its result is still second


def test_max_workers_one_runs_calls_one_after_another():
    barrier = threading.Barrier(2, timeout=0.3)

    def meet(n: int) -> int:
        barrier.wait()
        return n

    calls = Toolbox.calls_from([call("meet", {"n": 1}, "1"), call("meet", {"n": 2}, "2")])
    results = Toolbox([meet], max_workers=1).run(calls)
    assert results[0].error == "BrokenBarrierError" and results[0].content == "BrokenBarrierError"


def test_an_exception_in_a_tool_becomes_its_one_line_text():
    def weather(city: str) -> str:
        raise ValueError(f"bad city\n  {city!r} is not on the map")

    [result] = Toolbox([weather]).run(Toolbox.calls_from([call("weather", {"city": "Atlantis"})]))
    assert result.content == "ValueError: bad city 'Atlantis' is not on the map"
    assert result.error == result.content and not result.ok and result.duration_s >= 0


def test_an_unknown_tool_is_told_the_known_names():
    box = Toolbox([get_weather, deliver])
    [result] = box.run(Toolbox.calls_from([call("get_time", {})]))
    assert result.content == "unknown tool 'get_time': the tools are get_weather, deliver."
    assert result.error == result.content


def test_approve_is_asked_in_order_and_a_denied_call_does_not_run():
    ran, asked = [], []

    def delete_rows(table: str) -> str:
        ran.append(table)
        return "deleted"

    def approve(tool_call: ToolCall) -> bool:
        asked.append((tool_call.name, tool_call.arguments))
        return tool_call.name != "delete_rows"

    box = Toolbox([delete_rows, get_weather])
    calls = Toolbox.calls_from(
        [
            call("delete_rows", {"table": "users"}, "1"),
            call("get_weather", {"city": "Oslo"}, "2"),
            call("nope", {}, "3"),  # cannot run: not asked about
        ]
    )
    results = box.run(calls, approve=approve)
    assert asked == [("delete_rows", {"table": "users"}), ("get_weather", {"city": "Oslo"})]
    assert ran == []
    assert (results[0].content, results[0].denied, results[0].error) == (DENIED, True, None)
    assert json.loads(results[1].content) == {"city": "Oslo", "temp": 3, "unit": "C"}
    assert not results[1].denied and results[2].content.startswith("unknown tool 'nope'")


def test_a_coroutine_tool_runs_even_where_an_event_loop_is_running():
    async def fetch(url: str) -> dict:
        await asyncio.sleep(0.01)
        return {"url": url, "loop": asyncio.get_running_loop() is not None}

    async def in_a_notebook_cell():  # the kernel's loop runs in the calling thread
        return Toolbox([fetch]).run(Toolbox.calls_from([call("fetch", {"url": "https://x"})]))

    [result] = asyncio.run(in_a_notebook_cell())
    assert (result.content, result.value) == (
        '{"url": "https://x", "loop": true}',
        {"url": "https://x", "loop": True},
    )


def test_callable_objects_and_partials_are_tools_too():
    class Lookup:
        """Look a word up."""

        __name__ = "lookup"

        async def __call__(self, word: str) -> str:
            await asyncio.sleep(0)
            return word.upper()

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    lookup = Tool.from_function(Lookup())
    add_two = Tool.from_function(functools.partial(add, b=2), name="add_two")
    assert lookup.is_async and lookup.description == "Look a word up."
    assert add_two.description == "Add two numbers." and add_two.parameters["properties"]["b"]["default"] == 2
    with pytest.raises(ParameterError, match="has no name"):
        Tool.from_function(functools.partial(add, b=2))
    calls = Toolbox.calls_from([call("lookup", {"word": "ox"}, "1"), call("add_two", {"a": 1}, "2")])
    assert [r.content for r in Toolbox([lookup, add_two]).run(calls)] == ["OX", "3"]


def test_arun_awaits_coroutine_tools_and_async_approvers():
    barrier = asyncio.Barrier(2) if hasattr(asyncio, "Barrier") else None

    async def afetch(n: int) -> int:
        if barrier is not None:
            await asyncio.wait_for(barrier.wait(), 5)
        return n * 10

    def plain(n: int) -> int:
        return threading.get_ident()

    async def approve(tool_call: ToolCall) -> bool:
        await asyncio.sleep(0)
        return tool_call.arguments["n"] != 3

    calls = Toolbox.calls_from(
        [
            call("afetch", {"n": 1}, "1"),
            call("afetch", {"n": 2}, "2"),
            call("plain", {"n": 3}, "3"),
            call("plain", {"n": 4}, "4"),
        ]
    )
    results = asyncio.run(Toolbox([afetch, plain]).arun(calls, approve=approve))
    assert [r.content for r in results[:3]] == ["10", "20", DENIED]
    assert results[3].value != threading.get_ident()  # a plain function ran in a worker thread


def test_a_coroutine_approver_is_refused_by_the_sync_run():
    async def approve(tool_call: ToolCall) -> bool:
        return True

    calls = Toolbox.calls_from([call("get_weather", {"city": "Oslo"})])
    with pytest.raises(ParameterError, match="approve is a coroutine function: use it with arun"):
        Toolbox([get_weather]).run(calls, approve)
    with pytest.raises(ParameterError, match="approve returned an awaitable"):
        Toolbox([get_weather]).run(calls, lambda tool_call: approve(tool_call))


def test_result_content_is_json_but_strings_stay_as_they_are():
    @dataclasses.dataclass
    class Point:
        x: int
        when: datetime.date

    assert result_content("plain text") == "plain text"
    assert result_content({"temp": 3, "city": "Zürich"}) == '{"temp": 3, "city": "Zürich"}'
    assert result_content(None) == "null"
    assert result_content(Address(street="Main")) == '{"street": "Main", "number": 1}'
    assert result_content(Point(1, datetime.date(2026, 1, 2))) == '{"x": 1, "when": "2026-01-02"}'
    assert result_content(threading) == json.dumps(str(threading))  # no JSON form: its str


def test_tool_messages_answer_each_call_by_id_in_order():
    calls = Toolbox.calls_from([call("a", {}, "x"), call("b", {}, "y")])
    results = [ToolResult(calls[0], "1"), ToolResult(calls[1], DENIED, denied=True)]
    assert tool_messages(results) == [
        {"role": "tool", "tool_call_id": "x", "content": "1"},
        {"role": "tool", "tool_call_id": "y", "content": DENIED},
    ]
    assert calls[0].to_api() == call("a", {}, "x")


def test_spec_dicts_pass_through_and_only_function_rounds_run():
    spec = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    mixed = Toolbox([get_weather, spec])
    assert [s["function"]["name"] for s in mixed.specs()] == ["get_weather", "search"]
    assert mixed.specs()[1] == {
        "type": "function",
        "function": {"name": "search", "parameters": {"type": "object"}},
    }
    assert not mixed.runnable and Toolbox([get_weather]).runnable and not Toolbox([spec]).runnable
    weather = Toolbox.calls_from([call("get_weather", {"city": "Rome"})])
    search = Toolbox.calls_from([call("search", {"q": "x"})])
    assert mixed.can_run(weather) and not mixed.can_run(weather + search)
    assert not Toolbox([spec]).can_run(search) and not Toolbox([spec]).can_run(
        Toolbox.calls_from([call("zzz", {})])
    )
    assert not mixed.can_run([])
    [result] = mixed.run(search)
    assert result.content == "tool search has no function here; the caller answers it."


def test_the_loop_counts_rounds_and_refuses_one_past_max():
    loop = ToolLoop(Toolbox([get_weather]), max_rounds=2)
    round_ = [call("get_weather", {"city": "Oslo"})]
    assert loop.wants(round_) and not loop.wants([])
    assert loop.answer(round_)[0].ok and loop.answer(round_)[0].ok
    with pytest.raises(ToolLoopError) as info:
        loop.answer(round_)
    assert str(info.value) == (
        "the model still calls tools (get_weather) after 2 rounds: "
        "raise max_tool_rounds, or ask for an answer without tools."
    )
    assert (loop.rounds, len(loop.results)) == (2, 2)
    assert ToolLoop(Toolbox([get_weather])).max_rounds == MAX_TOOL_ROUNDS == 8
    with pytest.raises(ParameterError):
        ToolLoop(Toolbox([get_weather]), max_rounds=0)


def test_importing_the_package_or_the_module_does_not_import_pydantic():
    code = "import sys, oxen_notebook, oxen_notebook._tools; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- against the loopback API ---------------------------------------------------------------------

TWO_CITIES = 'Is it warmer in Oslo or Rome? CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome", "unit": "F"}'
OSLO = '{"city": "Oslo"}'
ROME = '{"city": "Rome", "unit": "F"}'


def _post(fake_api: FakeAPI, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    return httpx.post(f"{fake_api.base_url}/chat/completions", json=body, headers=headers, timeout=5)


def _sse_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(response.content) + decoder.end()
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]


def _assembled(response: httpx.Response) -> Assembler:
    assembler = Assembler()
    if response.headers["content-type"].startswith("text/event-stream"):
        decoder = SSEDecoder()
        for event in decoder.feed(response.content) + decoder.end():
            assembler.feed(event.data)
    else:
        assembler.feed_completion(response.content)
    return assembler


def test_the_tool_model_streams_interleaved_fragments(fake_api: FakeAPI):
    tools = Toolbox([get_weather]).specs()
    body = {
        "model": "tool-model",
        "stream": True,
        "tools": tools,
        "messages": [{"role": "user", "content": TWO_CITIES}],
    }
    chunks = _sse_chunks(_post(fake_api, body))
    deltas = [c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"]]
    order = [[f["index"] for f in d] for d in deltas if d]
    assert order == [[0], [1], [0], [1], [0, 1], [0], [1]]  # ids first, then arguments taking turns
    pieces = {0: "", 1: ""}
    for delta in filter(None, deltas):
        for fragment in delta:
            pieces[fragment["index"]] += fragment["function"]["arguments"]
    assert pieces == {0: OSLO, 1: ROME}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # No tools offered: a model cannot call any, so it answers in text.
    plain = _assembled(_post(fake_api, {**body, "tools": None}))
    assert "".join(plain.parts) == f"Echo: {TWO_CITIES}" and not plain.tool_calls


@pytest.mark.parametrize("streamed", [True, False])
def test_one_round_by_hand_through_the_session_and_the_loopback_api(fake_api: FakeAPI, streamed: bool):
    """Request with tools -> the model's calls -> run -> tool messages -> the answer with the results."""
    box = Toolbox([get_weather])
    session = Session(model="tool-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0)
    reply = session.stream(TWO_CITIES, tools=box.specs(), history=False)
    reply.streamed = streamed
    reply.consume()
    assert reply.finish_reason == "tool_calls" and reply.text == ""
    assert reply.tool_calls == [
        {"id": "call_0_0", "type": "function", "function": {"name": "get_weather", "arguments": OSLO}},
        {"id": "call_0_1", "type": "function", "function": {"name": "get_weather", "arguments": ROME}},
    ]
    assert fake_api.chat_requests()[0]["tools"] == box.specs()
    calls = Toolbox.calls_from(reply.tool_calls)
    results = box.run(calls)
    sent = [
        {"role": "user", "content": TWO_CITIES},
        {"role": "assistant", "content": None, "tool_calls": [c.to_api() for c in calls]},
        *tool_messages(results),
    ]
    answer = _assembled(
        _post(fake_api, {"model": "tool-model", "stream": streamed, "tools": box.specs(), "messages": sent})
    )
    assert "".join(answer.parts) == (
        'Results: get_weather[call_0_0] = {"city": "Oslo", "temp": 3, "unit": "C"}'
        ' | get_weather[call_0_1] = {"city": "Rome", "temp": 21, "unit": "F"}'
    )
    assert answer.finish_reason == "stop" and not answer.tool_calls


def _exchange(fake_api: FakeAPI, loop: ToolLoop, prompt: str) -> tuple[str, list[list[dict[str, Any]]]]:
    """The loop the Session will run, by hand: send, answer the calls, send again, until text."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    sent = []
    while True:
        body = {
            "model": "tool-model",
            "stream": True,
            "tools": loop.toolbox.specs(),
            "messages": list(messages),
        }
        sent.append(body["messages"])
        reply = _assembled(_post(fake_api, body))
        tool_calls = [reply.tool_calls[i] for i in sorted(reply.tool_calls)]
        if not loop.wants(tool_calls):
            return "".join(reply.parts), sent
        results = loop.answer(tool_calls)
        messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
        messages.extend(tool_messages(results))


def test_rounds_until_the_model_answers_and_a_model_that_never_stops(fake_api: FakeAPI):
    def now(tz: str = "UTC") -> str:
        return f"12:00 {tz}"

    loop = ToolLoop(Toolbox([get_weather, now]))
    text, sent = _exchange(
        fake_api, loop, 'CALL now {"tz": "CET"} THEN CALL get_weather {"city": "Oslo"} ; CALL nope {}'
    )
    assert text == (
        "Results: now[call_0_0] = 12:00 CET"
        ' | get_weather[call_1_0] = {"city": "Oslo", "temp": 3, "unit": "C"}'
        " | nope[call_1_1] = unknown tool 'nope': the tools are get_weather, now."
    )
    assert loop.rounds == 2 and [len(m) for m in sent] == [1, 3, 6]
    forever = ToolLoop(Toolbox([now]), max_rounds=3)
    with pytest.raises(ToolLoopError, match=r"still calls tools \(now\) after 3 rounds"):
        _exchange(fake_api, forever, "LOOP CALL now {}")
    assert len(fake_api.chat_requests()) == 3 + 4  # the three rounds answered, and the fourth refused


class Stop(typing.TypedDict):
    city: str
    nights: int


def plan_trip(stops: list[Stop], note: Stop | None = None) -> str:
    """Plan a trip."""
    return " > ".join(f"{s['city']} x{s['nights']}" for s in stops)


def test_a_typing_typeddict_parameter_works_on_every_python():
    """``from typing import TypedDict`` is what users write; pydantic takes only typing_extensions'
    before Python 3.12, so the tool's argument model rebuilds it."""
    tool = Tool.from_function(plan_trip)
    stops = tool.spec()["function"]["parameters"]["properties"]["stops"]
    assert stops["type"] == "array" and stops["items"]["$ref"].endswith("/Stop")
    values = tool.validate({"stops": [{"city": "Oslo", "nights": "2"}]})
    assert tool.execute(values) == "Oslo x2"
    with pytest.raises(ParameterError, match=r"stops\.0\.nights"):
        tool.validate({"stops": [{"city": "Oslo", "nights": "two"}]})
