r"""Math in replies, typeset by the frontend's own MathJax in a real browser: JupyterLab 4 and
Notebook 7 (MathJax 3) on one server, classic Notebook 6.5 (MathJax 2) from ``.venv-widgets7/``.

One reply with each delimiter, the Markdown escapes that used to be eaten, prices, code and the XSS
cases streams through the real ``%%oxen`` magic from the loopback fake API; the same text is shown
as a ``Reply`` (``_repr_html_``) and in an ``ipywidgets.HTMLMath``. Checked: each piece of math is
typeset (MathJax 3's ``mjx-container`` with assistive MathML, MathJax 2's ``math/tex`` scripts) from
exactly the reply's LaTeX, nothing else is, no ``javascript:`` link exists, no dialog opens, and
every request the page makes goes to the loopback Jupyter server.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from oxen_notebook._render import render_markdown
from tests.fake_api import FakeAPI, Script
from tests.helpers import ClassicNotebook, Jupyter

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
KEY = "math-browser-key"
TIMEOUT = 30_000

REPLY = (
    "Math in a reply.\n\n"
    "Inline $a_1 * b_2$, \\(\\|x\\|\\) and $\\{a\\}$; in a paragraph \\[x^2\\] too.\n\n"
    "$$\n\\frac{\\{a\\}}{b} = \\sum_{i=1}^{n} x_i\n$$\n\n"
    "\\[\na \\\\\nb\n\\]\n\n"
    "Prices: it costs $5 and $10. Code: `$HOME`.\n\n"
    "```\n$$ not math $$\n```\n\n"
    "Refused: $\\href{javascript:window.__xss=1;alert(1)}{click}$, $\\unicode{x41}$, "
    "$\\style{color:red}{s}$, \\(\\class{evil}{c}\\). Raw HTML: $<img src=x onerror=alert(2)>$. "
    "Text: \\begin{equation}\\href{javascript:alert(3)}{z}\\end{equation} \\ref{q}.\n"
)
# The math of REPLY as written, in order: what each typeset element must come from.
TYPESET = [
    ("inline", "a_1 * b_2"),
    ("inline", "\\|x\\|"),
    ("inline", "\\{a\\}"),
    ("display", "x^2"),
    ("display", "\\frac{\\{a\\}}{b} = \\sum_{i=1}^{n} x_i"),
    ("display", "a \\\\\nb"),
    ("inline", "<img src=x onerror=alert(2)>"),
]
REFUSED = [
    "$\\href{javascript:window.__xss=1;alert(1)}{click}$",
    "$\\unicode{x41}$",
    "$\\style{color:red}{s}$",
    "\\(\\class{evil}{c}\\)",
]
TEXT = [
    "it costs $5 and $10.",
    "$HOME",
    "$$ not math $$",
    "\\begin{equation}\\href{javascript:alert(3)}{z}\\end{equation} \\ref{q}.",
]
CELLS = [
    "%load_ext oxen_notebook",
    "%%oxen\nShow me some math",
    "import oxen_notebook\noxen_notebook.default_session().ask('Again, as a Reply')",
    f"import ipywidgets\nfrom oxen_notebook._render import render_markdown\n"
    f"ipywidgets.HTMLMath(render_markdown({REPLY!r}))",
]
# Each output's typeset math, as "\(latex\)" / "\[latex\]": MathJax 3 replaces the text node that
# held it with its mjx-container (recorded by this observer); MathJax 2 keeps it in a script.
RECORD_SOURCES = """
new MutationObserver(records => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeName === 'MJX-CONTAINER') {
        node.setAttribute('data-source', [...record.removedNodes].map(n => n.textContent).join(''));
      }
    }
  }
}).observe(document, {childList: true, subtree: true});
"""
SOURCES_MATHJAX3 = """els => els.map(e => [e.getAttribute('data-source'),
    e.querySelector('mjx-assistive-mml > math') ? e.querySelector('mjx-assistive-mml > math').outerHTML : ''])"""
SOURCES_MATHJAX2 = """els => els.map(e => [(e.type.includes('mode=display') ? '\\\\[' : '\\\\(') + e.textContent
    + (e.type.includes('mode=display') ? '\\\\]' : '\\\\)'), ''])"""


def expected_sources() -> list[str]:
    return [f"\\({latex}\\)" if mode == "inline" else f"\\[{latex}\\]" for mode, latex in TYPESET]


def test_the_reply_renders_the_math_the_browser_test_expects() -> None:
    """The premise of the browser checks, without a browser."""
    out = render_markdown(REPLY)
    for source in expected_sources():
        escaped = source.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in out
    for source in REFUSED:
        assert f"<code>{source}</code>" in out


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page with every dialog and every request it makes recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 1400})
        self.context.add_init_script(RECORD_SOURCES)
        self.page: Page = self.context.new_page()
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def close(self) -> None:
        self.context.close()


def enqueue_replies(api: FakeAPI) -> None:
    api.reset()
    api.api_key = KEY
    chunks = [REPLY[i : i + 11] for i in range(0, len(REPLY), 11)]
    # Streamed in pieces: open $$ and \[ blocks pass through the live tail before they close.
    api.enqueue(Script(chunks=chunks, delay=0.01), Script(text=REPLY))


def check_page(watched: Watched, outputs: list[Any], source_of: str, selector: str, server_url: str) -> None:
    page = watched.page
    for index, output in enumerate(outputs):
        expect(output.locator(selector)).to_have_count(len(TYPESET), timeout=TIMEOUT)
        found = output.locator(selector).evaluate_all(source_of)
        assert [source for source, _ in found] == expected_sources(), f"output {index}"
        for (_, mathml), (mode, _) in zip(found, TYPESET, strict=True):
            if selector == "mjx-container":  # MathJax 3: assistive MathML for each
                assert mathml.startswith("<math") and ('display="block"' in mathml) == (mode == "display")
        text = output.inner_text()
        for shown in REFUSED + TEXT:
            assert shown in text, (index, shown)
        assert output.locator("code", has_text="\\href{javascript:").count() == 1
    if selector == "mjx-container":
        mathml = outputs[0].locator("mjx-assistive-mml").all_text_contents()
        assert mathml[1] == "\u2225x\u2225" and mathml[2] == "{a}", mathml
    time.sleep(0.5)  # time for any handler to fire
    assert watched.dialogs == []
    assert page.evaluate("() => window.__xss") is None
    links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    assert not [href for href in links if href.strip().lower().startswith("javascript:")]
    assert page.locator("img[onerror], [onerror]").count() == 0
    outside = [
        url for url in watched.requests if not url.startswith((server_url, "data:", "blob:", "about:"))
    ]
    assert outside == []


def lab_outputs(page: Page) -> list[Any]:
    cells = page.locator(".jp-Notebook .jp-Cell")
    return [cells.nth(1).locator(".jp-OutputArea"), cells.nth(2).locator(".jp-OutputArea"),
            cells.nth(3).locator(".widget-htmlmath")]  # fmt: skip


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_math_is_typeset_in_jupyterlab_and_notebook7(
    browser: Any, api: FakeAPI, tmp_path_factory: pytest.TempPathFactory, ui: str
) -> None:
    jupyter = Jupyter(tmp_path_factory.mktemp(f"math-{ui}"), api.base_url, KEY)
    watched = Watched(browser)
    try:
        enqueue_replies(api)
        name = jupyter.notebook(f"math-{ui}.ipynb", *CELLS)
        page = watched.page
        prefix = f"/lab/workspaces/math-{ui}/tree" if ui == "lab" else "/notebooks"
        page.goto(f"{jupyter.url}{prefix}/{name}?token={jupyter.token}")
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.first.wait_for(timeout=60_000)
        jupyter.wait_for_kernel(name)
        if ui == "lab":
            expect(page.locator(".jp-KernelName").first).not_to_have_text("No Kernel", timeout=TIMEOUT)
        for index in range(len(CELLS)):
            cells.nth(index).locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
            expect(cells.nth(index).locator(".jp-InputArea-prompt")).to_have_text(
                f"[{index + 1}]:", timeout=TIMEOUT
            )
        check_page(watched, lab_outputs(page), SOURCES_MATHJAX3, "mjx-container", jupyter.url)
        page.screenshot(path=str(tmp_path_factory.getbasetemp() / f"math-{ui}.png"), full_page=True)
        assert len(api.chat_requests()) == 2
    finally:
        watched.close()
        jupyter.stop()


def test_math_is_typeset_in_classic_notebook(
    browser: Any, api: FakeAPI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    classic = ClassicNotebook(tmp_path_factory.mktemp("math-classic"), api.base_url, KEY)
    watched = Watched(browser)
    try:
        enqueue_replies(api)
        name = classic.notebook("math-classic.ipynb", *CELLS)
        page = watched.page
        page.goto(f"{classic.url}/notebooks/{name}?token={classic.token}")
        cells = page.locator("#notebook-container .cell")
        cells.first.wait_for(timeout=60_000)
        classic.wait_for_kernel(name)
        page.locator("#kernel_indicator_icon.kernel_idle_icon").wait_for(timeout=TIMEOUT)
        for index in range(len(CELLS)):
            cells.nth(index).locator(".CodeMirror").click()
            page.keyboard.press("Control+Enter")
            expect(cells.nth(index).locator(".input_prompt")).to_contain_text(
                f"[{index + 1}]", timeout=TIMEOUT
            )
        outputs = [cells.nth(1).locator(".output"), cells.nth(2).locator(".output"),
                   cells.nth(3).locator(".widget-htmlmath")]  # fmt: skip
        check_page(watched, outputs, SOURCES_MATHJAX2, "script[type^='math/tex']", classic.url)
        for output in outputs:  # typeset, not only found: MathJax 2's output next to each script
            expect(output.locator(".MathJax, .MathJax_CHTML, .MathJax_Display")).not_to_have_count(0)
        page.screenshot(path=str(tmp_path_factory.getbasetemp() / "math-classic.png"), full_page=True)
    finally:
        watched.close()
        classic.stop()
