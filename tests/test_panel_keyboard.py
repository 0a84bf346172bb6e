"""Enter in the chat panel's message box sends the box's whole text, whatever order the front end's
messages come in.

The front end sends the Enter key's ``submit`` event at once, and the box's value (synced only when
the text is committed, on Enter or blur) as a state update right after it, or later when an earlier
update of the box is still in flight. These tests feed the box's comm the messages a browser sends,
in the orders a browser sends them (tests/test_panel_browser.py types into a real one), and check
what reaches the loopback fake API.
"""

from __future__ import annotations

from typing import Any

import pytest

from oxen_notebook import ChatPanel, Session
from oxen_notebook._panel._input import ENTER_WAIT
from tests.fake_api import FakeAPI, Script


def frontend(box: Any, data: dict[str, Any]) -> None:
    """Deliver one comm message from the front end to the widget, as the kernel does."""
    box._handle_msg({"content": {"data": data}, "buffers": []})


def commit(panel: ChatPanel, text: str) -> None:
    """The box's text committed by Enter or a blur: a state update of its value."""
    frontend(panel._input, {"method": "update", "state": {"value": text}, "buffer_paths": []})


def enter(panel: ChatPanel) -> None:
    """The Enter key's custom message."""
    frontend(panel._input, {"method": "custom", "content": {"event": "submit"}})


def sent(api: FakeAPI) -> list[str]:
    return [r["messages"][-1]["content"] for r in api.chat_requests()]


@pytest.fixture
def panel(session: Session):
    p = ChatPanel(session)
    yield p
    p.stop()
    p.wait(5)
    p.close()


def test_the_box_syncs_only_committed_text(panel: ChatPanel) -> None:
    # Keystrokes are not synced one by one: a throttled stream of partial values is what let
    # Enter overtake the last keystrokes.
    assert panel._input.continuous_update is False


def test_enter_sends_the_value_that_follows_it(fake_api: FakeAPI, panel: ChatPanel) -> None:
    commit(panel, "typed, then a click elsewhere")  # what the kernel had when Enter came
    enter(panel)
    assert sent(fake_api) == []  # Enter alone does not send the text the kernel has
    commit(panel, "typed, then a click elsewhere, then more")
    assert panel.wait(5)
    assert sent(fake_api) == ["typed, then a click elsewhere, then more"]
    assert panel._input.value == ""


def test_a_blur_sends_nothing_and_send_sends_the_committed_text(fake_api: FakeAPI, panel: ChatPanel) -> None:
    commit(panel, "typed, then a click elsewhere")
    assert panel.wait(5)
    assert sent(fake_api) == [] and not panel.streaming
    assert panel._input.value == "typed, then a click elsewhere"
    panel._send_button.click()  # its click comes after the blur's update
    assert panel.wait(5)
    assert sent(fake_api) == ["typed, then a click elsewhere"]


def test_enter_that_changed_nothing_sends_the_text_after_a_short_wait(
    fake_api: FakeAPI, panel: ChatPanel
) -> None:
    assert 0 < ENTER_WAIT <= 1
    commit(panel, "committed by a blur, then Enter")
    enter(panel)
    assert panel.wait(5)
    assert sent(fake_api) == ["committed by a blur, then Enter"]


def test_enter_on_an_empty_box_asks_for_a_message(fake_api: FakeAPI, panel: ChatPanel) -> None:
    enter(panel)
    assert panel.wait(5)
    assert sent(fake_api) == []
    assert "Type a message first." in panel._note.value


def test_two_enters_before_the_value_send_one_message(fake_api: FakeAPI, panel: ChatPanel) -> None:
    enter(panel)
    enter(panel)
    commit(panel, "one message")
    assert panel.wait(5)
    assert sent(fake_api) == ["one message"]
    assert "still streaming" not in panel._note.value


def test_send_before_the_value_arrives_takes_over_the_enter(fake_api: FakeAPI, panel: ChatPanel) -> None:
    commit(panel, "committed")
    enter(panel)
    panel._send_button.click()
    assert panel.wait(5)
    commit(panel, "")  # the box, cleared by the kernel, syncs again: it is no Enter's value
    assert panel.wait(5)
    assert sent(fake_api) == ["committed"]
    assert panel._note.value == ""


def test_the_kernels_own_changes_are_not_the_committed_text(fake_api: FakeAPI, panel: ChatPanel) -> None:
    enter(panel)
    panel._input.value = "set by the kernel"  # e.g. a refused message given back
    commit(panel, "typed in the browser")
    assert panel.wait(5)
    assert sent(fake_api) == ["typed in the browser"]


def test_enter_while_a_reply_streams_keeps_the_text_for_later(fake_api: FakeAPI, panel: ChatPanel) -> None:
    # The box stays enabled while a reply streams (a disabled box loses the focus, and the keys
    # typed next go to the notebook): Enter then refuses, and the text stays for the next Enter.
    fake_api.enqueue(Script(chunks=[f"tick{i} " for i in range(40)], delay=0.02))
    assert panel.send("count slowly")
    enter(panel)  # as a browser sends them: the key, then the value it committed
    commit(panel, "typed while it streams")
    assert "still streaming" in panel._note.value
    assert not panel._input.disabled
    assert panel.wait(5)
    assert sent(fake_api) == ["count slowly"]
    assert panel._note.value == ""  # the note went with the reply (issue 22, item 6: no stale note)
    assert panel._input.value == "typed while it streams"
    enter(panel)  # the value was committed already: Enter changed nothing
    assert panel.wait(5)
    assert sent(fake_api) == ["count slowly", "typed while it streams"]
    assert panel._input.value == ""


def test_close_drops_a_pending_enter(fake_api: FakeAPI, session: Session) -> None:
    panel = ChatPanel(session)
    commit(panel, "never sent")
    enter(panel)
    panel.close()
    assert panel.wait(5)
    assert sent(fake_api) == [] and session.messages == []


def click_send(panel: ChatPanel) -> None:
    """The Send button's click, as the front end sends it."""
    frontend(panel._send_button, {"method": "custom", "content": {"event": "click"}})


def test_a_send_click_that_overtakes_the_blurs_value_still_sends_the_whole_text(fake_api, panel) -> None:
    # Clicking Send blurs the box: its value update and the button's click are two widgets'
    # messages, and under load the click can arrive first.
    click_send(panel)
    assert sent(fake_api) == [] and panel._input.value == ""
    commit(panel, "typed, then the Send button")
    assert panel.wait(5)
    assert sent(fake_api) == ["typed, then the Send button"]
    assert panel._input.value == ""


def test_a_send_click_on_an_empty_box_with_nothing_coming_says_so(fake_api, panel) -> None:
    click_send(panel)
    assert panel.wait(5)  # the wait for a value ends; nothing was typed
    assert sent(fake_api) == [] and "Type a message first" in panel._note.value
