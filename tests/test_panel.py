"""ChatPanel widget logic against the loopback fake API, without a browser.

Widget traffic is captured by a recording comm (what a kernel would send to the frontend), so the
tests can assert what reaches the browser: sanitized HTML only, bounded update rates and bytes,
and no messages to the widgets of older messages when a new one is added.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import comm
import pandas as pd
import pytest
from comm.base_comm import BaseComm
from pydantic import BaseModel

from benchmarks.bench_panel import reply_deltas
from oxen_notebook import ChatPanel, ParameterError, Session
from oxen_notebook._panel import CSS
from oxen_notebook._records import Message
from tests.conftest import TEST_KEY
from tests.fake_api import TOOL_MODEL, FakeAPI, Script

XSS_PAYLOADS = [
    "<script>window.__xss = 1</script>",
    '<img src=x onerror="window.__xss = 2">',
    "[click me](javascript:window.__xss=3)",
    '<iframe src="javascript:window.__xss=4"></iframe>',
    "<style>body { display: none }</style>",
    '<a href="javascript:alert(5)">raw link</a>',
    "<svg onload=alert(6)></svg>",
]
BAD_TAGS = {"script", "style", "iframe", "img", "svg", "object", "embed", "link", "meta", "form", "base"}


class _Markup(HTMLParser):
    """Collects the tags and attributes an HTML fragment would create in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BAD_TAGS:
            self.bad.append(tag)
        for name, value in attrs:
            styled = name == "style" and tag in ("span", "td", "th")  # Pygments and table alignment
            if (name.startswith("on") or name in ("style", "srcdoc", "formaction")) and not styled:
                self.bad.append(f"{tag} {name}")
            if name in ("href", "src") and not re.match(
                r"(https?:|mailto:|data:text/csv|data:application/json)", value or ""
            ):
                self.bad.append(f"{tag} {name}={value}")


def dangerous_markup(fragment: str) -> list[str]:
    parser = _Markup()
    parser.feed(fragment)
    return parser.bad


