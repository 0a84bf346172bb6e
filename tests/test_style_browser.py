"""The stylesheet in a real JupyterLab 4 page (Chromium): code colours measured per token kind in
the light and the dark theme, ``compare``'s columns before its slowest variant ends and stacked
when narrow, and a failed cell's error shown once, as a callout."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oxen_notebook._style import TOKEN_KINDS
from tests.fake_api import FakeAPI, Script
from tests.helpers import Jupyter
from tests.test_math_browser import browser  # noqa: F401 (the fixture: Chromium as every browser test starts it)
from tests.test_style import contrast

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

KEY = "style-browser-key"
TIMEOUT = 30_000
#: A reply with every token kind the stylesheet colours (tests/test_style.py checks the palettes).
REPLY = """Here is the code:

```python
@dataclass
class Point(Base):
    \"\"\"A point.\"\"\"
    def norm(self, x=1.5):
        return abs(x) + len("s")  # the length
```

```html
<div class="box">hi</div>
```

```diff
--- a/f.py
+++ b/f.py
@@ -1 +1 @@
-old = 1
+new = 2
```

| name | value |
|------|-------|
| `x`  | 1     |
"""
SLOW = 4.0  # seconds cheap-model takes in compare

CELLS = [
    "%load_ext oxen_notebook",
    "%%oxen\nShow me code.",
    "%%oxen -m gpt-6\nhi",
    "%%oxen --compare test-model,cheap-model\nhi",
]

MEASURE = """(cell) => [...cell.querySelectorAll('.oxen-code span[class^="ox-"]')].map(span => {
  const block = span.closest('.oxen-code');
  return {kind: span.className, color: getComputedStyle(span).color,
          background: getComputedStyle(block).backgroundColor};
})"""


def answer(body: dict[str, Any]) -> Script:
    if body.get("model") == "cheap-model":
        return Script(text="from the slow one", latency=SLOW)
    if body.get("model") == "test-model":
        return Script(text="from the fast one")
    return Script(text=REPLY)


def rgb(css: str) -> str:
    """``rgb(r, g, b)`` (opaque) as ``#rrggbb``."""
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    assert len(values) == 3 or values[3] == 1, f"not opaque: {css}"
    return "#" + "".join(f"{round(v):02x}" for v in values[:3])


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        server.handler = answer
        yield server


@pytest.fixture(scope="module")
def jupyter(api: FakeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Jupyter, Path]]:
    base = tmp_path_factory.mktemp("style-browser")
    server = Jupyter(base, api.base_url, KEY)
    yield server, base / "lab-settings"
    server.stop()


