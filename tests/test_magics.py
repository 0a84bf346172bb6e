"""``%%oxen`` / ``%oxen`` on an IPython InteractiveShell, against the loopback fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import oxen_notebook
from oxen_notebook import Session, _registry
from oxen_notebook._magics import OxenCellError, OxenInterrupted, OxenMagics, interpolate, strip_fences
from oxen_notebook._render import render_markdown
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script


@pytest.fixture
def ip(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A shell with the extension loaded, fresh sessions, and the fake API as the endpoint."""
    monkeypatch.setenv("OXEN_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("OXEN_API_KEY", TEST_KEY)
    monkeypatch.setattr(_registry, "sessions", {})
    shell = InteractiveShell.instance()
    shell.magics_manager.registry.pop("OxenMagics", None)
    shell.run_line_magic("load_ext", "oxen_notebook")
    magics = shell.magics_manager.registry["OxenMagics"]
    magics.display = "html"
    yield shell
    shell.run_line_magic("unload_ext", "oxen_notebook")
    shell.config.pop("OxenMagics", None)
    shell.rl_next_input = None


def magics(ip: InteractiveShell) -> OxenMagics:
    return ip.magics_manager.registry["OxenMagics"]


def shown(captured: Any) -> list[dict[str, Any]]:
    """The outputs a frontend would end with: updates applied by display id."""
    outputs: list[dict[str, Any]] = []
    for out in captured.outputs:
        display_id = (out.transient or {}).get("display_id")
        if out.update:
            for item in outputs:
                if item["id"] == display_id:
                    item.update(data=out.data, metadata=out.metadata)
            continue
        outputs.append({"id": display_id, "data": out.data, "metadata": out.metadata})
    return outputs


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