class RecordingComm(BaseComm):
    """A comm that keeps what a kernel would publish to the frontend."""

    log: list[tuple[str, str, dict[str, Any]]]

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:  # fmt: skip
        self.log.append((self.comm_id, msg_type, json.loads(json.dumps(data or {}, default=str))))


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every comm message widgets publish during the test: (comm id, type, data)."""
    log: list[tuple[str, str, dict[str, Any]]] = []

    recording = type("Recording", (RecordingComm,), {"log": log})
    monkeypatch.setattr(comm, "create_comm", recording)
    return log


@pytest.fixture
def panels(session: Session):
    """Makes panels on the test session and closes them after the test."""
    made: list[ChatPanel] = []

    def make(s: Session | None = None, **options: Any) -> ChatPanel:
        panel = ChatPanel(s or session, **options)
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.stop()
        panel.wait(5)
        panel.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {predicate}")


def shown_html(panel: ChatPanel) -> list[str]:
    """The transcript as HTML, one string per message (a streamed one joined from its parts)."""
    out = []
    for item in panel._transcript.messages.items:
        if hasattr(item, "value"):
            out.append(item.value)
        elif {"oxen-approval", "oxen-tool"} & set(item._dom_classes):  # a call asked about, its record
            out.append(item.children[0].value)
        else:
            header, slots = item.children
            parts = [w.value for group in slots.children for w in group.children]
            out.append(header.value + "".join(parts))
    return out


def text_of(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def html_values(log: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    values = []
    for _, _, data in log:
        state = data.get("state") or {}
        if isinstance(state.get("value"), str):
            values.append(state["value"])
    return values


# -- sending and streaming -----------------------------------------------------------------------


def test_send_streams_reply_into_transcript(fake_api: FakeAPI, panels, session: Session) -> None:
    panel = panels()
    fake_api.enqueue(Script(chunks=["Hello ", "**world**", "\n\nA second ", "paragraph."], delay=0.01))
    assert panel.send("Say hello")
    # While it streams the box and Send stay enabled (a disabled box loses the focus), Stop shows,
    # and the buttons that change the history are off.
    assert not panel._input.disabled and not panel._send_button.disabled
    assert panel._stop_button.layout.display is None and panel._undo_button.disabled
    assert panel.wait(5)
    html = shown_html(panel)
    assert len(html) == 2
    assert "Say hello" in html[0] and "oxen-user" in html[0]
    assert "<strong>world</strong>" in html[1]
    assert "<p>A second paragraph.</p>" in html[1]
    assert re.search(r"test-model · \d+ tokens · \d+\.\d s", panel._status.value)
    assert not panel._undo_button.disabled and panel._stop_button.layout.display == "none"
    frame = session.to_dataframe()
    assert frame["role"].tolist() == ["user", "assistant"]
    assert frame["source"].tolist() == ["panel", "panel"]
    assert frame["content"].iloc[1] == "Hello **world**\n\nA second paragraph."


def test_enter_in_the_input_box_sends(fake_api: FakeAPI, panels, session: Session) -> None:
    panel = panels()
    # What the frontend sends: the typed value, then the Enter key's "submit" event.
    panel._input.set_state({"value": "typed then Enter"})
    panel._input._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"event": "submit"}}}, "buffers": []}
    )
    assert panel.wait(5)
    assert [m.content for m in session.messages] == ["typed then Enter", "Echo: typed then Enter"]
    assert panel._input.value == ""


def test_send_uses_panel_model_and_parameters(fake_api: FakeAPI, panels, session: Session) -> None:
    panel = panels()
    panel._model.value = "cheap-model"
    panel._temperature.value = 0.3
    panel._max_tokens.value = 64
    panel._system.value = "Be terse."
    assert session.system == "Be terse."
    panel.send("hi")
    panel.wait(5)
    body = fake_api.chat_requests()[-1]
    assert body["model"] == "cheap-model"
    assert body["temperature"] == 0.3 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert "cheap-model" in shown_html(panel)[-1]


def test_untouched_controls_send_no_parameters(fake_api: FakeAPI, panels) -> None:
    panel = panels()
    panel.send("hi")
    panel.wait(5)
    body = fake_api.chat_requests()[-1]
    assert "temperature" not in body and "max_tokens" not in body


def test_model_picker_is_filled_from_list_models(fake_api: FakeAPI, panels) -> None:
    panel = panels()
    wait_for(lambda: "cheap-model" in panel._model.options)
    assert set(panel._model.options) == {"gpt-5-2-chat-latest", "test-model", "cheap-model", "local"}


def test_model_picker_takes_free_entry_when_models_unreachable(panels) -> None:
    offline = Session(model="my-model", base_url="http://127.0.0.1:9/api/ai", api_key="k", max_retries=0)
    panel = panels(offline)
    time.sleep(0.3)
    assert panel._model.options == ("local", "my-model")
    assert panel._model.ensure_option is False


def test_second_send_while_streaming_is_refused_with_a_note(fake_api: FakeAPI, panels, session) -> None:
    panel = panels()
    fake_api.enqueue(Script(chunks=["slow "] * 30, delay=0.02))
    assert panel.send("first")
    wait_for(lambda: panel._transcript.live is not None)
    assert panel.send("second") is False
    assert "still streaming" in panel._note.value
    panel.wait(5)
    assert [m.content for m in session.messages if m.role == "user"] == ["first"]
    assert len(fake_api.chat_requests()) == 1


def test_stop_closes_the_stream_at_once_and_keeps_the_partial_reply(fake_api: FakeAPI, panels, session):
    panel = panels()
    fake_api.enqueue(Script(chunks=[f"w{i} " for i in range(500)], delay=0.02))
    panel.send("long story")
    wait_for(lambda: panel._transcript.live is not None and "w3" in panel._transcript.live.reply.text)
    assert panel._stop_button.layout.display is None and not panel._stop_button.disabled
    t0 = time.monotonic()
    panel._stop_button.click()
    wait_for(lambda: not panel.streaming, timeout=2)
    assert time.monotonic() - t0 < 0.5
    assert panel.wait(2)
    reply = session.messages[-1]
    assert reply.finish_reason == "interrupted"
    assert 0 < len(reply.content.split()) < 500
    assert "stopped" in panel._status.value
    assert "w3" in text_of(shown_html(panel)[-1])
    wait_for(lambda: fake_api.closed_early == 1)
    assert panel._stop_button.layout.display == "none" and not panel._undo_button.disabled


def test_failed_reply_shows_the_error_inline(fake_api: FakeAPI, panels, session) -> None:
    panel = panels()
    fake_api.enqueue(Script(chunks=["partial ", "text ", "more"], error_event_after=2))
    panel.send("hi")
    panel.wait(5)
    last = shown_html(panel)[-1]
    assert "partial text" in text_of(last)
    assert 'class="oxen-error"' in last and "Upstream failed" in last
    assert "oxen-error" in panel._status.value
    assert session.messages[-1].finish_reason == "error"


def test_bad_parameter_gives_the_message_back(fake_api: FakeAPI, panels, session) -> None:
    panel = panels()
    panel._model.value = "gpt-5-2-chat-latest"  # its schema caps max_tokens at 16384
    panel._max_tokens.value = 50_000
    panel._input.value = "keep me"
    panel.send()
    panel.wait(5)
    assert "max_tokens" in panel._status.value
    assert panel._input.value == "keep me"
    assert session.messages == [] and fake_api.chat_requests() == []


# -- undo, regenerate, clear, export -----------------------------------------------------------


def test_undo_regenerate_and_clear(fake_api: FakeAPI, panels, session: Session) -> None:
    panel = panels()
    for prompt in ("one", "two"):
        panel.send(prompt)
        panel.wait(5)
    first_views = panel._transcript.messages.items[:2]
    panel._undo_button.click()
    assert [m.content for m in session.messages] == ["one", "Echo: one"]
    assert panel._transcript.messages.items == first_views  # the older views are kept as they are
    fake_api.enqueue(Script(text="A different answer"))
    panel._regenerate_button.click()
    panel.wait(5)
    assert [m.content for m in session.messages] == ["one", "A different answer"]
    assert [m["content"] for m in fake_api.chat_requests()[-1]["messages"]] == ["one"]
    assert "A different answer" in shown_html(panel)[-1]
    old_id = session.conversation_id
    panel._clear_button.click()
    assert session.messages == [] and session.conversation_id != old_id
    assert shown_html(panel) == []


def test_undo_while_streaming_is_refused(fake_api: FakeAPI, panels, session) -> None:
    panel = panels()
    fake_api.enqueue(Script(chunks=["x "] * 40, delay=0.02))
    panel.send("go")
    wait_for(lambda: panel._transcript.live is not None)
    panel.undo()
    assert "still streaming" in panel._note.value
    panel.wait(5)
    assert len(session.messages) == 2


def test_export_offers_csv_and_json_and_sets_dataframe(fake_api: FakeAPI, panels, session, tmp_path):
    panel = panels()
    panel.send("hi")
    panel.wait(5)
    panel._export_button.click()
    assert isinstance(panel.dataframe, pd.DataFrame)
    pd.testing.assert_frame_equal(panel.dataframe, session.to_dataframe())
    links = dict(re.findall(r'download="[^"]+\.(csv|json)" href="data:[^;]+;charset=utf-8;base64,([^"]+)"',
                            panel._links.value))  # fmt: skip
    csv = pd.read_csv(io.StringIO(base64.b64decode(links["csv"]).decode()))
    assert csv["content"].tolist() == ["hi", "Echo: hi"]
    records = json.loads(base64.b64decode(links["json"]))
    assert [r["role"] for r in records] == ["user", "assistant"]
    assert records[1]["source"] == "panel"
    frame = panel.export(tmp_path / "chat.csv")
    assert pd.read_csv(tmp_path / "chat.csv")["message_id"].tolist() == frame["message_id"].tolist()
    panel.export(tmp_path / "chat.json")
    assert json.loads((tmp_path / "chat.json").read_text())[0]["content"] == "hi"


# -- one session, many views ------------------------------------------------------------------


def test_session_ask_appears_in_the_panel_and_panel_turns_are_history(fake_api, panels, session) -> None:
    panel = panels()
    session.ask("from a cell")
    shown = shown_html(panel)
    assert len(shown) == 2
    assert "from a cell" in text_of(shown[0]) and "Echo: from a cell" in text_of(shown[1])
    panel.send("from the panel")
    panel.wait(5)
    session.ask("and a cell again")
    sent = [m["content"] for m in fake_api.chat_requests()[-1]["messages"]]
    assert sent == ["from a cell", "Echo: from a cell", "from the panel", "Echo: from the panel",
                    "and a cell again"]  # fmt: skip
    assert len(shown_html(panel)) == 6


def test_reply_streamed_by_another_thread_locks_and_fills_the_panel(fake_api, panels, session) -> None:
    panel = panels()
    fake_api.enqueue(Script(chunks=["from ", "elsewhere"], delay=0.05))
    worker = threading.Thread(target=session.ask, args=("background",))
    worker.start()
    wait_for(lambda: panel._transcript.live is not None)
    assert panel._undo_button.disabled and panel._stop_button.layout.display is None
    assert not panel._input.disabled
    panel._input.value = "me too"
    assert panel.send() is False
    assert panel._input.value == "me too"  # refused, and kept in the box
    worker.join(5)
    assert "from elsewhere" in text_of(shown_html(panel)[-1])
    assert not panel._undo_button.disabled and panel._stop_button.layout.display == "none"


def test_two_panels_stay_in_sync(fake_api: FakeAPI, panels, session: Session) -> None:
    a, b = panels(), panels()
    fake_api.enqueue(Script(chunks=["Hi ", "there"], delay=0.02))
    a.send("hello")
    wait_for(lambda: b._transcript.live is not None)
    assert b._undo_button.disabled and not b._input.disabled and b.send("interleave?") is False
    a.wait(5)
    assert shown_html(a) == shown_html(b)
    assert len(shown_html(b)) == 2 and "Hi there" in shown_html(b)[1]
    b.send("from b")
    b.wait(5)
    assert shown_html(a) == shown_html(b) and len(shown_html(a)) == 4
    a.undo()
    assert shown_html(a) == shown_html(b) and len(shown_html(b)) == 2
    b._system.value = "Shared system prompt"
    assert a._system.value == "Shared system prompt"


def test_one_shot_requests_stay_out_of_the_panel(fake_api, panels, session) -> None:
    panel = panels()
    session.ask("aside", history=False)
    assert shown_html(panel) == []


def test_closed_panel_stops_listening(fake_api, panels, session, wire) -> None:
    panel = panels()
    panel.close()
    assert not session._observers.listening(panel._on_event)
    wire.clear()
    session.ask("after close")
    assert wire == []


# -- what reaches the frontend ----------------------------------------------------------------


def test_xss_payloads_never_reach_widget_html(fake_api, panels, session, wire) -> None:
    panel = panels()
    payload = "\n\n".join(XSS_PAYLOADS)
    fake_api.enqueue(Script(chunks=[payload[i : i + 7] for i in range(0, len(payload), 7)], delay=0.001))
    panel.send("Show me: " + XSS_PAYLOADS[1])
    panel.wait(5)
    session.ask("Again: " + XSS_PAYLOADS[0])  # through the session, rendered by the panel's events
    panel.export()
    values = [v for v in html_values(wire) if v != CSS]
    assert len(values) > 5
    offending = [bad for v in values for bad in dangerous_markup(v)]
    assert offending == []
    assert dangerous_markup('<p><img src=x onerror="y"></p>') == ["img", "img src=x", "img onerror"]
    # The payloads are still readable, as text.
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in "".join(values)


def test_streaming_is_throttled_and_bytes_stay_proportional(fake_api, panels, wire) -> None:
    panel = panels()
    deltas = reply_deltas(1500)
    fake_api.enqueue(Script(chunks=deltas, delay=0.001))
    panel.send("stream")
    live = wait_for(lambda: panel._transcript.live)
    start = len(wire)
    t0 = time.monotonic()
    panel.wait(20)
    elapsed = time.monotonic() - t0
    during = wire[start:]
    html_ids = {c for c, kind, d in during
                if kind == "comm_open" and (d.get("state") or {}).get("_model_name") in ("HTMLModel", "HTMLMathModel")}  # fmt: skip
    changes = [c for c, kind, _ in during if c in html_ids]  # each new block or tail update
    assert elapsed > 1.5
    assert 10 <= len(changes) <= 20 * elapsed + 5
    sent = sum(len(json.dumps(d)) for _, _, d in during)
    assert sent <= 3 * len("".join(deltas).encode()) + 8192 * elapsed  # the reply's size, and the pace
    assert live.widget in panel._transcript.messages.items
    assert text_of(shown_html(panel)[-1]).count("Part ") == "".join(deltas).count("## Part ")


def test_adding_messages_never_touches_older_message_widgets(fake_api, panels, session, wire) -> None:
    panel = panels()
    for prompt in ("one", "two", "three"):
        panel.send(prompt)
        panel.wait(5)
    older = {w.comm.comm_id for w in panel._transcript.messages.items}
    older |= {w.comm.comm_id for item in panel._transcript.messages.items
              for w in getattr(item, "children", ())}  # fmt: skip
    wire.clear()
    panel.send("four")
    panel.wait(5)
    session.ask("five")
    assert len(shown_html(panel)) == 10
    assert {c for c, _, _ in wire} & older == set()


def test_opening_on_a_500_message_session_takes_under_a_second(fake_api, panels, wire) -> None:
    big = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    for i in range(250):
        big.add_message("user", f"Question {i} with `code` and **bold**")
        big.add_message("assistant", f"Answer {i}:\n\n```python\nprint({i})\n```\n\n- a\n- b")
    t0 = time.perf_counter()
    panel = panels(big)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0
    shown = shown_html(panel)
    assert len(shown) == 200  # the newest; the rest on demand
    assert "Answer 249" in shown[-1] and "Question 150 " in shown[0]
    assert panel._transcript.earlier.description == "Show 300 earlier messages"
    assert panel._transcript.earlier.layout.display is None
    newest = panel._transcript.messages.items[-1]
    panel._transcript.earlier.click()
    shown = shown_html(panel)
    assert len(shown) == 500 and "Question 0 " in shown[0]
    assert panel._transcript.messages.items[-1] is newest  # drawn views are reused, not rebuilt
    assert panel._transcript.earlier.layout.display == "none"


# -- tools, approval, schemas ---------------------------------------------------------------------

RAN: list[str] = []
TWO_CALLS = 'Warmer? CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}'


def get_weather(city: str) -> dict:
    """Current weather for a city.

    Args:
        city: The city's name.
    """
    RAN.append(city)
    return {"city": city, "temp": {"Oslo": 4, "Rome": 18}.get(city, 0)}


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def tool_session(fake_api: FakeAPI) -> Session:
    RAN.clear()
    return Session(model=TOOL_MODEL, base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0)


def steps(panel: ChatPanel) -> list[str]:
    """The tool steps' summaries, as text."""
    return [plain(m) for h in shown_html(panel) for m in re.findall(r"<summary>.*?</summary>", h)]