def open_and_run(browser: Any, jupyter: Jupyter, name: str, cells: list[str], width: int = 1400) -> Any:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 2000})
    page = context.new_page()
    jupyter.notebook(name, *cells)
    page.goto(f"{jupyter.url}/lab/workspaces/{name[:-6]}/tree/{name}?token={jupyter.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    jupyter.wait_for_kernel(name)
    expect(page.locator(".jp-KernelName").first).not_to_have_text("No Kernel", timeout=TIMEOUT)
    return page


def run_cell(page: Any, index: int, *, wait: bool = True) -> Any:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    if wait:
        expect(cell.locator(".jp-InputArea-prompt")).not_to_have_text(
            re.compile(r"\[[ *]?\]"), timeout=TIMEOUT
        )
    return cell


@pytest.mark.parametrize(("theme", "light"), [("JupyterLab Light", "true"), ("JupyterLab Dark", "false")])
def test_every_token_kind_reads_in_the_lab_theme(browser, jupyter, theme, light):  # noqa: F811
    server, settings = jupyter
    themes = settings / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    themes.write_text(json.dumps({"theme": theme}))
    page = open_and_run(browser, server, f"code-{light}.ipynb", CELLS[:2])
    try:
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", light, timeout=TIMEOUT)
        run_cell(page, 0)
        cell = run_cell(page, 1)
        expect(cell.locator(".oxen-code")).to_have_count(3, timeout=TIMEOUT)
        expect(cell.locator(".oxen-code-lang").first).to_have_text("python")
        spans = page.evaluate(MEASURE, cell.element_handle())
        ratios: dict[str, float] = {}
        for span in spans:
            kind = span["kind"].removeprefix("ox-")
            ratio = contrast(rgb(span["color"]), rgb(span["background"]))
            ratios[kind] = min(ratios.get(kind, 99.0), ratio)
        assert set(ratios) == set(TOKEN_KINDS.values())
        assert min(ratios.values()) >= 4.5, {k: round(r, 2) for k, r in ratios.items()}
        backgrounds = {rgb(span["background"]) for span in spans}
        # The code background is the theme's cell editor background.
        assert backgrounds == ({"#f5f5f5"} if light == "true" else {"#212121"}), backgrounds
        # The stylesheet's own output takes no room.
        assert cell.locator(".jp-OutputArea-child:has(style.oxen-style)").first.is_hidden()
        # The code is there exactly, for a Copy button to take.
        code = cell.locator(".oxen-code code").first.text_content()
        assert code == re.search(r"```python\n(.*?)```", REPLY, re.S).group(1)
        header = cell.locator("table thead").first
        assert header.evaluate("e => getComputedStyle(e).borderBottomStyle") == "solid"
    finally:
        page.context.close()
        themes.unlink()


def test_compare_columns_show_first_and_stack_when_narrow_and_an_error_shows_once(browser, jupyter):  # noqa: F811
    server, _ = jupyter
    page = open_and_run(browser, server, "compare.ipynb", [CELLS[0], CELLS[2], CELLS[3]])
    try:
        run_cell(page, 0)
        failed = run_cell(page, 1)
        callout = failed.locator(".oxen-callout")
        expect(callout).to_contain_text("404 model 'gpt-6' not found")
        expect(callout).to_contain_text("Run %oxen models")
        visible = failed.locator(".jp-OutputArea-child:visible")
        expect(visible).to_have_count(1)  # the error line under the callout is hidden
        assert failed.locator(".jp-OutputArea").inner_text().count("not found") == 1
        lines = callout.evaluate("e => Math.round(e.getBoundingClientRect().height)")
        assert lines < 80  # one sentence and one action: a line or two, not a column of broken words
        wrap = callout.evaluate("e => [getComputedStyle(e).overflowWrap, getComputedStyle(e).wordBreak]")
        assert wrap == ["normal", "normal"]  # breaks at spaces, never mid-word

        compare = run_cell(page, 2, wait=False)
        table = compare.locator("table.oxen-compare")
        expect(table).to_be_visible(timeout=TIMEOUT)
        # The fast variant's column is filled while the slow one still spins.
        expect(table.locator("td").first).to_have_text("from the fast one", timeout=TIMEOUT)
        expect(table.locator(".oxen-spinner")).to_have_count(1)
        expect(table.locator(".oxen-spinner")).to_have_count(0, timeout=SLOW * 1000 + TIMEOUT)
        expect(table).to_contain_text("from the slow one")
        expect(table.locator(".oxen-badge")).to_contain_text(["fastest"])
        heads = table.locator("thead th")
        wide = [heads.nth(i).bounding_box() for i in (1, 2)]
        assert wide[0]["y"] == wide[1]["y"] and wide[0]["x"] < wide[1]["x"]  # side by side
        page.set_viewport_size({"width": 600, "height": 2000})
        narrow = [heads.nth(i).bounding_box() for i in (1, 2)]
        assert narrow[1]["y"] > narrow[0]["y"] + 20  # stacked
        right = table.evaluate("e => e.getBoundingClientRect().right")
        assert right <= 600 and all(box["x"] + box["width"] <= 600 for box in narrow)
    finally:
        page.context.close()


PANEL = (
    "from oxen_notebook import ChatPanel\n"
    "panel = ChatPanel()\nassert panel.send('show me') and panel.wait(20)\npanel"
)

PANEL_STYLES = """(root) => {
  const msg = [...root.querySelectorAll('.oxen-msg')].pop();
  const style = (sel, prop) => getComputedStyle(msg.querySelector(sel))[prop];
  const code = msg.querySelector('.oxen-code');
  return {rule: style('table thead', 'borderBottomStyle'), pad: parseFloat(style('th', 'paddingLeft')),
          inline: style(':not(pre) > code', 'backgroundColor'),
          codeWidth: code.getBoundingClientRect().width,
          msgWidth: code.parentElement.getBoundingClientRect().width};
}"""


def test_the_panel_styles_model_markdown_like_the_magic(browser, jupyter):  # noqa: F811
    server, _ = jupyter
    page = open_and_run(browser, server, "panel.ipynb", [CELLS[0], PANEL])
    try:
        run_cell(page, 0)
        cell = run_cell(page, 1)
        expect(cell.locator(".oxen-msg .oxen-code")).to_have_count(3, timeout=TIMEOUT)
        found = page.evaluate(PANEL_STYLES, cell.element_handle())
        assert found["rule"] == "solid" and found["pad"] >= 6, found  # a header rule, padded cells
        assert found["inline"] not in ("rgba(0, 0, 0, 0)", "transparent"), (
            found
        )  # inline code has a background
        assert found["codeWidth"] >= 0.95 * found["msgWidth"], found  # full width, not its content's
        spans = page.evaluate(MEASURE, cell.element_handle())
        worst = min(contrast(rgb(s["color"]), rgb(s["background"])) for s in spans)
        assert worst >= 4.5 and len({s["kind"] for s in spans}) == len(set(TOKEN_KINDS.values()))
    finally:
        page.context.close()


@pytest.mark.parametrize(
    ("html_attrs", "body_attrs", "dark"),
    [
        ("", "", False),  # no signal: the light palette on our light background
        ("", 'class="vscode-dark"', True),  # VS Code's dark themes
        ("", 'class="vscode-high-contrast"', True),
        ("", 'class="vscode-high-contrast vscode-high-contrast-light"', False),
        ('theme="dark"', "", True),  # Colab
    ],
)
def test_the_other_frontends_dark_signals(browser, html_attrs, body_attrs, dark):  # noqa: F811
    from oxen_notebook._render import render_markdown
    from oxen_notebook._style import DARK, LIGHT, style_tag

    page = browser.new_page()
    try:
        page.set_content(
            f"<html {html_attrs}><body {body_attrs}>{style_tag()}{render_markdown(REPLY)}</body></html>"
        )
        spans = page.evaluate(MEASURE, page.locator("body").element_handle())
        palette = DARK if dark else LIGHT
        assert {rgb(s["background"]) for s in spans} == {"#1e1e1e" if dark else "#f6f8fa"}
        for span in spans:
            assert rgb(span["color"]) == palette[span["kind"].removeprefix("ox-")]
        assert min(contrast(rgb(s["color"]), rgb(s["background"])) for s in spans) >= 4.5
    finally:
        page.close()
