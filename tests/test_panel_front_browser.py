"""The chat panel's own front-end (``_panel/front.js``, an anywidget) in Chromium: JupyterLab 4 light
and dark and Notebook 7 (classic Notebook + ipywidgets 7.8: tests/test_panel_widgets7.py).

Issue 22's items: a multi-line box (a pasted traceback keeps its lines; Shift+Enter is a newline,
not a cell run), Copy and Insert as cell on code blocks (in the panel and under a ``%%oxen``
reply), one Send/Stop button whose note clears with the state, an error shown once with Retry,
and no control clipped at 600 px.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script
from tests.helpers import Jupyter
from tests.test_panel_browser import (
    PANEL_CELL,
    STREAMING_TIMEOUT,
    Shots,
    api,  # noqa: F401 - fixtures
    browser,  # noqa: F401
    jupyter,  # noqa: F401
    notebook_of,
    open_notebook,
    open_panel,
    run_cell,
    transcript,
    wait_for_requests,
)

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser]

BOX = ".oxen-panel textarea.oxen-box"
ACTION = ".oxen-panel button.oxen-action"
TRACEBACK = """Traceback (most recent call last):
  File "run.py", line 3, in <module>
    main()
ZeroDivisionError: division by zero"""
CODE = "import pandas as pd\nframe = pd.read_csv('data.csv')\nprint(frame['a'].sum() / 2)"
CODE_REPLY = [
    "Read the file with **pandas**, then sum a column:\n\n",
    "```python\n",
    *[line + "\n" for line in CODE.split("\n")],
    "```\n",
    "Done.",
]


@pytest.fixture
def page(browser: Any, api: FakeAPI) -> Any:  # noqa: F811
    api.reset()
    api.api_key = "browser-test-key"
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    yield page
    context.close()


def set_theme(page: Page, theme: str) -> None:
    """JupyterLab's theme, through the command palette (the server keeps it for the next test)."""
    light = "true" if theme == "light" else "false"
    if page.evaluate("() => document.body.dataset.jpThemeLight") == light:
        return
    page.keyboard.press("Control+Shift+c")
    page.locator(".lm-CommandPalette-input").fill(f"Use Theme: JupyterLab {theme.title()}")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'", timeout=20_000)


def front_panel(page: Page, jupyter: Jupyter, name: str, ui: str = "lab", theme: str = "light") -> Any:  # noqa: F811
    open_notebook(page, jupyter, name, ui=ui)
    set_theme(page, theme)
    panel = open_panel(page)
    expect(page.locator(BOX)).to_be_visible(timeout=30_000)  # the front-end said ready
    return panel


def cell_sources(page: Page) -> list[str]:
    return page.locator(".jp-Notebook .jp-Cell .cm-content").evaluate_all(
        "nodes => nodes.map(n => Array.from(n.querySelectorAll('.cm-line')).map(l => l.textContent).join('\\n'))"
    )