def plain(fragment: str) -> str:
    return html.unescape(text_of(fragment))


def pending(panel: ChatPanel, city: str) -> Any:
    """The call waiting for approval, once it is the one for ``city``."""
    return wait_for(lambda: (a := panel._gate.pending) is not None and a.call.arguments["city"] == city and a)


def test_tool_calls_and_results_show_as_collapsed_steps(fake_api, panels, tool_session) -> None:
    panel = panels(tool_session, tools=[get_weather])
    assert panel.send(TWO_CALLS)
    assert panel.wait(10)
    assert RAN == ["Oslo", "Rome"]
    first, second = fake_api.chat_requests()
    assert first["tools"][0]["function"]["name"] == "get_weather" and second["tools"] == first["tools"]
    shown = shown_html(panel)
    assert [re.sub(r" · [\d.]+ s$", "", step) for step in steps(panel)] == [
        '→ get_weather(city="Oslo")',
        '→ get_weather(city="Rome")',
    ]
    assert sum("<details>" in h for h in shown) == 2
    assert '"temp": 18' in plain("".join(shown))
    assert 'calls get_weather(city="Oslo"), get_weather(city="Rome")' in plain(shown[1])
    assert text_of(shown[-1]).count("Results: get_weather[call_0_0]") == 1
    assert "2 requests · 2 tool calls" in panel._status.value
    assert [m.role for m in tool_session.messages] == ["user", "assistant", "tool", "tool", "assistant"]


