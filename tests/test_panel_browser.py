"""The chat panel in a real browser: Debian's Chromium driven by Playwright, against a JupyterLab
server (JupyterLab and Notebook 7 pages) started on loopback with isolated config directories.

The kernel talks to the loopback fake API running in this test process (its URL and key reach the
kernel through the server's environment). Screenshots of each step go to the test's tmp dir.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script
from tests.helpers import Jupyter

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
KEY = "browser-test-key"
PANEL_CELL = """\
import oxen_notebook
from oxen_notebook import ChatPanel
session = oxen_notebook.default_session(model="test-model")
panel = ChatPanel(session)
panel"""
MESSAGE_BOX = ".oxen-panel textarea.oxen-box"  # the front-end's box (front.js)
STREAMING_TIMEOUT = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Chromium is not installed (CI installs it with apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture(scope="module")
def jupyter(api: FakeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    server = Jupyter(tmp_path_factory.mktemp("jupyter"), api.base_url, KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, api: FakeAPI) -> Iterator[Page]:
    api.reset()
    api.api_key = KEY
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    yield page
    context.close()


class Shots:
    """Numbered screenshots of each step, in the test's tmp dir."""

    def __init__(self, page: Page, where: Path) -> None:
        self.page, self.where, self.count = page, where, 0

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = self.where / f"{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path))
        return path


