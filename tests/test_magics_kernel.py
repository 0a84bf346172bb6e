"""``%%oxen`` in a real IPython kernel: iopub traffic for a long reply, interrupts, a notebook.

The kernel talks to the loopback fake API running in this process. ``KernelRun`` (tests/helpers.py)
applies the display messages the way a frontend does, so the tests see what the user would see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oxen_notebook._render import render_markdown
from tests.fake_api import FakeAPI, Script
from tests.helpers import WIDGET_MIME, Kernel, checkout_env, is_stylesheet, long_reply

KEY = "kernel-test-key"

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.api_key = KEY
        yield server


@pytest.fixture(scope="module")
def kernel(api: FakeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(api.base_url, KEY, str(tmp_path_factory.mktemp("oxen-config")))
    yield k
    k.shutdown()


@pytest.fixture(autouse=True)
def _fresh(api: FakeAPI) -> None:
    api.reset()
    api.api_key = KEY


def test_long_reply_traffic_is_throttled_and_linear(api: FakeAPI, kernel: Kernel) -> None:
    chunks = long_reply(5000)
    text = "".join(chunks)
    api.enqueue(Script(chunks=chunks))
    run = kernel.run("%%oxen --new -o answer\nWrite a long answer.")
    assert run.reply["status"] == "ok"
    displays = run.displays
    duration = displays[-1][0] - displays[0][0]
    reply_bytes = len(text.encode())
    # About 20 updates per second at most, however fast the 5,000 deltas come.
    assert len(displays) <= 20 * duration + 4, (len(displays), duration)
    # Linear traffic: at most 3x the reply's size plus a constant.
    assert run.display_bytes() <= 3 * reply_bytes + 32768, run.display_bytes() / reply_bytes
    # The final render is exactly the full reply's, then the footer with the metadata.
    html = run.html()
    assert "".join(html[:-1]) == render_markdown(text)
    outputs = [o for o in run.outputs() if o["type"] == "display_data" and "text/html" in o["data"]]
    assert "tokens" in outputs[-1]["data"]["text/plain"]
    # Then the hidden widget that adds Copy / Insert as cell to the reply's code blocks.
    assert WIDGET_MIME in run.outputs()[-1]["data"]
    message_id = outputs[-1]["metadata"]["oxen"]["message_id"]
    assert outputs[-2]["metadata"]["oxen"] == {"model": "gpt-5-2-chat-latest", "message_id": message_id}
    assert kernel.value("answer") == text
    assert kernel.value("oxen_notebook.default_session().messages[-1].message_id") == message_id


def test_paced_reply_stays_under_20_updates_per_second(api: FakeAPI, kernel: Kernel) -> None:
    chunks = long_reply(1500)
    api.enqueue(Script(chunks=chunks, delay=0.002))
    run = kernel.run("%%oxen --new\nWrite a long answer.")
    displays = run.displays
    duration = displays[-1][0] - displays[0][0]
    assert duration > 2
    assert len(displays) / duration <= 21, (len(displays), duration)
    assert "".join(run.html()[:-1]) == render_markdown("".join(chunks))


def test_interrupt_keeps_the_partial_reply_and_closes_the_request(api: FakeAPI, kernel: Kernel) -> None:
    chunks = [f"word{i} " for i in range(3000)]
    api.enqueue(Script(chunks=chunks, delay=0.005))
    interrupted_at: list[float] = []

    def interrupt_once_streaming(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "update_display_data" and not interrupted_at:
            time.sleep(0.3)
            interrupted_at.append(time.monotonic())
            kernel.km.interrupt_kernel()

    run = kernel.run("%%oxen --new -o partial\nCount.", on_message=interrupt_once_streaming)
    assert interrupted_at
    closed = api.closed_early == 1 and api.open_streams == 0
    deadline = interrupted_at[0] + 0.5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
        closed = api.closed_early == 1 and api.open_streams == 0
    assert closed, "the HTTP stream was still open 0.5 s after the interrupt"
    errors = run.errors()
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1
    assert "Interrupted" in errors[0]["traceback"][0]
    last = kernel.value(
        "[(m.role, m.finish_reason, m.content) for m in oxen_notebook.default_session().messages]"
    )
    role, reason, content = last[-1]
    assert (role, reason) == ("assistant", "interrupted")
    assert 0 < len(content) < len("".join(chunks))
    assert kernel.value("partial") == content
    # The partial reply stays on screen, rendered.
    assert any("word0" in h for h in run.html())


def test_errors_are_one_line(api: FakeAPI, kernel: Kernel) -> None:
    api.enqueue(
        Script(status=402, error={"error": {"type": "insufficient_credits", "title": "Out of credits"}})
    )
    run = kernel.run("%%oxen\nhello")
    assert run.reply["status"] == "error"
    (error,) = run.errors()
    assert len(error["traceback"]) == 1
    assert "InsufficientCreditsError" in error["traceback"][0] and "credits" in error["traceback"][0]


def test_a_failed_cell_is_a_callout_with_a_short_error_line(api: FakeAPI, kernel: Kernel) -> None:
    run = kernel.run("%%oxen -m gpt-6\nhello")
    assert run.reply["status"] == "error"  # the cell still fails: Run All stops here
    (error,) = run.errors()
    (line,) = error["traceback"]
    assert line.startswith("\x1b[31mNotFoundError\x1b[0m: 404 model 'gpt-6' not found")
    assert "%oxen models" not in line  # the action is the callout's
    (callout,) = [o for o in run.outputs() if o["type"] == "display_data"]
    html = callout["data"]["text/html"]
    assert html.startswith('<style class="oxen-style">') and html.count('class="oxen-callout ') == 1
    shown = html.split("</style>")[1]
    assert shown.count("not found") == 1 and "Model not found" not in shown  # said once
    assert "Run %oxen models to see the model ids you can use." in shown
    assert "oxen-notebook models" not in shown  # a notebook's action, not a terminal's


def test_a_rate_limited_cell_says_it_retries_until_the_reply_starts(api: FakeAPI, kernel: Kernel) -> None:
    api.enqueue(
        Script(status=429, error={"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
        Script(text="at last"),
    )
    run = kernel.run("%%oxen\nhello")
    assert run.reply["status"] == "ok"
    notes = [m for _, m in run.displays if "retrying" in m["content"]["data"].get("text/plain", "")]
    assert [m["content"]["data"]["text/plain"] for m in notes] == ["rate-limited, retrying in 1 s (1/2)"]
    note_id = notes[0]["content"]["transient"]["display_id"]
    (note,) = [o for o in run.outputs() if o.get("display_id") == note_id]
    assert note["data"] == {"text/html": '<div class="oxen-hidden"></div>', "text/plain": ""}  # gone
    updates = [(t, m) for t, m in run.displays if m["msg_type"] == "update_display_data"]
    hidden_at = next(t for t, m in updates if m["content"]["transient"]["display_id"] == note_id)
    shown_at = next(t for t, m in run.displays if "at last" in m["content"]["data"].get("text/html", ""))
    assert hidden_at <= shown_at  # removed when the reply starts, before its text is shown


def test_notebook_runs_headless(api: FakeAPI, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    api.handler = lambda body: Script(
        text="Echo: " + str(body["messages"][-1]["content"]) if body["messages"] else ""
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext oxen_notebook\ntopic = 'entropy'"),
        nbformat.v4.new_code_cell("%%oxen -o answer\nExplain {topic} **briefly**."),
        nbformat.v4.new_code_cell("%%oxen -f json -o data\nGive JSON"),
        nbformat.v4.new_code_cell("%oxen history"),
        nbformat.v4.new_code_cell("print(answer)"),
    ]
    api.enqueue(
        Script(text="Echo: Explain entropy **briefly**."),
        Script(chunks=["```json\n", '{"a": ', "[1, 2]}", "\n```"]),
    )
    env = checkout_env(api.base_url, KEY, str(tmp_path))
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    answer_outputs = [o for o in nb.cells[1].outputs if not is_stylesheet(o)]
    html = "".join(o["data"]["text/html"] for o in answer_outputs if "text/html" in o.get("data", {}))
    assert "<strong>briefly</strong>" in html
    assert answer_outputs[0]["metadata"]["oxen"]["model"] == "gpt-5-2-chat-latest"
    json_output = nb.cells[2].outputs[0]
    assert json_output["data"]["application/json"] == {"a": [1, 2]}
    assert "assistant" in nb.cells[3].outputs[0]["data"]["text/plain"]
    assert nb.cells[4].outputs[0]["text"] == "Echo: Explain entropy **briefly**.\n"


def test_schema_cell_gives_the_kernel_the_object_and_shows_a_table(api: FakeAPI, kernel: Kernel) -> None:
    defined = kernel.run(
        "from pydantic import BaseModel\nclass Person(BaseModel):\n    name: str\n    age: int"
    )
    assert defined.reply["status"] == "ok"
    api.enqueue(Script(chunks=['{"name": "Ada ', '<b>Lovelace</b>", ', '"age": 36}']))
    run = kernel.run("%%oxen --new --schema Person -o ada\nAda Lovelace, born 1815, died at 36.")
    assert run.reply["status"] == "ok", run.errors()
    assert kernel.value("[type(ada).__name__, ada.name, ada.age]") == ["Person", "Ada <b>Lovelace</b>", 36]
    assert api.chat_requests()[-1]["response_format"]["json_schema"]["name"] == "Person"
    table, footer = [o for o in run.outputs() if o["type"] == "display_data"]
    html = table["data"]["text/html"]
    assert html.startswith('<table class="oxen-object">') and '{"name"' not in html
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html and ">36</td>" in html
    assert "tokens" in footer["data"]["text/plain"]
    assert table["metadata"]["oxen"]["message_id"] == footer["metadata"]["oxen"]["message_id"]


def test_approve_asks_through_the_frontend(api: FakeAPI, kernel: Kernel) -> None:
    import threading

    defined = kernel.run(
        "ran = []\ndef get_weather(city: str) -> dict:\n"
        '    """Current weather for a city."""\n    ran.append(city)\n    return {"temp": 4}'
    )
    assert defined.reply["status"] == "ok"
    prompts: list[str] = []
    stdin = kernel.kc.stdin_channel  # made here; the thread below only reads and writes it

    def answer() -> None:  # the frontend: the input requests answered y, then n
        for reply in ("y", "n"):
            msg = stdin.get_msg(timeout=30)  # the channel's own sync read: no event loop per thread
            prompts.append(msg["content"]["prompt"])
            kernel.kc.input(reply)

    frontend = threading.Thread(target=answer, daemon=True)
    frontend.start()
    cell = '%%oxen -m tool-model --tools get_weather --approve\nCALL get_weather {"city": "Oslo"} ; CALL get_weather {"city": "Rome"}'
    run = kernel.run(cell)
    frontend.join(5)
    assert run.reply["status"] == "ok", run.errors()
    assert prompts == ['run get_weather(city="Oslo")? [y/N] ', 'run get_weather(city="Rome")? [y/N] ']
    assert kernel.value("ran") == ["Oslo"]
    lines = [o["data"].get("text/plain", "") for o in run.outputs() if o["type"] == "display_data"]
    assert lines[:2] == ['→ get_weather(city="Oslo") = {"temp": 4}', '→ get_weather(city="Rome") denied']
    assert "2 tool calls (1 denied)" in lines[-1]


def test_approve_under_nbclient_denies_every_call_and_says_why(api: FakeAPI, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%load_ext oxen_notebook\nran = []\ndef delete_rows(table: str) -> str:\n"
            '    """Delete the rows."""\n    ran.append(table)\n    return "deleted"'
        ),
        nbformat.v4.new_code_cell(
            '%%oxen -m tool-model --tools delete_rows --approve\nCALL delete_rows {"table": "orders"}'
        ),
        nbformat.v4.new_code_cell("print(ran)"),
    ]
    env = checkout_env(api.base_url, KEY, str(tmp_path))
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()  # nbclient's kernels cannot answer input(): allow_stdin is off
    finally:
        os.environ.clear()
        os.environ.update(old)
    texts = [
        o["data"].get("text/plain", "") for o in nb.cells[1].outputs if o["output_type"] == "display_data"
    ]
    assert texts[0] == '→ delete_rows(table="orders") denied'
    assert "cannot answer input(), so --approve denied every call" in texts[-1]
    assert nb.cells[2].outputs[0]["text"] == "[]\n"


# -- notebook context in a real kernel ---------------------------------------------------------


def test_a_million_row_frame_is_sent_as_a_bounded_summary(api: FakeAPI, kernel: Kernel) -> None:
    made = kernel.run(
        "import pandas as pd\nrows = pd.RangeIndex(1_000_000)\n"
        "sales = pd.DataFrame({'units': rows % 7, 'price': rows / 10, 'region': (rows % 4).astype(str)})\n"
        "sales.loc[rows % 1000 == 0, 'price'] = None"
    )
    assert made.reply["status"] == "ok"
    run = kernel.run("%%oxen --new\nWhich columns of {sales} have missing values?")
    assert run.reply["status"] == "ok", run.errors()
    prompt = api.chat_requests()[-1]["messages"][-1]["content"]
    assert prompt.startswith("Which columns of DataFrame: 1,000,000 rows × 3 columns")
    assert "1,000 missing" in prompt  # the count is over every row, not the rows shown
    assert "| 99999.9 |" in prompt  # the last row (the tail is shown, not just the head)
    assert len(prompt) <= 4000 + len("Which columns of  have missing values?")


def test_err_after_a_failing_cell_and_oxen_fix_offers_the_next_cell(api: FakeAPI, kernel: Kernel) -> None:
    failed = kernel.run("prices = {'a': 1}\nprices['b'] + 1")
    assert failed.reply["status"] == "error"
    cell = failed.reply["execution_count"]
    run = kernel.run("%%oxen --new\nWhy did this fail? {Err}")
    assert run.reply["status"] == "ok", run.errors()
    prompt = api.chat_requests()[-1]["messages"][-1]["content"]
    assert f"The notebook cell In[{cell}] failed with KeyError: 'b'" in prompt
    assert "prices['b'] + 1" in prompt and "ipykernel" not in prompt and "\x1b[" not in prompt
    api.enqueue(Script(chunks=["The key is missing.\n\n```python\n", "prices.get('b', 0) + 1\n", "```\n"]))
    fixed = kernel.run("%oxen fix")
    assert fixed.reply["status"] == "ok", fixed.errors()
    assert api.chat_requests()[-1]["messages"][-1]["content"].startswith("Fix this notebook cell.")
    # The frontend gets the corrected code as the next cell (a set_next_input payload).
    payloads = fixed.reply.get("payload", [])
    assert {"source": "set_next_input", "text": "prices.get('b', 0) + 1", "replace": False} in payloads


def test_file_and_dry_run_in_a_kernel(api: FakeAPI, kernel: Kernel, tmp_path: Path) -> None:
    import io
    import wave

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure()
    figure.add_subplot().bar([1, 2], [3, 4])
    pdf = tmp_path / "report.pdf"
    figure.savefig(pdf, format="pdf")
    audio = io.BytesIO()
    with wave.open(audio, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(b"\0\0" * 400)
    (tmp_path / "call.wav").write_bytes(audio.getvalue())
    cell = f"%%oxen --new --file {pdf} --file {tmp_path / 'call.wav'}\nSummarize the report and the call."
    dry = kernel.run(cell.replace("--new", "--new --dry-run -o plan"))
    assert dry.reply["status"] == "ok", dry.errors()
    assert api.chat_requests() == []  # a dry run sends nothing
    assert kernel.value(
        "[plan['sent'], plan['messages'], plan['bytes'] > len(plan['body']['messages'][-1]['content'][1]['file']['file_data'])]"
    ) == [False, 1, True]
    run = kernel.run(cell)
    assert run.reply["status"] == "ok", run.errors()
    parts = api.chat_requests()[-1]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "file", "audio_url"]
    assert parts[1]["file"]["file_data"].startswith("data:application/pdf;base64,JVBER")  # %PDF
    assert parts[2]["audio_url"]["url"].startswith("data:audio/wav;base64,UklGR")  # RIFF
    footer = run.outputs()[-1]["data"]["text/plain"]
    assert "attached: report.pdf (PDF" in footer and "call.wav (audio" in footer