def test_a_cell_turn_with_tools_shows_the_same_steps(fake_api, panels, tool_session) -> None:
    panel = panels(tool_session)  # no tools of its own: the steps come from the Session's events
    tool_session.ask(TWO_CALLS, tools=[get_weather])
    assert [step.split(" · ")[0] for step in steps(panel)] == [
        '→ get_weather(city="Oslo")',
        '→ get_weather(city="Rome")',
    ]
    again = panels(tool_session)  # drawn from history the same way
    assert [step.split(" · ")[0] for step in steps(again)] == [step.split(" · ")[0] for step in steps(panel)]


def test_approve_ask_waits_for_each_click(fake_api, panels, tool_session) -> None:
    panel = panels(tool_session, tools=[get_weather], approve="ask")
    assert panel.send(TWO_CALLS)
    oslo = pending(panel, "Oslo")
    assert oslo.widget in panel._transcript.messages.items
    assert [b.description for b in oslo.buttons.children] == ["Approve", "Deny"]
    assert RAN == [] and len(fake_api.chat_requests()) == 1 and panel.streaming
    assert panel.send("meanwhile") is False and "waits for your approval" in panel._note.value
    oslo.approve_button.click()
    rome = pending(panel, "Rome")
    assert RAN == []  # a round's calls are all decided before any runs
    assert oslo.widget.children == (oslo.label,) and "approved" in oslo.label.value
    rome.deny_button.click()
    assert panel.wait(10)
    assert RAN == ["Oslo"]
    final = tool_session.messages[-1].content
    assert "call_0_0] = {" in final and "call_0_1] = denied by the user" in final
    assert [step.split(" · ", 1)[1] for step in steps(panel)][1] == "denied"
    assert [m.error for m in tool_session.messages if m.role == "tool"] == [None, "denied by the user"]
    # The approval steps became the records' views: no extra widgets.
    assert oslo.widget in panel._transcript.messages.items and rome.widget in panel._transcript.messages.items
    assert len(panel._transcript.messages.items) == 5
    assert "1 denied" in panel._status.value and panel._stop_button.layout.display == "none"


