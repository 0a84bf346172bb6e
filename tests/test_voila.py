"""The chat panel served by Voila: a notebook with a ``ChatPanel`` renders, sends, streams and stops.

Voila runs the notebook on loopback, in a temp dir with isolated Jupyter and IPython directories; its
kernel reaches the loopback fake API through the environment (the key is never in the notebook).
Chromium opens the page Voila serves, with no notebook around the widgets, and a person types.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import FakeAPI, Script
from tests.helpers import checkout_env, free_port

pytest.importorskip("voila", reason="the Voila test needs the voila package (the test extra)")
pytest.importorskip("playwright", reason="the browser tests need the playwright package (the test extra)")
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
KEY = "voila-test-key-" + secrets.token_hex(8)
PANEL_CELL = """\
import oxen_notebook
from oxen_notebook import ChatPanel
session = oxen_notebook.default_session(model="test-model")
panel = ChatPanel(session)
panel"""
MESSAGE_BOX = ".oxen-panel textarea.oxen-box"  # the front-end's box: anywidget loads in Voila too
KEY_DELAY = 60  # ms between keys: a person typing
TIMEOUT = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.kernel,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Chromium is not installed (CI installs it with apt-get install -y chromium)",
    ),
]


def _stat(pid: int | str) -> list[str]:
    """``/proc/PID/stat`` after the command's name: state, ppid, ...; empty once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc; empty elsewhere)."""
    return [int(d.name) for d in Path("/proc").glob("[0-9]*") if _stat(d.name)[1:2] == [str(pid)]]


def _running(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])  # a zombie has exited


class Voila:
    """``voila chat.ipynb`` on 127.0.0.1 (no browser, no token, no port retries) in its own process
    group, with every Jupyter, IPython and Oxen directory under ``base``. Its log is ``base / "voila.log"``."""

    def __init__(self, base: Path, base_url: str, api_key: str, *cells: str) -> None:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        self.notebook = base / "chat.ipynb"
        nbformat.write(nb, self.notebook)
        for name in ("config", "runtime", "data", "ipython", "lab-settings", "oxen"):
            (base / name).mkdir()
        env = checkout_env(base_url, api_key, str(base / "oxen"))
        env.update(
            JUPYTER_CONFIG_DIR=str(base / "config"),
            JUPYTER_RUNTIME_DIR=str(base / "runtime"),
            JUPYTER_DATA_DIR=str(base / "data"),
            JUPYTERLAB_SETTINGS_DIR=str(base / "lab-settings"),
            IPYTHONDIR=str(base / "ipython"),
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = base / "voila.log"
        self.log = self.log_path.open("w")
        self.kernels: set[int] = set()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voila", str(self.notebook), "--no-browser", f"--port={self.port}",
             "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--Voila.token="],
            env=env, cwd=base, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_up()
        except BaseException:
            self.stop()
            raise

    def _wait_up(self) -> None:
        # Not "/": every GET of it starts a kernel and runs the notebook.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"voila exited: see {self.log_path}")
            try:
                urllib.request.urlopen(f"{self.url}favicon.ico", timeout=5).close()
                return
            except urllib.error.HTTPError:
                return  # an answer: Voila is listening
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("voila did not start within 60 s")

    def note_kernels(self) -> None:
        """Remember the kernels running now: they are in process groups of their own."""
        self.kernels.update(_children(self.process.pid))

    def stop(self) -> list[int]:
        """SIGTERM to Voila's process group (Voila shuts its kernels down on it), SIGKILL after
        15 s; then kill any kernel that outlived it. Returns the processes that were left over."""
        self.note_kernels()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.log.close()
        left = []
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything still in Voila's group
            left.append(self.process.pid)
        except ProcessLookupError:
            pass
        for pid in self.kernels:
            deadline = time.monotonic() + 5
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # told to shut down, still exiting
            if _running(pid):
                left.append(pid)
                os.killpg(pid, signal.SIGKILL)
        return left


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture(scope="module")
def voila(api: FakeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Voila]:
    server = Voila(tmp_path_factory.mktemp("voila"), api.base_url, KEY, PANEL_CELL)
    yield server
    left = server.stop()
    log = server.log_path.read_text()
    assert left == [], f"processes left over after Voila stopped: {left}"
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, api: FakeAPI, voila: Voila, tmp_path: Path) -> Iterator[Page]:
    """The Voila page with the panel drawn and its kernel ready. ``page.served`` is the HTML Voila sent."""
    api.reset()
    api.api_key = KEY
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    response = page.goto(voila.url, timeout=60_000)
    assert response is not None and response.ok
    page.served = response.text()  # type: ignore[attr-defined]
    panel = page.locator(".oxen-panel").first
    panel.wait_for(timeout=60_000)
    expect(panel.locator(".oxen-statusline")).to_have_text("test-model · ready", timeout=TIMEOUT)
    voila.note_kernels()
    yield page
    page.screenshot(path=str(tmp_path / "voila.png"))
    context.close()


