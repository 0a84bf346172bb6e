"""The chat panel, ``Session.map``'s progress bar and ``compare``'s view on Colab's widget stack:
classic Notebook 6.5 + ipywidgets 7.8, in the second virtual environment that ``.ci/widgets7-env``
builds (``.venv-widgets7/``), driven in Debian's Chromium by Playwright.

The server and its kernels run that environment's Python; the kernel talks to the loopback fake
API in this test process. Without the environment the tests fail (CI must never skip them).
Screenshots of each step go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script
from tests.helpers import ROOT, ClassicNotebook, checkout_env, widgets7_python

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
KEY = "widgets7-test-key"
TIMEOUT = 20_000
PANEL_CELL = """\
import ipywidgets, notebook
import oxen_notebook
from oxen_notebook import ChatPanel
print("ipywidgets", ipywidgets.__version__, "notebook", notebook.__version__)
session = oxen_notebook.default_session(model="test-model")
panel = ChatPanel(session)
panel"""
MAP_CELL = """\
frame = session.map(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"], "Shout {text}", concurrency=2)
print(frame["reply"].tolist())"""
COMPARE_CELL = """\
table = session.compare("Describe {thing}", models=["test-model", "cheap-model"], thing="an ox")
print(table["reply"].tolist())"""
ROWS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
MESSAGE_BOX = "textarea.oxen-box"  # the front-end's box (front.js): anywidget loads in classic Notebook
HUMAN_KEY_DELAY = 70  # ms between keys: about 170 characters a minute


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture(scope="module")
def classic(api: FakeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClassicNotebook]:
    server = ClassicNotebook(tmp_path_factory.mktemp("classic"), api.base_url, KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(classic: ClassicNotebook) -> Iterator[Page]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        yield page
        browser.close()


def cell(page: Page, index: int) -> Any:
    return page.locator("#notebook-container .cell").nth(index)


def run_cell(page: Page, index: int) -> None:
    """Click into the cell's editor and press Ctrl+Enter, as a user does."""
    cell(page, index).locator(".CodeMirror").click()
    page.keyboard.press("Control+Enter")


def output_text(page: Page, index: int) -> Any:
    return cell(page, index).locator(".output_area .output_stdout")


@pytest.mark.browser
@pytest.mark.kernel
def test_panel_map_and_compare_in_classic_notebook_with_ipywidgets7(
    page: Page, classic: ClassicNotebook, api: FakeAPI, tmp_path: Path
) -> None:
    api.reset()
    api.api_key = KEY
    name = classic.notebook("widgets7.ipynb", PANEL_CELL, MAP_CELL, COMPARE_CELL)
    count = 0

    def shot(step: str) -> None:
        nonlocal count
        count += 1
        page.screenshot(path=str(tmp_path / f"{count:02d}-{step}.png"), full_page=True)

    page.goto(f"{classic.url}/notebooks/{name}?token={classic.token}")
    cell(page, 0).wait_for(timeout=60_000)
    classic.wait_for_kernel(name)
    page.locator("#kernel_indicator_icon.kernel_idle_icon").wait_for(timeout=30_000)

    # The panel, from the ipywidgets 7 environment's kernel.
    run_cell(page, 0)
    expect(output_text(page, 0)).to_contain_text("ipywidgets 7.8.", timeout=60_000)
    expect(output_text(page, 0)).to_contain_text("notebook 6.5.")
    panel = cell(page, 0).locator(".output_area .oxen-panel")
    expect(panel.locator(".oxen-statusline")).to_contain_text("test-model · ready", timeout=30_000)
    transcript = panel.locator(".oxen-transcript")
    stop = panel.locator("button", has_text="Stop")
    shot("panel-open")

    # Type at human speed and press Enter: the reply streams in and finishes.
    reply = "Hello from **ipywidgets** seven.\n\nA second paragraph, streamed word by word."
    api.enqueue(Script(chunks=[reply[i : i + 6] for i in range(0, len(reply), 6)], delay=0.1))
    box = panel.locator(MESSAGE_BOX)
    box.click()
    page.keyboard.type("Say hello, classic", delay=HUMAN_KEY_DELAY)
    page.keyboard.press("Enter")
    expect(stop).to_be_visible(timeout=TIMEOUT)
    answer = transcript.locator(".oxen-assistant").last
    expect(answer.locator(".oxen-role")).to_contain_text("test-model · streaming…")
    expect(answer).to_contain_text("Hello")
    assert stop.is_visible() and "word by word" not in answer.inner_text()  # still streaming
    shot("streaming")
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens", timeout=TIMEOUT)
    expect(stop).to_be_hidden()
    expect(answer.locator(".oxen-role")).not_to_contain_text("streaming")
    expect(answer.locator("p")).to_have_text(
        ["Hello from ipywidgets seven.", "A second paragraph, streamed word by word."]
    )
    expect(answer.locator("strong")).to_have_text("ipywidgets")
    expect(transcript.locator(".oxen-user p")).to_have_text(["Say hello, classic"])
    expect(box).to_have_value("")
    assert api.chat_requests()[-1]["messages"][-1]["content"] == "Say hello, classic"
    shot("replied")

    # Stop during a long reply: it stops at once and is marked stopped.
    # Paragraphs of ten ticks: finished blocks are sent at once (a single growing paragraph is
    # redrawn only as often as the panel's byte budget allows).
    api.enqueue(
        Script(chunks=[f"tick{i}" + ("\n\n" if i % 10 == 9 else " ") for i in range(400)], delay=0.05)
    )
    box.click()
    page.keyboard.type("Count slowly", delay=HUMAN_KEY_DELAY)
    page.keyboard.press("Enter")
    expect(transcript).to_contain_text("tick5", timeout=TIMEOUT)
    closed_before = api.closed_early
    clicked = time.monotonic()
    stop.click()
    while api.closed_early == closed_before and time.monotonic() - clicked < 5:
        time.sleep(0.01)
    assert api.closed_early > closed_before, "the HTTP stream was not closed"
    expect(panel.locator(".oxen-statusline")).to_contain_text("stopped", timeout=5_000)
    stopped = transcript.locator(".oxen-assistant").last
    expect(stopped.locator(".oxen-role")).to_contain_text("stopped")
    frozen = stopped.inner_text()
    assert "tick5" in frozen and "tick399" not in frozen
    time.sleep(0.5)
    assert stopped.inner_text() == frozen
    expect(stop).to_be_hidden()
    shot("stopped")

    # map: the progress bar shows while the rows run, then finishes.
    api.handler = lambda body: Script(
        text=body["messages"][-1]["content"].upper(),
        latency=0.25,
        usage={"prompt_tokens": 3, "completion_tokens": 2},
    )
    run_cell(page, 1)
    progress = cell(page, 1).locator(".output_area .widget-hprogress")
    expect(progress).to_be_visible(timeout=TIMEOUT)
    label = cell(page, 1).locator(".output_area .widget-html")
    expect(label).to_contain_text("ETA", timeout=TIMEOUT)
    shot("map-running")
    expect(label).to_contain_text("6/6 · ", timeout=TIMEOUT)
    expect(label).to_contain_text(" in ")
    expect(progress.locator(".progress-bar")).to_have_class("progress-bar progress-bar-success")
    expected = [f"SHOUT {row.upper()}" for row in ROWS]
    expect(output_text(page, 1)).to_have_text(str(expected) + "\n", timeout=TIMEOUT)
    shot("map-done")

    # compare: the side-by-side table, replies rendered.
    api.handler = None
    run_cell(page, 2)
    table = cell(page, 2).locator(".output_area table.oxen-compare")
    expect(table).to_be_visible(timeout=TIMEOUT)
    expect(table.locator("thead th")).to_have_text(["", "test-model", "cheap-model"])
    expect(table.locator("tbody tr").first.locator("td")).to_have_text(
        ["Echo: Describe an ox", "Echo: Describe an ox"]
    )
    expect(output_text(page, 2)).to_have_text(
        str(["Echo: Describe an ox", "Echo: Describe an ox"]) + "\n", timeout=TIMEOUT
    )
    shot("compare")
    # Every key typed went into the message box, none to the notebook's command mode.
    expect(page.locator("#notebook-container .cell")).to_have_count(3)
    assert page.dialogs == []  # type: ignore[attr-defined]


CODE = "import pandas as pd\nframe = pd.read_csv('data.csv')\nprint(frame['a'].sum() / 2)"


@pytest.mark.browser
@pytest.mark.kernel
def test_the_front_end_box_and_code_buttons_in_classic_notebook(
    page: Page, classic: ClassicNotebook, api: FakeAPI, tmp_path: Path
) -> None:
    """anywidget's nbextension loads the panel's front-end here too: Shift+Enter is a newline and
    runs no cell, no key reaches command mode, and Copy / Insert as cell work (issue 22)."""
    api.reset()
    api.api_key = KEY
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    name = classic.notebook("front7.ipynb", PANEL_CELL, "x = 1")
    page.evaluate("() => { window.onbeforeunload = null; }")  # leave an earlier test's notebook unasked
    page.goto(f"{classic.url}/notebooks/{name}?token={classic.token}")
    cell(page, 0).wait_for(timeout=60_000)
    classic.wait_for_kernel(name)
    page.locator("#kernel_indicator_icon.kernel_idle_icon").wait_for(timeout=30_000)
    run_cell(page, 0)
    panel = cell(page, 0).locator(".output_area .oxen-panel")
    box = panel.locator(MESSAGE_BOX)
    expect(box).to_be_visible(timeout=30_000)
    box.click()
    page.keyboard.type("first line", delay=10)
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("d d a b", delay=10)  # command mode would delete a cell and add two
    expect(box).to_have_value("first line\nd d a b")
    expect(page.locator("#notebook-container .cell")).to_have_count(2)
    api.enqueue(Script(chunks=["Here:\n\n```python\n", *[line + "\n" for line in CODE.split("\n")], "```\n"]))
    page.keyboard.press("Enter")
    transcript = panel.locator(".oxen-transcript")
    expect(transcript.locator(".oxen-code-actions button", has_text="Copy")).to_be_visible(timeout=TIMEOUT)
    assert api.chat_requests()[-1]["messages"][-1]["content"] == "first line\nd d a b"
    transcript.locator(".oxen-code-actions button", has_text="Copy").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == CODE
    transcript.locator(".oxen-code-actions button", has_text="Insert as cell").click()
    expect(page.locator("#notebook-container .cell")).to_have_count(3)
    assert cell(page, 1).locator(".CodeMirror").evaluate("e => e.CodeMirror.getValue()") == CODE
    page.screenshot(path=str(tmp_path / "front-classic.png"), full_page=True)


# -- no browser: the panel's widget tree under a real ipywidgets 7.8 import ---------------------

TREE_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("error")  # a deprecated ipywidgets keyword fails here too
    import ipywidgets
    from oxen_notebook import ChatPanel, Session

    session = Session(model="test-model")
    panel = ChatPanel(session)
    kinds = []
    stack = [panel.widget]
    while stack:
        widget = stack.pop()
        kinds.append(type(widget).__name__)
        stack.extend(getattr(widget, "children", ()))
    panel.send("draw this")
    assert panel.wait(20)
    last = panel._transcript.messages.items[-1]
    shown = [w.value for w in last.children[1].children[0].children]
    tooltip = panel._max_tokens.description_tooltip
    bundle = {"has_repr_mimebundle": hasattr(panel, "_repr_mimebundle_"),
              "has_ipython_display": hasattr(panel, "_ipython_display_")}
    panel.close()
    print(json.dumps({"version": ipywidgets.__version__, "kinds": sorted(set(kinds)), "shown": shown,
                      "tooltip": tooltip, "status": panel._status.value, **bundle}))
    """
)


@pytest.mark.kernel
def test_the_panel_builds_and_draws_a_reply_under_ipywidgets7(fake_api: FakeAPI, tmp_path: Path) -> None:
    python = widgets7_python()
    env = checkout_env(fake_api.base_url, "test-key", str(tmp_path))
    run = subprocess.run(
        [str(python), "-c", TREE_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["version"].startswith("7.")
    assert {"VBox", "HBox", "Box", "HTML", "Combobox", "FloatSlider", "BoundedIntText", "Button"} <= set(
        result["kinds"]
    )
    assert result["tooltip"] == "0: the model's default"
    assert result["has_ipython_display"] and not result["has_repr_mimebundle"]
    assert result["shown"] == ["<p>Echo: draw this</p>\n"]
    assert fake_api.chat_requests()[-1]["messages"][-1]["content"] == "draw this"