def test_stop_while_waiting_for_approval_denies_the_call_and_unlocks(fake_api, panels, tool_session) -> None:
    panel = panels(tool_session, tools=[get_weather], approve="ask")
    assert panel.send(TWO_CALLS)
    oslo = pending(panel, "Oslo")
    worker = panel._worker
    panel._stop_button.click()
    worker.join(5)
    assert not worker.is_alive()
    assert RAN == [] and len(fake_api.chat_requests()) == 1  # nothing run, nothing more sent
    tools = [m for m in tool_session.messages if m.role == "tool"]
    assert [(m.tool_arguments, m.error) for m in tools] == [
        ({"city": "Oslo"}, "denied by the user"),
        ({"city": "Rome"}, "denied by the user"),  # asked after Stop: denied without asking
    ]
    assert steps(panel)[0] == '→ get_weather(city="Oslo") · denied'  # the approval step, now its record
    items = panel._transcript.messages.items
    assert len(items) == 4 and items[2] is oslo.widget  # Rome was never asked: its step is new
    assert (
        items[2]._dom_classes == ("oxen-msg", "oxen-tool") and 'class="oxen-msg oxen-tool"' in items[3].value
    )
    assert not panel.streaming and panel._stop_button.layout.display == "none"
    assert not panel._undo_button.disabled
    assert "stopped at the approval" in panel._status.value
    tool_session.ask("and now?")  # the history is sendable: every call has its answer
    sent = fake_api.chat_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]