def type_and_enter(page: Page, text: str) -> None:
    box = page.locator(MESSAGE_BOX).first
    box.click()
    page.keyboard.type(text, delay=KEY_DELAY)
    page.keyboard.press("Enter")


def reply_text(page: Page) -> str:
    """The text of the newest reply's paragraphs, without its label line."""
    return "\n".join(page.locator(".oxen-panel .oxen-assistant").last.locator("p").all_inner_texts())


def test_panel_renders_sends_and_streams_in_voila(page: Page, api: FakeAPI) -> None:
    panel = page.locator(".oxen-panel").first
    # Voila's page: the widgets and no notebook around them.
    assert page.locator(".jp-Notebook .jp-InputArea, .jp-Toolbar, .jp-MenuBar").count() == 0
    for name in ("Send", "Clear", "Undo", "Regenerate", "Export"):
        expect(panel.locator("button", has_text=name)).to_be_visible()
    expect(panel.locator("button", has_text="Stop")).to_be_hidden()
    expect(panel.locator(".oxen-transcript")).to_be_visible()

    final = "Streaming through Voila, one word at a time, to the end."
    api.enqueue(Script(chunks=[word + " " for word in final.split()], delay=0.15))
    typed = "Hello from a Voila page"
    type_and_enter(page, typed)
    expect(panel.locator("button", has_text="Stop")).to_be_visible(timeout=TIMEOUT)

    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT / 1000
    while time.monotonic() < deadline:
        text = reply_text(page) if page.locator(".oxen-panel .oxen-assistant").count() else ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if text == final:
            break
        time.sleep(0.02)
    assert seen and seen[-1] == final, seen
    partial = [s for s in seen[:-1] if final.startswith(s)]
    assert partial, f"no state before the final text: {seen}"
    assert len(partial) == len(seen) - 1, seen  # every state on the way was a prefix of the reply

    expect(panel.locator("button", has_text="Stop")).to_be_hidden(timeout=TIMEOUT)
    expect(panel.locator(".oxen-statusline")).to_contain_text("tokens")
    assert panel.locator(".oxen-user p").all_inner_texts() == [typed]
    assert [r["messages"][-1]["content"] for r in api.chat_requests()] == [typed]
    expect(page.locator(MESSAGE_BOX)).to_have_value("")
    assert page.dialogs == []  # type: ignore[attr-defined]
    for html in (page.served, page.content()):  # type: ignore[attr-defined]
        assert KEY not in html and KEY[-16:] not in html


def test_stop_in_voila_keeps_the_partial_reply(page: Page, api: FakeAPI) -> None:
    panel = page.locator(".oxen-panel").first
    stop = panel.locator("button", has_text="Stop")
    api.enqueue(Script(chunks=[f"tick{i} " for i in range(400)], delay=0.05))
    type_and_enter(page, "Count slowly")
    expect(panel.locator(".oxen-transcript")).to_contain_text("tick3", timeout=TIMEOUT)
    time.sleep(0.5)  # well into the reply (20 s long)
    expect(stop).to_be_visible()
    closed_before = api.closed_early
    clicked = time.monotonic()
    stop.click()
    while api.closed_early == closed_before and time.monotonic() - clicked < 5:
        time.sleep(0.01)
    assert api.closed_early == closed_before + 1, "the HTTP stream was not closed"
    expect(panel.locator(".oxen-statusline")).to_contain_text("stopped", timeout=5_000)
    expect(panel.locator(".oxen-assistant .oxen-role").last).to_contain_text("stopped")
    expect(stop).to_be_hidden()
    # The partial reply is shown whole: every tick received, in order, up to the Stop.
    frozen = reply_text(page)
    ticks = frozen.split()
    assert ticks == [f"tick{i}" for i in range(len(ticks))], frozen
    assert 10 <= len(ticks) < 400, frozen
    time.sleep(0.5)
    assert reply_text(page) == frozen  # nothing more arrives

    # The panel takes the next message.
    type_and_enter(page, "again")
    expect(panel.locator(".oxen-transcript")).to_contain_text("Echo: again", timeout=TIMEOUT)
    assert [r["messages"][-1]["content"] for r in api.chat_requests()] == ["Count slowly", "again"]
    for html in (page.served, page.content()):  # type: ignore[attr-defined]
        assert KEY[-16:] not in html
