r"""Model and server text in every HTML surface, shown in a real JupyterLab 4 page with its MathJax.

``$\href{https://…}{…}$`` in a reply is shown as code; here the same text comes back as a model
name, an error, a history row, a ``compare`` error and ``ChatPanel(schema=)``'s parsed table, each
from the loopback API through the real magic and panel in a real kernel. Checked in the page: the
text is there, nothing of it is typeset (no ``mjx-container``), and no link to the address exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script
from tests.helpers import Jupyter
from tests.test_math_browser import browser  # noqa: F401 (the fixture: Chromium as every browser test starts it)

pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

KEY = "surfaces-browser-key"
TIMEOUT = 30_000
# Short enough that pandas' 50-character cells keep it whole.
HOSTILE = r"$\href{https://evil.example/}{click}$ costs $5"
MODEL = r"evil-$\href{https://evil.example/}{click}$"

CELLS = [
    "%load_ext oxen_notebook",
    "%%oxen\nhi",
    "%oxen history",
    "%oxen models",
    "%%oxen --compare test-model,cheap-model\nhi",
    "from pydantic import BaseModel\nfrom oxen_notebook import ChatPanel\n"
    "class Person(BaseModel):\n    name: str\n    age: int\n"
    "panel = ChatPanel(schema=Person)\nassert panel.send('who?') and panel.wait(20)\npanel",
]
#: The surfaces (cell index) and what each must show as text.
SURFACES = {
    1: "a reply (the reference: already vetted)",
    2: "%oxen history",
    3: "%oxen models",
    4: "%%oxen --compare's error",
    5: "ChatPanel(schema=)'s parsed table",
}


def answer(body: dict[str, Any]) -> Script:
    if body.get("model") == "cheap-model":
        return Script(status=400, error={"error": {"type": "invalid_params", "title": HOSTILE}})
    if body.get("response_format"):
        return Script(text=json.dumps({"name": HOSTILE, "age": 1}))
    return Script(text=HOSTILE)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        server.handler = answer
        server.models.append(MODEL)
        yield server


def test_no_surface_lets_the_page_typeset_model_or_server_text(browser, api, tmp_path):  # noqa: F811
    jupyter = Jupyter(tmp_path, api.base_url, KEY)
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    try:
        name = jupyter.notebook("surfaces.ipynb", *CELLS)
        page = context.new_page()
        page.goto(f"{jupyter.url}/lab/workspaces/surfaces/tree/{name}?token={jupyter.token}")
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.first.wait_for(timeout=60_000)
        jupyter.wait_for_kernel(name)
        expect(page.locator(".jp-KernelName").first).not_to_have_text("No Kernel", timeout=TIMEOUT)
        for index in range(len(CELLS)):
            cells.nth(index).locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
            expect(cells.nth(index).locator(".jp-InputArea-prompt")).to_have_text(
                f"[{index + 1}]:", timeout=TIMEOUT
            )
        expect(cells.nth(5).locator(".oxen-parsed")).to_have_count(1, timeout=TIMEOUT)
        time.sleep(1.5)  # MathJax typesets outputs after they are attached
        for index, surface in SURFACES.items():
            output = cells.nth(index).locator(".jp-OutputArea")
            assert "click" in output.inner_text(), surface
            assert output.locator("mjx-container").count() == 0, surface
        links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        assert [href for href in links if "evil.example" in href] == []
    finally:
        context.close()
        jupyter.stop()