def test_closing_the_panel_while_it_waits_denies_the_call(fake_api, tool_session) -> None:
    panel = ChatPanel(tool_session, tools=[get_weather], approve="ask")
    panel.send('CALL get_weather {"city": "Oslo"}')
    pending(panel, "Oslo")
    worker = panel._worker
    panel.close()
    worker.join(10)
    assert not worker.is_alive() and RAN == []
    assert [m.error for m in tool_session.messages if m.role == "tool"] == ["denied by the user"]


def test_an_approve_function_is_passed_through(fake_api, panels, tool_session) -> None:
    asked = []
    panel = panels(tool_session, tools=[get_weather], approve=lambda call: asked.append(call.name) or False)
    panel.send('CALL get_weather {"city": "Oslo"}')
    assert panel.wait(10)
    assert asked == ["get_weather"] and RAN == []
    assert panel._gate.pending is None and "denied by the user" in tool_session.messages[-1].content


def test_panel_options_are_checked_at_once(session) -> None:
    with pytest.raises(ParameterError, match="approve"):
        ChatPanel(session, tools=[get_weather], approve="yes")
    with pytest.raises(ParameterError, match="tools="):
        ChatPanel(session, approve="ask")
    with pytest.raises(ParameterError, match="list"):
        ChatPanel(session, tools=get_weather)
    from oxen_notebook._panel._steps import DENIED
    from oxen_notebook._tools import DENIED as TOOLS_DENIED

    assert DENIED == TOOLS_DENIED


