"""The chat panel's Python half of its front-end (``_panel/_front.py``, ``_controls.py``): the
messages ``front.js`` sends, fed to the widget's comm as a kernel delivers them, and what reaches
the loopback fake API (tests/test_panel_front_browser.py drives the real module in Chromium)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oxen_notebook import ChatPanel
from oxen_notebook._panel._controls import FALLBACK_NOTE
from oxen_notebook._panel._front import Front
from tests.fake_api import FakeAPI, Script
from tests.test_panel import panels, wait_for, wire  # noqa: F401 - fixtures


def front(panel: ChatPanel, content: dict[str, Any]) -> None:
    """Deliver one custom message from the front-end to the panel's widget, as the kernel does."""
    panel._front._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def sent(api: FakeAPI) -> list[str]:
    return [r["messages"][-1]["content"] for r in api.chat_requests()]


def test_the_module_ships_with_the_package_and_is_the_widgets_esm() -> None:
    module = Path(Front.__module__.replace(".", "/")).parent
    esm = str(Front()._esm)
    assert "export default { render }" in esm and "data-lm-suppress-shortcuts" in esm
    assert (Path(__file__).parent.parent / module / "front.js").read_text() == esm


def test_until_ready_the_ipywidgets_controls_show_with_one_line(panels) -> None:  # noqa: F811
    panel = panels()
    assert panel._controls.fallback in panel.widget.children
    assert panel._front.layout.display == "none"
    assert "front-end did not load" in FALLBACK_NOTE
    front(panel, {"event": "ready", "insert": True})
    assert panel._controls.fallback not in panel.widget.children  # no second Send or Stop
    assert panel._front.layout.display is None
    front(panel, {"event": "ready", "insert": True})  # each view says so: nothing changes
    assert panel._front.layout.display is None
    assert panel._front.anchor == panel.widget.model_id  # Insert as cell finds the panel's cell by it


def test_a_send_carries_its_whole_text_lines_included(fake_api: FakeAPI, panels) -> None:  # noqa: F811
    panel = panels()
    front(panel, {"event": "ready"})
    text = "Traceback (most recent call last):\n  File 'x.py'\nValueError: bad"
    front(panel, {"event": "send", "text": text})
    assert panel.wait(5)
    assert sent(fake_api) == [text]


def test_busy_turns_the_button_to_stop_and_a_refused_text_goes_back(fake_api, panels, wire) -> None:  # noqa: F811
    panel = panels()
    front(panel, {"event": "ready"})
    fake_api.enqueue(Script(chunks=[f"tick{i} " for i in range(200)], delay=0.02))
    front(panel, {"event": "send", "text": "count slowly"})
    wait_for(lambda: panel._front.busy)
    front(panel, {"event": "send", "text": "typed while it streams"})
    back = [d for _, kind, d in wire if kind == "comm_msg" and d.get("method") == "custom"]
    assert {"event": "refused", "text": "typed while it streams"} in [d["content"] for d in back]
    assert "still streaming" in panel._front.note  # by the box
    front(panel, {"event": "stop"})  # maybe before the request is out: it is stopped when it is
    assert panel.wait(5)
    assert not panel._front.busy and panel._front.note == ""  # the note went with the state
    assert sent(fake_api) == ["count slowly"]
    assert panel.session.messages[-1].finish_reason == "interrupted"


def test_regenerate_and_a_model_id_not_in_the_list(fake_api: FakeAPI, panels) -> None:  # noqa: F811
    panel = panels()
    front(panel, {"event": "ready"})
    wait_for(lambda: panel._controls.models_known)
    panel._model.value = "gpt-6"
    assert "gpt-6 is not in the server's model list" in panel._front.note
    panel._model.value = "test-model"
    assert panel._front.note == ""
    front(panel, {"event": "send", "text": "once"})
    assert panel.wait(5)
    front(panel, {"event": "regenerate"})
    assert panel.wait(5)
    assert sent(fake_api) == ["once", "once"]
    assert [m.role for m in panel.session.messages] == ["user", "assistant"]


def test_a_failed_request_is_one_callout_and_a_short_status(fake_api: FakeAPI, panels) -> None:  # noqa: F811
    panel = panels()
    panel._model.value = "gpt-6"
    panel.send("hello")
    assert panel.wait(5)
    last = panel._transcript.messages.items[-1]
    html = "".join(w.value for w in last.children[1].children[0].children)
    assert 'class="oxen-callout oxen-callout-error"' in html and "data-retry" in html and "gpt-6" in html
    assert "Pick a model from the Model list, then Retry." in html  # one sentence, one action
    assert "oxen-assistant" not in last._dom_classes and "terminal" not in html and "`" not in html
    assert "not found" not in panel._status.value and "failed" in panel._status.value
