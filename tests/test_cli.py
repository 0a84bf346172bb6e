"""The command line as a user drives it: ``python -m oxen_notebook`` in a subprocess, against the
loopback fake API running in this process (``OXEN_BASE_URL``), with its own empty Oxen config."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import tomllib

from oxen_notebook import Session
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script

# Each test starts the CLI as a process of its own (about a second each): the slow tier.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NO_KEY_NOTE = (
    "oxen-notebook: no Oxen API key found (OXEN_API_KEY, or `oxen config --auth`): using the embedded "
    "local model (SmolLM2-135M-Instruct), offline."
)


@pytest.fixture
def env(fake_api: FakeAPI, tmp_path: Path) -> dict[str, str]:
    """The environment of a user with a key, pointed at the fake API."""
    (tmp_path / "oxen-config").mkdir()
    # Not PYTHONUNBUFFERED either: a user's stdout into a pipe is block-buffered, unless flushed.
    values = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OXEN_") and name != "PYTHONUNBUFFERED"
    }
    values.update(
        OXEN_BASE_URL=fake_api.base_url, OXEN_API_KEY=TEST_KEY, OXEN_CONFIG_DIR=str(tmp_path / "oxen-config")
    )
    return values


def without_key(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "OXEN_API_KEY"}


def cli(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the command to the end; ``stdin`` is what is piped in (empty: a pipe with nothing in it)."""
    return subprocess.run(
        [sys.executable, "-m", "oxen_notebook", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def _default_sigint() -> None:
    # A shell runs background jobs with SIGINT ignored, and children inherit that: the child gets
    # Python's KeyboardInterrupt handler only if SIGINT is at its default when it starts.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Running:
    """A command still running, its stdout read as it comes."""

    def __init__(self, *args: str, env: dict[str, str], stdin: int = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oxen_notebook", *args], stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, bufsize=0, preexec_fn=_default_sigint,
        )  # fmt: skip
        self.out = b""

    def read_until(self, text: str, timeout: float = 30) -> str:
        """Read stdout until it contains ``text``; return what was read so far."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on stdout in {timeout} s; got {self.out!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                assert data, f"stdout closed before {text!r}; got {self.out!r}"
                self.out += data
        return self.out.decode()

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """Wait for the exit; ``(code, all of stdout, stderr)``."""
        rest, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self.out + rest).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.kill()


class Watched(list):
    """Chunks for a Script that count how far the server got: ``started`` is how many it has
    begun sending (it takes chunk k, waits the delay, writes it); ``done`` once all were sent."""

    def __init__(self, items: list[str]) -> None:
        super().__init__(items)
        self.started = 0
        self.done = False

    def __iter__(self) -> Iterator[str]:
        for item in super().__iter__():
            if not self.done:
                self.started += 1
            yield item
        self.done = True


def wait_for(predicate: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- ask: streaming, stdin, Ctrl-C -------------------------------------------------------------------


def test_ask_streams_each_delta_as_it_arrives(fake_api, env, running):
    text = ["Counting: ", "one, ", "two, ", "three, ", "four, ", "five."]
    chunks = Watched(text)
    fake_api.enqueue(Script(chunks=chunks, delay=0.25))
    run = Running("ask", "Count to five.", env=env)
    running.append(run)
    first = run.read_until("Counting: ")
    # The first delta is on our side of the pipe while the server has not even begun the last one.
    assert first == "Counting: "
    assert not chunks.done and chunks.started < len(chunks)
    code, out, err = run.finish()
    assert (code, out, err) == (0, "".join(text) + "\n", "")
    assert chunks.done


def test_piped_stdin_follows_the_argument_after_a_blank_line(fake_api, env):
    notes = "# Notes\n\n- first point\n- second point\n"
    result = cli("ask", "Summarize this", env=env, stdin=notes)
    assert result.returncode == 0, result.stderr
    sent = fake_api.chat_requests()[0]["messages"]
    assert sent == [{"role": "user", "content": "Summarize this\n\n" + notes}]
    assert result.stdout == f"Echo: Summarize this\n\n{notes}"


def test_piped_stdin_alone_is_the_prompt(fake_api, env):
    result = cli("ask", env=env, stdin="What is 2 + 2?\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Echo: What is 2 + 2?\n", "")
    assert fake_api.chat_requests()[0]["messages"][-1]["content"] == "What is 2 + 2?\n"


def test_ctrl_c_stops_the_reply_closes_the_request_and_exits_130(fake_api, env, running):
    # 30 s of stream: the server is still sending when Ctrl-C closes it, however slow the machine.
    text = [f"part {i} " for i in range(300)]
    chunks = Watched(text)
    fake_api.enqueue(Script(chunks=chunks, delay=0.1))
    run = Running("ask", "Write a long answer.", env=env)
    running.append(run)
    run.read_until("part 1 ")
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130
    assert out.startswith("part 0 part 1 ") and out.endswith("\n")
    assert len(out) < len("".join(text))
    assert err.splitlines() == [
        f"oxen-notebook: interrupted (Ctrl-C): the reply was stopped after {len(out) - 1} characters."
    ]
    assert wait_for(lambda: fake_api.closed_early == 1), (
        f"the server did not see the stream closed: closed_early={fake_api.closed_early}, "
        f"{chunks.started} of {len(chunks)} deltas begun, done={chunks.done}"
    )
    assert not chunks.done


# -- ask: options, records, structured output ------------------------------------------------------


def test_json_prints_the_record_and_the_options_reach_the_request(fake_api, env):
    fake_api.enqueue(Script(text="Two, three and five."))
    result = cli(
        "ask", "--json", "-m", "cheap-model", "-s", "Be terse.", "-t", "0.5", "--max-tokens", "50",
        "Name three primes.", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    record = json.loads(result.stdout)
    assert record["role"] == "assistant"
    assert record["content"] == "Two, three and five."
    assert record["model"] == "cheap-model"
    assert record["finish_reason"] == "stop"
    assert record["source"] == "cli"
    assert record["params"] == {"temperature": 0.5, "max_tokens": 50}
    # The fake API counts words: 5 in the two messages, 4 in the reply.
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (5, 4, 9)
    assert record["cost_usd"] == pytest.approx(5 * 1e-07 + 4 * 2e-07)
    assert record["duration_s"] > 0 and record["ttft_s"] > 0
    body = fake_api.chat_requests()[0]
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name three primes."},
    ]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("cheap-model", 0.5, 50)


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
    "required": ["name", "born"],
}


@pytest.mark.parametrize("given", ["file", "inline"])
def test_schema_prints_the_parsed_json(fake_api, env, tmp_path, given):
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    fake_api.enqueue(Script(chunks=['{"name": "Ada', ' Lovelace", ', '"born": 1815}']))
    spec = str(path) if given == "file" else json.dumps(PERSON)
    result = cli("ask", "--schema", spec, "Ada Lovelace, born 1815.", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"name": "Ada Lovelace", "born": 1815}
    assert result.stdout == json.dumps({"name": "Ada Lovelace", "born": 1815}, indent=2) + "\n"
    response_format = fake_api.chat_requests()[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["required"] == ["name", "born"]


def test_a_reply_that_fails_its_schema_is_one_error_line(fake_api, env):
    fake_api.enqueue(Script(text="Ada, I think."), Script(text="still not JSON"))
    result = cli("ask", "--schema", json.dumps(PERSON), "Ada Lovelace, born 1815.", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("oxen-notebook: SchemaError: ")
    assert len(fake_api.chat_requests()) == 2  # the reply and its one repair


def test_file_and_image_are_attached(fake_api, env, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n")
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    result = cli("ask", "--file", str(pdf), "--image", str(png), "What is attached?", env=env)
    assert result.returncode == 0, result.stderr
    parts = fake_api.chat_requests()[0]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "file"]
    assert parts[0]["text"] == "What is attached?"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["file"]["filename"] == "report.pdf"


# -- exit codes and error lines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("ask", "--max-tokens", "many", "hi"),
        ("ask", "--no-such-option", "hi"),
        ("translate", "hi"),
        (),
    ],
)
def test_bad_arguments_exit_2(fake_api, env, args):
    result = cli(*args, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: oxen-notebook")
    assert fake_api.requests == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("ask", "-t", "3", "hi"),
            "ParameterError: temperature=3.0 is invalid: expected a number from 0 to 2.",
        ),
        (("ask",), 'ParameterError: no prompt: give one (oxen-notebook ask "...") or pipe text into stdin.'),
        (("ask", "--schema", "{not json", "hi"), "ParameterError: --schema: not valid JSON"),
        (("ask", "--schema", "missing.json", "hi"), "ParameterError: --schema missing.json: cannot read"),
    ],
)
def test_values_rejected_before_sending_exit_2_in_one_line(fake_api, env, args, line):
    result = cli(*args, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"oxen-notebook: {line}")
    assert fake_api.chat_requests() == []


def test_an_authentication_error_is_one_line_and_exit_1(fake_api, env):
    fake_api.api_key = "another-key"
    result = cli("ask", "hi", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "oxen-notebook: AuthenticationError: 401 Unauthenticated: Invalid API key — check your key: set "
        "OXEN_API_KEY or run `oxen config --auth hub.oxen.ai YOUR_TOKEN` (keys: "
        "https://www.oxen.ai/settings/profile). (request id req-2)\n"
    )


def test_an_unknown_model_is_one_line_and_exit_1(fake_api, env):
    result = cli("ask", "-m", "no-such-model", "hi", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("oxen-notebook: NotFoundError: 404 model 'no-such-model' not found")
    assert "`oxen-notebook models` in a terminal" in result.stderr  # the hint names the command, too


def test_a_scripted_error_status_is_one_line_and_exit_1(fake_api, env):
    fake_api.enqueue(Script(status=402, error={"error": {"type": "insufficient_credits", "title": "No"}}))
    result = cli("ask", "hi", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("oxen-notebook: InsufficientCreditsError: 402 No — add credits")


def test_a_stream_broken_mid_reply_keeps_the_text_and_exits_1(fake_api, env):
    fake_api.enqueue(Script(chunks=["half ", "of ", "it", " never"], drop_after=3))
    result = cli("ask", "hi", env=env)
    assert (result.returncode, result.stdout) == (1, "half of it\n")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("oxen-notebook: StreamError: the connection closed before")


def test_a_model_given_with_no_key_is_the_missing_key_error(fake_api, env):
    result = cli("ask", "-m", "test-model", "hi", env=without_key(env))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "oxen-notebook: MissingAPIKeyError: No Oxen API key found: set the OXEN_API_KEY environment "
        f"variable, run `oxen config --auth 127.0.0.1:{fake_api.port} YOUR_TOKEN`, pass "
        "Session(api_key=...), or run %oxen login in a notebook.\n"
    )
    assert fake_api.requests == []


def test_the_oxen_cli_config_is_a_key(fake_api, env):
    host = f"127.0.0.1:{fake_api.port}"
    config = Path(env["OXEN_CONFIG_DIR"]) / "auth_config.toml"
    config.write_text(f'[[host_configs]]\nhost = "{host}"\nauth_token = "{TEST_KEY}"\n')
    result = cli("ask", "hi", env=without_key(env))
    assert (result.returncode, result.stdout, result.stderr) == (0, "Echo: hi\n", "")


@pytest.mark.local
def test_no_key_uses_the_local_model_and_says_so(fake_api, env):
    result = cli("ask", "--max-tokens", "24", "-t", "0", "Say hello.", env=without_key(env), timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [NO_KEY_NOTE]
    assert result.stdout.strip()
    assert fake_api.requests == []  # nothing left the process


# -- chat -------------------------------------------------------------------------------------------


def test_chat_with_piped_lines_undo_and_save(fake_api, env, tmp_path):
    saved = tmp_path / "chat.json"
    result = cli("chat", "--save", str(saved), env=env, stdin="hello\n/undo\nbye\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: hello\nEcho: bye\n"
    assert result.stderr.splitlines() == [
        "oxen-notebook: removed: 'hello' and its reply.",
        f"oxen-notebook: saved the conversation to {saved}.",
    ]
    # After /undo, "bye" is sent without the exchange it removed.
    assert [b["messages"] for b in fake_api.chat_requests()] == [
        [{"role": "user", "content": "hello"}],
        [{"role": "user", "content": "bye"}],
    ]
    loaded = Session.load(saved)
    assert [(m.role, m.content, m.source) for m in loaded.messages] == [
        ("user", "bye", "cli"),
        ("assistant", "Echo: bye", "cli"),
    ]

    again = cli("chat", "--load", str(saved), "--save", str(saved), env=env, stdin="and again\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "Echo: and again\n"
    assert fake_api.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "Echo: bye"},
        {"role": "user", "content": "and again"},
    ]
    assert [m.content for m in Session.load(saved).messages] == [
        "bye",
        "Echo: bye",
        "and again",
        "Echo: and again",
    ]


def test_chat_commands_reset_save_exit_and_slashes(fake_api, env, tmp_path):
    snapshot = tmp_path / "snap.json"
    lines = f"one\n/reset\n//two\n/save {snapshot}\n/nope\n/exit\nnever sent\n"
    result = cli("chat", "-s", "Be kind.", env=env, stdin=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: one\nEcho: /two\n"
    assert result.stderr.splitlines() == [
        "oxen-notebook: a new conversation (the system prompt stays).",
        f"oxen-notebook: saved the conversation to {snapshot}.",
        "oxen-notebook: unknown command /nope: /help lists them; start the line with // to send it.",
    ]
    assert [b["messages"] for b in fake_api.chat_requests()] == [
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "one"}],
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "/two"}],
    ]
    assert [m.content for m in Session.load(snapshot).messages] == ["Be kind.", "/two", "Echo: /two"]


def test_chat_ctrl_c_stops_a_reply_then_ctrl_c_at_the_prompt_exits_130_and_saves(
    fake_api, env, tmp_path, running
):
    saved = tmp_path / "chat.json"
    chunks = Watched([f"word{i} " for i in range(300)])  # 30 s: see the ask test above
    fake_api.enqueue(Script(chunks=chunks, delay=0.1))
    run = Running("chat", "--save", str(saved), env=env, stdin=subprocess.PIPE)
    running.append(run)
    run.send("tell me a long story\n")
    run.read_until("word1 ")
    run.proc.send_signal(signal.SIGINT)
    # The request is closed by the command, which is still running: it waits for the next line.
    assert wait_for(lambda: fake_api.closed_early == 1), "the server did not see the stream closed"
    assert run.proc.poll() is None
    run.send("and now?\n")
    run.read_until("Echo: and now?\n")
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130
    assert out.startswith("word0 word1 ") and out.endswith("\nEcho: and now?\n")
    lines = err.splitlines()
    assert len(lines) == 2 and lines[1] == f"oxen-notebook: saved the conversation to {saved}."
    assert lines[0].startswith("oxen-notebook: stopped after ")
    assert lines[0].endswith(" characters; the partial reply stays in the conversation.")
    messages = Session.load(saved).messages
    assert [(m.role, m.finish_reason) for m in messages] == [
        ("user", None), ("assistant", "interrupted"), ("user", None), ("assistant", "stop"),
    ]  # fmt: skip
    assert messages[1].content == out.split("\n")[0]
    # The stopped reply was sent with the next message, as far as it got.
    assert fake_api.chat_requests()[1]["messages"][1] == {"role": "assistant", "content": messages[1].content}


def test_chat_on_a_terminal_prompts_and_ctrl_d_ends_it(fake_api, env):
    master, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxen_notebook", "chat"], stdin=terminal, stdout=terminal, stderr=terminal,
        env={**env, "TERM": "dumb"},
    )  # fmt: skip
    os.close(terminal)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while text not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal closed: the command ended
                    return

    try:
        read_until(b"you> ")
        os.write(master, b"hello\n")
        read_until(b"Echo: hello\r\nyou> ")
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=30) == 0
        read_until(b"never")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert seen.decode().replace("\r\n", "\n") == (
        "oxen-notebook: chatting with gpt-5-2-chat-latest: /help lists the commands; Ctrl-D or /exit ends.\n"
        "you> hello\nEcho: hello\nyou> \n"
    )


def test_chat_errors_are_one_line_and_the_conversation_goes_on(fake_api, env):
    fake_api.enqueue(Script(status=500, error={"error": {"type": "unknown_error", "title": "Boom"}}))
    fake_api.enqueue(*[Script(status=500, error={"error": {"title": "Boom"}})] * 2)
    result = cli("chat", env=env, stdin="first\nsecond\n")
    assert result.returncode == 1  # a reply failed
    assert result.stdout == "Echo: second\n"
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("oxen-notebook: ServerError: 500 Boom")


def test_chat_with_no_key_and_a_model_stops_at_the_missing_key(fake_api, env, tmp_path):
    saved = tmp_path / "chat.json"
    result = cli("chat", "-m", "test-model", "--save", str(saved), env=without_key(env), stdin="a\nb\n")
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == f"oxen-notebook: saved the conversation to {saved}."
    assert lines[1].startswith("oxen-notebook: MissingAPIKeyError: No Oxen API key found")
    assert len(lines) == 2


# -- models -----------------------------------------------------------------------------------------


def test_models_lists_the_catalogue_with_prices(fake_api, env):
    result = cli("models", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "input", "$/1M", "output", "$/1M"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert {"gpt-5-2-chat-latest", "test-model", "cheap-model"} <= rows.keys()
    assert rows["gpt-5-2-chat-latest"].split()[-2:] == ["1.25", "10.00"]
    assert rows["cheap-model"].split()[-2:] == ["0.10", "0.20"]
    assert rows["test-model"].split()[-2:] == ["-", "-"]  # no published prices
    assert "Gpt 5 2 Chat Latest" in rows["gpt-5-2-chat-latest"]
    assert len({len(line.rstrip()) for line in lines[:2]}) == 1  # a table: the columns line up


def test_models_filter(fake_api, env):
    result = cli("models", "CHEAP", env=env)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["id", "cheap-model"]
    nothing = cli("models", "zzz", env=env)
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert nothing.stderr == "oxen-notebook: no model matches 'zzz'.\n"


@pytest.mark.local
def test_models_with_no_key_lists_the_local_model(fake_api, env):
    result = cli("models", env=without_key(env))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["id", "local"]
    assert result.stdout.splitlines()[1].split()[-2:] == ["0.00", "0.00"]
    assert result.stderr.startswith("oxen-notebook: no Oxen API key found: listing the embedded local model")
    assert fake_api.requests == []


# -- the entry points -------------------------------------------------------------------------------


def test_python_m_help_and_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "oxen_notebook", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: oxen-notebook")
    assert "exit codes:" in result.stdout and "ask" in result.stdout and "models" in result.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"oxen-notebook": "oxen_notebook._cli:main"}
    installed = [e for e in entry_points(group="console_scripts") if e.name == "oxen-notebook"]
    assert [e.value for e in installed] == ["oxen_notebook._cli:main"], "reinstall: pip install -e ."
    helps = {
        command: subprocess.run(
            [sys.executable, "-m", "oxen_notebook", command, "--help"], capture_output=True, text=True
        ).stdout
        for command in ("ask", "chat", "models")
    }
    for command, text in helps.items():
        assert text.startswith(f"usage: oxen-notebook {command}")
    assert all(f"  /{name}" in helps["chat"] for name in ("undo", "reset", "save", "exit", "help"))
    assert "a blank line" in helps["ask"] and "130" in helps["ask"]


def test_import_oxen_notebook_does_not_load_the_command_line():
    code = "import sys, oxen_notebook; print([m for m in ('oxen_notebook._cli', 'argparse') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_recursive_schema_whose_ref_has_a_description_is_built(fake_api, env):
    """A self-referencing $ref beside a description used to recurse without end (RecursionError)."""
    node = {
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "child": {"$ref": "#/$defs/node", "description": "the subtree"},
        },
        "required": ["value"],
    }
    tree = {**node, "$defs": {"node": node}}
    fake_api.enqueue(Script(text='{"value": 1, "child": {"value": 2, "child": null}}'))
    result = cli("ask", "--schema", json.dumps(tree), "a tree", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"value": 1, "child": {"value": 2, "child": None}}
    sent = fake_api.chat_requests()[0]["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["child"]["anyOf"][0]["description"] == "the subtree"