def test_schema_shows_the_parsed_object_as_a_table_under_the_json(fake_api, panels, session, wire) -> None:
    panel = panels(schema=Person)
    fake_api.enqueue(Script(chunks=['{"name": "<script>alert(1)</script>", ', '"age": 36}']))
    assert panel.send("Who?")
    assert panel.wait(10)
    assert fake_api.chat_requests()[-1]["response_format"]["type"] == "json_schema"
    last = shown_html(panel)[-1]
    assert '"age": 36' in plain(last)  # the JSON stays
    assert "<th>name</th><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in last
    assert "<th>age</th><td>36</td>" in last
    assert last.index("oxen-parsed") > last.index("36}")
    assert [bad for v in html_values(wire) if v != CSS for bad in dangerous_markup(v)] == []
    reopened = panels()  # drawn from history: the table is there too
    assert "<th>age</th><td>36</td>" in shown_html(reopened)[-1]


def test_a_repaired_schema_reply_shows_the_error_then_the_table(fake_api, panels, session) -> None:
    panel = panels(schema=Person)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": "old"}'), Script(text='{"name": "Ada", "age": 36}'))
    panel.send("Ada, 36")
    assert panel.wait(10)
    shown = shown_html(panel)
    assert len(shown) == 4  # prompt, failed reply, the repair prompt, the reply
    assert 'class="oxen-error"' in shown[1] and "age" in text_of(shown[1])
    assert "<th>age</th><td>36</td>" in shown[3] and "oxen-parsed" not in shown[1]