@pytest.mark.parametrize(("ui", "theme"), [("lab", "light"), ("lab", "dark"), ("notebook", "light")])
def test_the_box_keeps_lines_and_keys_stay_out_of_the_notebook(
    page: Page,
    jupyter: Jupyter,  # noqa: F811
    api: FakeAPI,  # noqa: F811
    tmp_path: Path,
    ui: str,
    theme: str,
) -> None:
    cells = [("code", PANEL_CELL), ("markdown", "## Notes"), ("code", "ran = 'no'")]
    name = notebook_of(jupyter, f"front-box-{ui}-{theme}.ipynb", *cells)
    shot = Shots(page, tmp_path)
    panel = front_panel(page, jupyter, name, ui, theme)
    expect(panel.locator(".oxen-empty")).to_be_visible()  # the empty-state hint
    box = page.locator(BOX)
    # A pasted traceback keeps its 4 lines and goes whole on Enter.
    box.click()
    page.evaluate(
        """text => { const data = new DataTransfer(); data.setData('text/plain', text);
        document.querySelector('.oxen-panel textarea.oxen-box').dispatchEvent(
          new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true})); }""",
        TRACEBACK,
    )
    if box.input_value() == "":  # Chromium does not insert a synthetic paste: insert as a paste does
        page.keyboard.insert_text(TRACEBACK)
    expect(box).to_have_value(TRACEBACK)
    one_line = box.bounding_box()
    # Shift+Enter adds a line, does not run the cell, and no key reaches command mode.
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("d d m", delay=10)
    expect(box).to_have_value(TRACEBACK + "\nd d m")
    grown = box.bounding_box()
    assert one_line and grown and grown["height"] > 60  # the box grew with its lines
    page.keyboard.press("Enter")
    assert wait_for_requests(api, 1) == [TRACEBACK + "\nd d m"]
    expect(transcript(page)).to_contain_text("ZeroDivisionError", timeout=STREAMING_TIMEOUT)
    expect(box).to_have_value("")
    assert len(page.locator(".jp-Notebook .jp-Cell").all()) == 3
    expect(page.locator(".jp-Notebook .jp-Cell").nth(1)).to_have_class(re.compile("jp-MarkdownCell"))
    expect(page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-InputArea-prompt")).to_have_text("[ ]:")
    expect(panel.locator(".oxen-empty")).to_be_hidden()
    shot(f"multiline-{ui}-{theme}")

    # One button: Send turns into Stop while a reply streams; Enter then refuses by the box, and
    # the note goes when the reply ends.
    api.enqueue(Script(chunks=[f"tick{i} " for i in range(60)], delay=0.04))
    box.click()
    page.keyboard.type("count slowly", delay=10)
    page.keyboard.press("Enter")
    action = page.locator(ACTION)
    expect(action).to_have_text("Stop", timeout=STREAMING_TIMEOUT)
    expect(page.locator(".oxen-panel button:visible", has_text=re.compile("^\\s*Send"))).to_have_count(0)
    page.keyboard.type("next one", delay=10)
    page.keyboard.press("Enter")
    note = page.locator(".oxen-panel .oxen-box-note")
    expect(note).to_contain_text("A reply is streaming")
    expect(box).to_have_value("next one")
    shot(f"streaming-{ui}-{theme}")
    expect(action).to_have_text("Send", timeout=STREAMING_TIMEOUT)
    expect(note).to_be_hidden()
    box.press("Enter")
    assert wait_for_requests(api, 3)[-1] == "next one"
    expect(transcript(page)).to_contain_text("Echo: next one", timeout=STREAMING_TIMEOUT)


def clipboard(page: Page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


@pytest.mark.parametrize(("ui", "theme"), [("lab", "light"), ("lab", "dark"), ("notebook", "light")])
def test_copy_and_insert_as_cell_in_the_panel_and_under_a_magic_reply(
    page: Page,
    jupyter: Jupyter,  # noqa: F811
    api: FakeAPI,  # noqa: F811
    tmp_path: Path,
    ui: str,
    theme: str,
) -> None:
    cells = [("code", PANEL_CELL), ("code", "%load_ext oxen_notebook"), ("code", "%%oxen\nwrite the code")]
    name = notebook_of(jupyter, f"front-code-{ui}-{theme}.ipynb", *cells)
    shot = Shots(page, tmp_path)
    panel = front_panel(page, jupyter, name, ui, theme)
    api.enqueue(Script(chunks=CODE_REPLY, delay=0.02))
    box = page.locator(BOX)
    box.click()
    page.keyboard.type("code please", delay=10)
    page.keyboard.press("Enter")
    expect(transcript(page)).to_contain_text("Done.", timeout=STREAMING_TIMEOUT)
    tools = panel.locator(".oxen-code-tools")
    expect(tools).to_have_count(1)
    page.mouse.move(0, 0)
    panel.screenshot(path=str(tmp_path / f"panel-{theme}.png"))  # the README's docs/panel*.png
    tools.get_by_role("button", name="Copy").click()
    expect(tools.get_by_role("button", name="Copied")).to_be_visible()
    assert clipboard(page) == CODE
    tools.get_by_role("button", name="Insert as cell").click()
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(4)
    assert cell_sources(page)[1] == CODE  # right below the panel's cell
    # Copy on a message, Regenerate on the last reply.
    last = transcript(page).locator(".oxen-msg.oxen-assistant").last
    expect(last.locator(".oxen-msg-tools button", has_text="Regenerate")).to_have_count(1)
    last.locator(".oxen-msg-tools button", has_text="Copy").click()
    copied = clipboard(page)
    assert "Read the file with pandas, then sum a column:" in copied and CODE in copied and "Done." in copied
    assert "Insert as cell" not in copied and "assistant" not in copied and "tokens" not in copied
    shot(f"panel-code-{ui}")

    # Under a %%oxen reply: the same buttons, from a hidden widget in the cell's output.
    api.enqueue(Script(chunks=CODE_REPLY, delay=0.01))
    run_cell(page, 2)
    run_cell(page, 3)
    output = page.locator(".jp-Notebook .jp-Cell").nth(3).locator(".jp-OutputArea")
    expect(output).to_contain_text("Done.", timeout=STREAMING_TIMEOUT)
    magic_tools = output.locator(".oxen-code-tools")
    expect(magic_tools).to_have_count(1, timeout=STREAMING_TIMEOUT)
    page.evaluate("() => navigator.clipboard.writeText('')")
    magic_tools.get_by_role("button", name="Copy").click()
    expect(magic_tools.get_by_role("button", name="Copied")).to_be_visible()
    assert clipboard(page) == CODE
    magic_tools.get_by_role("button", name="Insert as cell").click()
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(5)
    assert cell_sources(page)[4] == CODE  # right below the magic's cell
    shot(f"magic-code-{ui}")


def test_an_error_is_one_callout_with_retry_and_the_model_box_checks_ids(
    page: Page,
    jupyter: Jupyter,  # noqa: F811
    api: FakeAPI,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = jupyter.notebook("front-error.ipynb", PANEL_CELL)
    panel = front_panel(page, jupyter, name)
    model = panel.locator("input[list]").first
    model.fill("gpt-6")
    model.press("Tab")
    note = panel.locator(".oxen-box-note")
    expect(note).to_contain_text("gpt-6 is not in the server's model list")  # allowed, with a note
    page.locator(BOX).click()
    page.keyboard.type("hello", delay=10)
    page.keyboard.press("Enter")
    callout = transcript(page).locator(".oxen-callout")
    expect(callout).to_have_count(1, timeout=STREAMING_TIMEOUT)
    expect(callout).to_contain_text("gpt-6")
    text = callout.inner_text()
    assert "`" not in text and "terminal" not in text and "request id" not in text
    # Shown once: not as an assistant message, not again under the buttons.
    expect(transcript(page).locator(".oxen-assistant")).to_have_count(0)
    assert "not found" not in panel.locator(".oxen-statusline").inner_text()
    Shots(page, tmp_path)("error-callout")
    # Retry sends the message again (here to a model the server has).
    model.fill("test-model")
    model.press("Tab")
    expect(note).to_be_hidden()
    callout.get_by_role("button", name="Retry").click()
    expect(transcript(page)).to_contain_text("Echo: hello", timeout=STREAMING_TIMEOUT)
    expect(transcript(page).locator(".oxen-callout")).to_have_count(0)
    assert [r["model"] for r in api.chat_requests()] == ["gpt-6", "test-model"]


@pytest.mark.parametrize("width", [800, 600])
def test_nothing_is_clipped_in_a_narrow_panel(
    page: Page,
    jupyter: Jupyter,  # noqa: F811
    api: FakeAPI,  # noqa: F811
    tmp_path: Path,
    width: int,
) -> None:
    name = jupyter.notebook(f"front-narrow-{width}.ipynb", PANEL_CELL)
    panel = front_panel(page, jupyter, name)
    api.enqueue(Script(text="A reply to measure.\n\n```python\nprint('x')\n```"))
    page.locator(BOX).click()
    page.keyboard.type("hi", delay=10)
    page.keyboard.press("Enter")
    expect(transcript(page)).to_contain_text("A reply to measure.", timeout=STREAMING_TIMEOUT)
    # The panel's own width set to `width` (the notebook's sidebar and margins vary by UI).
    panel.evaluate(
        "(el, width) => { el.style.width = width + 'px'; el.style.maxWidth = width + 'px'; }", width
    )
    page.wait_for_timeout(300)
    box = panel.bounding_box()
    assert box is not None and abs(box["width"] - width) < 2
    controls = panel.locator(
        "button:visible, input:visible, textarea:visible, .widget-slider:visible, .widget-readout:visible,"
        " .widget-label:visible"
    )
    clipped = []
    for i in range(controls.count()):
        control = controls.nth(i)
        rect = control.bounding_box()
        if rect is None or rect["width"] == 0:
            continue
        if rect["x"] < box["x"] - 1 or rect["x"] + rect["width"] > box["x"] + box["width"] + 1:
            clipped.append((control.evaluate("e => e.outerHTML.slice(0, 80)"), rect, box))
        # Text cut inside its own control (a button's label) counts too.
        if control.evaluate("e => e.tagName === 'BUTTON' && e.scrollWidth > e.clientWidth + 1"):
            clipped.append((control.inner_text(), "label cut"))
    assert clipped == []
    slider = panel.locator(
        ".widget-slider .slider-container, .widget-slider .noUi-target"
    ).first.bounding_box()
    assert slider is not None and slider["width"] >= 100  # the slider keeps a usable width
    Shots(page, tmp_path)(f"narrow-{width}")


def test_without_the_front_end_the_panel_keeps_ipywidgets_controls_and_says_so(
    page: Page,
    jupyter: Jupyter,  # noqa: F811
    api: FakeAPI,  # noqa: F811
) -> None:
    page.route("**/extensions/anywidget/**", lambda route: route.abort())  # the module cannot load
    name = jupyter.notebook("front-missing.ipynb", PANEL_CELL)
    open_notebook(page, jupyter, name)
    set_theme(page, "light")
    panel = open_panel(page)
    expect(panel).to_contain_text("Plain controls: the panel's front-end did not load")
    expect(page.locator(BOX)).to_have_count(0)
    box = panel.locator("input[placeholder^='Message']")
    box.click()
    page.keyboard.type("still works", delay=10)
    page.keyboard.press("Enter")
    assert wait_for_requests(api, 1) == ["still works"]
    expect(transcript(page)).to_contain_text("Echo: still works", timeout=STREAMING_TIMEOUT)