def open_notebook(page: Page, jupyter: Jupyter, name: str, ui: str = "lab") -> None:
    # A workspace per notebook, so JupyterLab does not reopen the other tests' notebooks.
    prefix = f"/lab/workspaces/{Path(name).stem}/tree" if ui == "lab" else "/notebooks"
    page.goto(f"{jupyter.url}{prefix}/{name}?token={jupyter.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    jupyter.wait_for_kernel(name)
    if ui == "lab":
        expect(page.locator(".jp-KernelName").first).not_to_have_text("No Kernel", timeout=30_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").first.wait_for(timeout=30_000)


def run_cell(page: Page, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


def open_panel(page: Page, model: str = "test-model") -> Any:
    run_cell(page, 0)
    panel = page.locator(".oxen-panel").first
    panel.wait_for(timeout=60_000)
    expect(panel.locator(".oxen-statusline")).to_contain_text(model, timeout=30_000)
    return panel


def wait_idle(page: Page) -> None:
    """Until no reply streams: Stop shows only then (the message box stays enabled)."""
    expect(page.locator(".oxen-panel button", has_text="Stop").first).to_be_hidden(timeout=STREAMING_TIMEOUT)


def say(page: Page, text: str) -> None:
    box = page.locator(MESSAGE_BOX).first
    wait_idle(page)
    box.click()
    box.fill(text)
    box.press("Enter")


def transcript(page: Page) -> Any:
    return page.locator(".oxen-panel .oxen-transcript").first


# -- JupyterLab ---------------------------------------------------------------------------------


def test_panel_in_jupyterlab(page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path) -> None:
    name = jupyter.notebook(
        "lab.ipynb", PANEL_CELL, 'session.ask("from a cell")', 'print("kernel " + "is free")'
    )
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name)
    panel = open_panel(page)
    shot("panel-open")

    # Type and press Enter: the reply streams into the transcript.
    api.enqueue(Script(chunks=["Hello ", "from ", "**the** ", "fake ", "model.\n\n", "1. Load ", "the data\n",
                               "2. Plot it\n\n", "```python\n", "import pandas as pd\n",
                               "frame = pd.read_csv('data.csv')\n", "frame.plot()\n", "```\n"],
                       delay=0.05))  # fmt: skip
    say(page, "Say hello")
    expect(panel.locator("button", has_text="Stop")).to_be_visible()
    expect(transcript(page)).to_contain_text("Hello from the fake model.", timeout=STREAMING_TIMEOUT)
    expect(transcript(page).locator("strong", has_text="the")).to_have_count(1)
    expect(transcript(page).locator("pre")).to_contain_text("frame = pd.read_csv('data.csv')")
    expect(transcript(page).locator("ol li")).to_have_count(2)
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    expect(panel.locator("button", has_text="Stop")).to_be_hidden()
    assert api.chat_requests()[-1]["messages"][-1]["content"] == "Say hello"
    shot("streamed-reply")
    panel.screenshot(path=str(tmp_path / "panel.png"))  # the README's docs/panel.png

    # Stop mid-stream: the HTTP stream closes at once and the partial reply stays.
    api.enqueue(Script(chunks=[f"tick{i} " for i in range(400)], delay=0.05))
    say(page, "Count slowly")
    expect(transcript(page)).to_contain_text("tick5", timeout=STREAMING_TIMEOUT)
    # The kernel is free while the panel streams: another cell runs meanwhile.
    run_cell(page, 2)
    expect(page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea-output")).to_have_text(
        "kernel is free", timeout=5_000
    )
    expect(panel.locator("button", has_text="Stop")).to_be_visible()
    shot("streaming")
    closed_before = api.closed_early
    clicked = time.monotonic()
    panel.locator("button", has_text="Stop").click()
    while api.closed_early == closed_before and time.monotonic() - clicked < 5:
        time.sleep(0.01)
    assert time.monotonic() - clicked < 0.5
    expect(panel.locator(".oxen-statusline")).to_contain_text("stopped", timeout=5_000)
    frozen = transcript(page).inner_text()
    assert "tick5" in frozen and "tick399" not in frozen
    time.sleep(0.5)
    assert transcript(page).inner_text() == frozen
    expect(panel.locator("button", has_text="Stop")).to_be_hidden()
    shot("stopped")

    # An exchange made by a cell appears in the panel.
    run_cell(page, 1)
    expect(transcript(page)).to_contain_text("Echo: from a cell", timeout=STREAMING_TIMEOUT)
    shot("exchange-from-cell")

    # The newest message stays in view as the transcript grows past the box.
    api.enqueue(Script(chunks=[f"Line {i} of a long reply.\n\n" for i in range(40)], delay=0.01))
    say(page, "A long one")
    expect(transcript(page)).to_contain_text("Line 39 of a long reply.", timeout=STREAMING_TIMEOUT)
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    box = transcript(page).bounding_box()
    last = transcript(page).locator("p", has_text="Line 39 of a long reply.").bounding_box()
    first = transcript(page).locator(".oxen-user").first.bounding_box()
    assert box and last and first
    assert box["y"] <= last["y"] and last["y"] + last["height"] <= box["y"] + box["height"] + 2
    assert first["y"] < box["y"]  # the oldest message scrolled out of view
    shot("scrolled-to-newest")

    # Export: a CSV download of the conversation.
    panel.locator("button", has_text="Export").click()
    link = panel.locator("a.oxen-export", has_text="CSV")
    expect(link).to_be_visible()
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [r["role"] for r in rows] == ["user", "assistant"] * 4
    assert rows[3]["finish_reason"] == "interrupted" and rows[5]["content"] == "Echo: from a cell"
    shot("exported")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_oxen_cell_exchange_appears_in_panel(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path
) -> None:
    name = jupyter.notebook("magic.ipynb", PANEL_CELL, "%load_ext oxen_notebook", "%%oxen\nfrom the magic")
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name)
    panel = open_panel(page)
    say(page, "first from the panel")
    expect(transcript(page)).to_contain_text("Echo: first from the panel", timeout=STREAMING_TIMEOUT)
    run_cell(page, 1)
    run_cell(page, 2)
    expect(transcript(page)).to_contain_text("Echo: from the magic", timeout=STREAMING_TIMEOUT)
    # The panel's exchange was part of the history the magic sent.
    sent = [m["content"].strip() for m in api.chat_requests()[-1]["messages"]]
    assert sent[-3:] == ["first from the panel", "Echo: first from the panel", "from the magic"]
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    shot("magic-exchange-in-panel")


# -- a real keyboard -----------------------------------------------------------------------------

TYPED = [f"message number {i} alpha beta gamma delta" for i in range(20)]
KEY_DELAY = 10  # ms between keys: a fast typist


def wait_for_requests(api: FakeAPI, count: int) -> list[str]:
    """The user messages the fake API received, once there are ``count`` (or after 20 s)."""
    deadline = time.monotonic() + STREAMING_TIMEOUT / 1000
    while len(api.chat_requests()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [r["messages"][-1]["content"] for r in api.chat_requests()]


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_typed_messages_arrive_whole_and_in_order(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path, ui: str
) -> None:
    """Typing at 10 ms a key and pressing Enter at once sends the whole text (ipywidgets sends
    the Enter event at once but throttles the box's value updates)."""
    name = jupyter.notebook(f"keyboard-{ui}.ipynb", PANEL_CELL)
    open_notebook(page, jupyter, name, ui=ui)
    panel = open_panel(page)
    box = page.locator(MESSAGE_BOX).first
    for count, text in enumerate(TYPED, start=1):
        # As a person would: the next message once the reply is shown and done.
        wait_idle(page)
        box.click()
        page.keyboard.type(text, delay=KEY_DELAY)
        page.keyboard.press("Enter")
        sent = wait_for_requests(api, count)
        assert sent == TYPED[:count]
        expect(transcript(page)).to_contain_text(f"Echo: {text}", timeout=STREAMING_TIMEOUT)
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    expect(box).to_have_value("")
    assert transcript(page).locator(".oxen-user p").all_inner_texts() == TYPED
    Shots(page, tmp_path)("twenty-messages")


def test_blur_keeps_the_text_and_enter_or_send_sends_all_of_it(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path
) -> None:
    name = jupyter.notebook("blur.ipynb", PANEL_CELL)
    open_notebook(page, jupyter, name)
    panel = open_panel(page)
    box = page.locator(MESSAGE_BOX).first
    elsewhere = panel.locator(".oxen-statusline")

    # Clicking elsewhere commits the text to the kernel but sends nothing; typing on and Enter
    # sends all of it.
    box.click()
    page.keyboard.type("typed, then a click elsewhere", delay=KEY_DELAY)
    elsewhere.click()
    box.click()
    page.keyboard.press("End")
    page.keyboard.type(", then more and Enter", delay=KEY_DELAY)
    page.keyboard.press("Enter")
    first = "typed, then a click elsewhere, then more and Enter"
    assert wait_for_requests(api, 1) == [first]
    expect(transcript(page)).to_contain_text(f"Echo: {first}", timeout=STREAMING_TIMEOUT)

    # Send sends the box's whole text.
    wait_idle(page)
    box.click()
    page.keyboard.type("typed, then the Send button", delay=KEY_DELAY)
    panel.locator("button", has_text="Send").click()
    assert wait_for_requests(api, 2) == [first, "typed, then the Send button"]
    expect(transcript(page)).to_contain_text("Echo: typed, then the Send button", timeout=STREAMING_TIMEOUT)

    # Enter that changes nothing (the text was committed by a blur) sends the text too.
    wait_idle(page)
    box.click()
    page.keyboard.type("typed, a click elsewhere, back and Enter", delay=KEY_DELAY)
    elsewhere.click()
    box.click()
    page.keyboard.press("Enter")
    sent = wait_for_requests(api, 3)
    assert sent == [first, "typed, then the Send button", "typed, a click elsewhere, back and Enter"]
    expect(transcript(page)).to_contain_text(f"Echo: {sent[-1]}", timeout=STREAMING_TIMEOUT)
    expect(box).to_have_value("")
    assert transcript(page).locator(".oxen-user p").all_inner_texts() == sent
    Shots(page, tmp_path)("blur-send-enter")


def notebook_of(jupyter: Jupyter, name: str, *cells: tuple[str, str]) -> str:
    """A notebook of ``(kind, source)`` cells (``code`` or ``markdown``) in the server's root."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source) for kind, source in cells]
    nbformat.write(nb, jupyter.root / name)
    return name


def cell_types(page: Page) -> list[str]:
    """The notebook's cells as the page shows them: ``code``, ``markdown`` or ``raw``, in order."""
    return page.locator(".jp-Notebook .jp-Cell").evaluate_all(
        "cells => cells.map(c => c.classList.contains('jp-MarkdownCell') ? 'markdown'"
        " : c.classList.contains('jp-CodeCell') ? 'code' : 'raw')"
    )


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_typing_while_a_reply_streams_stays_in_the_box(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path, ui: str
) -> None:
    """Keys typed while a reply streams go into the message box, not to the notebook's command
    mode (where ``d d`` deletes a cell and ``m`` makes it Markdown), and Enter sends them later."""
    cells = [("code", PANEL_CELL), ("markdown", "## Notes"), ("code", "x = 1")]
    name = notebook_of(jupyter, f"typing-{ui}.ipynb", *cells)
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name, ui=ui)
    panel = open_panel(page)
    assert cell_types(page) == ["code", "markdown", "code"]
    stop = panel.locator("button", has_text="Stop")
    box = page.locator(MESSAGE_BOX).first

    api.enqueue(Script(chunks=[f"tick{i} " for i in range(100)], delay=0.05))
    box.click()
    page.keyboard.type("count slowly", delay=KEY_DELAY)
    page.keyboard.press("Enter")
    expect(transcript(page)).to_contain_text("tick3", timeout=STREAMING_TIMEOUT)
    page.keyboard.type("d d m hello", delay=KEY_DELAY)  # no click first: the keys go where the focus is
    expect(stop).to_be_visible()  # the reply was still streaming while the keys went in
    shot("typed-while-streaming")
    assert cell_types(page) == ["code", "markdown", "code"]
    expect(box).to_have_value("d d m hello")
    expect(box).to_be_focused()

    expect(stop).to_be_hidden(timeout=STREAMING_TIMEOUT)
    expect(transcript(page)).to_contain_text("tick99")
    page.keyboard.press("Enter")
    assert wait_for_requests(api, 2) == ["count slowly", "d d m hello"]
    expect(transcript(page)).to_contain_text("Echo: d d m hello", timeout=STREAMING_TIMEOUT)
    expect(box).to_have_value("")
    assert cell_types(page) == ["code", "markdown", "code"]
    assert transcript(page).locator(".oxen-user p").all_inner_texts() == ["count slowly", "d d m hello"]
    shot("sent-after-the-reply")


# -- tools and approval --------------------------------------------------------------------------

TOOL_PANEL_CELL = '''\
import oxen_notebook
from oxen_notebook import ChatPanel

ran = []


def get_weather(city: str) -> dict:
    """Current weather for a city.

    Args:
        city: The city's name.
    """
    ran.append(city)
    return {"city": city, "temp": {"Oslo": 4, "Rome": 18}[city]}


session = oxen_notebook.default_session(model="tool-model")
panel = ChatPanel(session, tools=[get_weather], approve="ask")
panel'''


def test_approve_and_deny_tool_calls_in_jupyterlab(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path
) -> None:
    name = jupyter.notebook("tools.ipynb", TOOL_PANEL_CELL, 'print("ran", ran)')
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name)
    panel = open_panel(page, model="tool-model")
    say(page, 'Warmer? CALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}')

    asked = transcript(page).locator(".oxen-approval")
    expect(asked.first).to_contain_text('→ get_weather(city="Oslo")', timeout=STREAMING_TIMEOUT)
    expect(asked).to_have_count(1)  # the next call is asked once this one is decided
    expect(panel.locator(".oxen-statusline")).to_contain_text("Approve or Deny")
    # The reply waits in its thread; the kernel is free meanwhile.
    run_cell(page, 1)
    expect(page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")).to_have_text("ran []")
    assert len(api.chat_requests()) == 1
    shot("waiting-for-approval")
    asked.first.locator("button", has_text="Approve").click()

    expect(asked.nth(1)).to_contain_text('→ get_weather(city="Rome")', timeout=STREAMING_TIMEOUT)
    expect(asked.first).to_contain_text("approved")
    expect(asked.first.locator("button")).to_have_count(0)
    asked.nth(1).locator("button", has_text="Deny").click()

    expect(transcript(page)).to_contain_text("Results: get_weather[call_0_0] = ", timeout=STREAMING_TIMEOUT)
    final = transcript(page).locator(".oxen-assistant").last
    expect(final).to_contain_text('"temp": 4')
    expect(final).to_contain_text("get_weather[call_0_1] = denied by the user")
    wait_idle(page)
    expect(panel.locator(".oxen-statusline")).to_contain_text("2 requests · 2 tool calls (1 denied)")
    summaries = transcript(page).locator("details summary")
    expect(summaries).to_have_count(2)
    expect(summaries.first).to_contain_text('→ get_weather(city="Oslo") · ')
    expect(summaries.nth(1)).to_have_text('→ get_weather(city="Rome") · denied')
    result = transcript(page).locator("details pre").first
    expect(result).to_be_hidden()  # collapsed until clicked
    summaries.first.click()
    expect(result).to_be_visible()
    expect(result).to_contain_text('"temp": 4')
    expect(panel.locator("button", has_text="Approve")).to_have_count(0)
    shot("approved-and-denied")

    run_cell(page, 1)  # the tool ran once, for the approved call
    expect(page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")).to_have_text("ran ['Oslo']")
    second = api.chat_requests()[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "tool"]
    assert json.loads(second[2]["content"]) == {"city": "Oslo", "temp": 4}
    assert second[3]["content"] == "denied by the user"
    assert len(api.chat_requests()) == 2
    assert page.dialogs == []  # type: ignore[attr-defined]


# -- untrusted output ---------------------------------------------------------------------------

XSS = [
    "<script>window.__xss = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 2; alert('img')\">",
    "[click me](javascript:alert('link'))",
    "<a href=\"javascript:alert('raw link')\">raw link</a>",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "<style>body { display: none !important }</style>",
    "<svg onload=\"alert('svg')\"></svg>",
]


def test_xss_payloads_do_not_run_or_inject(
    page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path
) -> None:
    name = jupyter.notebook("xss.ipynb", PANEL_CELL)
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name)
    panel = open_panel(page)
    payload = "Payloads:\n\n" + "\n\n".join(XSS) + "\n\nend of payloads"
    api.enqueue(Script(chunks=[payload[i : i + 9] for i in range(0, len(payload), 9)], delay=0.005))
    say(page, XSS[1])  # the user's own text is untrusted too
    expect(transcript(page)).to_contain_text("end of payloads", timeout=STREAMING_TIMEOUT)
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    time.sleep(0.5)  # time for any onerror/onload to fire
    shot("xss")
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert page.evaluate("() => window.__xss") is None
    injected = ".oxen-transcript script, .oxen-transcript img, .oxen-transcript iframe, " \
        ".oxen-transcript svg, .oxen-transcript style, .oxen-transcript [onerror], " \
        ".oxen-transcript [onload], .oxen-panel a[href^='javascript']"  # fmt: skip
    assert page.locator(injected).count() == 0
    assert page.locator(".oxen-panel style").count() == 1  # the panel's own stylesheet, nothing else
    assert page.evaluate("() => getComputedStyle(document.body).display") != "none"
    assert panel.is_visible()
    text = transcript(page).inner_text()
    assert "<script>window.__xss = 1; alert('script')</script>" in text  # shown as text
    assert "<img src=x onerror=" in text


# -- Notebook 7 -----------------------------------------------------------------------------------


def test_panel_in_notebook7(page: Page, jupyter: Jupyter, api: FakeAPI, tmp_path: Path) -> None:
    name = jupyter.notebook("nb7.ipynb", PANEL_CELL)
    shot = Shots(page, tmp_path)
    open_notebook(page, jupyter, name, ui="notebook")
    panel = open_panel(page)
    shot("panel-open")
    api.enqueue(Script(chunks=["Streaming ", "in ", "Notebook ", "7"] + [f" more{i}" for i in range(60)],
                       delay=0.03))  # fmt: skip
    say(page, "Hello notebook")
    expect(panel.locator("button", has_text="Stop")).to_be_visible(timeout=STREAMING_TIMEOUT)
    expect(transcript(page)).to_contain_text("Streaming in Notebook 7", timeout=STREAMING_TIMEOUT)
    panel.locator("button", has_text="Stop").click()
    expect(panel.locator(".oxen-statusline")).to_contain_text("stopped", timeout=5_000)
    assert "more59" not in transcript(page).inner_text()
    shot("stopped")
    say(page, "again")
    expect(transcript(page)).to_contain_text("Echo: again", timeout=STREAMING_TIMEOUT)
    panel.locator("button", has_text="Undo").click()
    expect(transcript(page)).not_to_contain_text("Echo: again")
    panel.locator("button", has_text="Export").click()
    with page.expect_download() as info:
        panel.locator("a.oxen-export", has_text="JSON").click()
    records = json.loads(Path(info.value.path()).read_text())
    assert [r["role"] for r in records] == ["user", "assistant"]
    assert records[1]["finish_reason"] == "interrupted"
    shot("exported")