def test_tool_names_and_arguments_are_escaped(fake_api, panels, tool_session, wire) -> None:
    panel = panels(tool_session, tools=[get_weather])
    panel.send('CALL get_weather {"city": "<img src=x onerror=alert(1)>"} ; CALL <b>x</b> {"a": 1}')
    assert panel.wait(10)
    assert RAN == ["<img src=x onerror=alert(1)>"]
    values = [v for v in html_values(wire) if v != CSS]
    assert [bad for v in values for bad in dangerous_markup(v)] == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in "".join(values)


def test_a_schema_reply_that_never_validates_shows_the_error_and_no_table(fake_api, panels, session) -> None:
    panel = panels(schema=Person)
    fake_api.enqueue(Script(text='{"name": "Ada"}'), Script(text='{"nom": "Ada"}'))
    panel.send("Ada")
    assert panel.wait(10)
    shown = shown_html(panel)
    assert len(shown) == 4 and not any("oxen-parsed" in h for h in shown)
    assert all('class="oxen-error"' in shown[i] for i in (1, 3))
    # The error shows once, in the transcript; the status line only says the request failed (issue 22).
    assert "oxen-error" in panel._status.value and "name: Field required" in text_of(shown[3])
    assert "name: Field required" not in panel._status.value
    assert not panel.streaming and not panel._undo_button.disabled


def test_a_call_asked_about_whose_record_never_comes_is_removed(panels) -> None:
    from oxen_notebook._toolbox import ToolCall

    panel = panels()
    transcript = panel._transcript
    call = ToolCall("call_0_0", "get_weather", {"city": "Oslo"}, '{"city": "Oslo"}')
    approval = transcript.ask(call)
    assert transcript.messages.items == [approval.widget]
    transcript.add(Message("tool", "4", tool_call_id="call_0_0", tool_name="get_weather"))
    assert len(transcript.messages.items) == 2  # undecided: another turn's record with the same id
    approval.decide(True)
    transcript.drop_approvals()
    assert approval.widget not in transcript.messages.items and approval.widget.comm is None


def test_a_schema_reply_asked_from_code_shows_its_table_in_an_open_panel(fake_api, panels, session) -> None:
    panel = panels()
    seen = []
    session.on("update", seen.append)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    session.ask("Who?", schema=Person)  # not the panel's request: the record gains parsed afterwards
    assert [e.message.parsed for e in seen] == [{"name": "Ada", "age": 36}]
    assert "<th>age</th><td>36</td>" in shown_html(panel)[-1]


def test_export_csv_makes_formulas_inert_in_the_file_and_the_download(
    fake_api: FakeAPI, panels, session, tmp_path
):
    """The CSV download link and ``export("x.csv")``: a reply that begins like a spreadsheet formula
    gets a ' in front (OWASP); the DataFrame and the JSON keep it as the model wrote it."""
    import csv

    formula = '=HYPERLINK("https://evil.example/","click")'
    panel = panels()
    for text in (formula, "@cmd", "-1+1"):
        fake_api.enqueue(Script(chunks=[text]))
        panel.send("go")
        panel.wait(5)
    frame = panel.export(tmp_path / "chat.csv")
    assert frame["content"].tolist()[1::2] == [formula, "@cmd", "-1+1"]
    links = dict(re.findall(r'download="[^"]+\.(csv|json)" href="data:[^;]+;charset=utf-8;base64,([^"]+)"',
                            panel._links.value))  # fmt: skip
    downloaded = base64.b64decode(links["csv"]).decode()
    with open(tmp_path / "chat.csv", newline="", encoding="utf-8") as file:
        written = file.read()
    assert downloaded == written
    replies = [
        row["content"]
        for row in csv.DictReader(io.StringIO(written, newline=""))
        if row["role"] == "assistant"
    ]
    assert replies == ["'" + formula, "'@cmd", "'-1+1"]
    assert [r["content"] for r in json.loads(base64.b64decode(links["json"]))][1::2] == [
        formula,
        "@cmd",
        "-1+1",
    ]
