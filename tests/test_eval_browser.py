# ruff: noqa: F811  (the api, browser, jupyter and page fixtures are test_panel_browser's, imported)
"""The evaluation's view in a real browser (Debian's Chromium via Playwright): the live per-variant
widget while it runs, then the summary with the best variant marked and the row grid whose cells
open on the reply, in JupyterLab 4, Notebook 7 and classic Notebook 6.5 + ipywidgets 7.8. Model text
with markup and math in it is shown as text: no dialog, no injected element, no link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script, _prompt_text
from tests.helpers import ClassicNotebook, Jupyter
from tests.test_panel_browser import CHROMIUM, KEY, api, browser, jupyter, open_notebook, page, run_cell  # noqa: F401

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium")]
TIMEOUT = 60_000
EVAL_CELL = """\
import pandas as pd
from oxen_notebook import Session, scorers
s = Session(model="test-model")
rows = [f"row {i}" for i in range(6)] + ['<img src=x onerror="alert(1)"> $\\\\href{https://evil.example}{x}$']
data = pd.DataFrame({"text": rows, "want": ["a" if i % 2 == 0 else "b" for i in range(7)]})
ev = s.evaluate(data, {"first": "A {text}", "second": "B {text}"}, target="want", concurrency=2)
ev"""


def answer(body: dict[str, Any]) -> Script:
    """Variant "first" answers a, "second" b, each a moment later (so the live view is seen)."""
    prompt = _prompt_text(body)
    if "<img" in prompt:
        return Script(
            text="**bold** <img src=x onerror=alert(2)> $\\href{https://evil.example}{y}$ a", latency=0.3
        )
    return Script(text="a" if prompt.startswith("A ") else "b", latency=0.3)


def check_view(page: Page, output: Any, live: Any, tmp_path: Path, name: str) -> None:
    """The live widget, then the summary and the grid, checked in ``output``."""
    expect(live).to_contain_text("evaluating ·", timeout=TIMEOUT)
    expect(live).to_contain_text("14/14", timeout=TIMEOUT)
    expect(live).to_contain_text("first: 7 done · 0 errors · exact")
    expect(output).to_contain_text("evaluation · 7 rows × 2 variants", timeout=TIMEOUT)
    table = output.locator(".oxen-eval table").first
    star = [row for row in table.locator("tbody tr").all_inner_texts() if "★" in row]
    assert len(star) == 1 and "first" in star[0], star
    grid = output.locator("details").first
    expect(grid.locator("summary").first).to_have_text("all rows (7)")
    cell = grid.locator("tbody tr").first.locator("td details").first
    expect(cell.locator(".oxen-eval-reply, p").first).to_be_hidden()
    cell.locator("summary").click()
    expect(cell).to_contain_text("A row 0")  # the prompt
    expect(cell).to_contain_text("target: a")
    hostile = grid.locator("tbody tr").nth(6).locator("td details").first
    hostile.locator("summary").click()
    expect(hostile.locator("strong")).to_have_text("bold")
    expect(hostile).to_contain_text("<img src=x onerror=alert(2)>")
    assert output.locator("img").count() == 0 and output.locator("a[href]").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == []  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / f"eval-{name}.png"), full_page=True)


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_the_evaluation_view_in_jupyterlab_and_notebook7(
    page: Page, api: FakeAPI, jupyter: Jupyter, ui: str, tmp_path: Path
) -> None:
    api.handler = answer
    name = jupyter.notebook(f"eval-{ui}.ipynb", EVAL_CELL)
    open_notebook(page, jupyter, name, ui=ui)
    run_cell(page, 0)
    output = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-OutputArea")
    check_view(page, output, output.locator(".widget-html").first, tmp_path, ui)
    prompts = sorted(_prompt_text(b) for b in api.chat_requests())
    assert len(prompts) == 14 and "A row 0" in prompts and "B row 6" not in prompts


def test_the_evaluation_view_in_classic_notebook_with_ipywidgets7(
    page: Page, api: FakeAPI, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    api.handler = answer
    classic = ClassicNotebook(tmp_path_factory.mktemp("eval-classic"), api.base_url, KEY)
    try:
        name = classic.notebook("eval-classic.ipynb", EVAL_CELL)
        page.goto(f"{classic.url}/notebooks/{name}?token={classic.token}")
        cells = page.locator("#notebook-container .cell")
        cells.first.wait_for(timeout=TIMEOUT)
        classic.wait_for_kernel(name)
        page.locator("#kernel_indicator_icon.kernel_idle_icon").wait_for(timeout=TIMEOUT)
        cells.first.locator(".CodeMirror").click()
        page.keyboard.press("Control+Enter")
        output = cells.first.locator(".output")
        check_view(page, output, output.locator(".widget-html").first, tmp_path, "classic")
    finally:
        classic.stop()
