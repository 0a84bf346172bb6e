"""Notebook context: files as inputs, failed cells as ``{Err}``, ``%oxen fix``, and the preview.

Sessions and an IPython shell against the loopback fake API; the request bodies it received are
checked part by part. Real files are made here: a PDF by matplotlib, a WAV by ``wave``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import wave
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from oxen_notebook import ParameterError, Session
from oxen_notebook._tokens import count_messages
from tests.conftest import TEST_KEY
from tests.fake_api import Script
from tests.test_magics import last_request, shown


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure()
    figure.add_subplot().plot([1, 2, 3], [3, 1, 2])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(800, dtype=np.int16).tobytes())
    return buffer.getvalue()


@pytest.fixture
def files(tmp_path: Path, pdf_bytes: bytes, wav_bytes: bytes) -> tuple[Path, Path]:
    # Names that lie: the type is told from the content.
    report = tmp_path / "report.bin"
    report.write_bytes(pdf_bytes)
    call = tmp_path / "call.dat"
    call.write_bytes(wav_bytes)
    return report, call


def _data(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# -- files= on a Session ----------------------------------------------------------------------


def test_files_become_exact_content_parts(session, fake_api, files, pdf_bytes, wav_bytes):
    report, call = files
    reply = session.ask("Summarize the report and the call.", files=[report, call])
    assert reply.text
    sent = fake_api.chat_requests()[-1]["messages"][-1]
    assert sent["content"] == [
        {"type": "text", "text": "Summarize the report and the call."},
        {
            "type": "file",
            "file": {"filename": "report.bin.pdf", "file_data": _data(pdf_bytes, "application/pdf")},
        },
        {"type": "audio_url", "audio_url": {"url": _data(wav_bytes, "audio/wav")}},
    ]
    user = session.messages[0]
    assert [(a["kind"], a["type"], a["name"], a["size"]) for a in user.attachments] == [
        ("file", "application/pdf", "report.bin", len(pdf_bytes)),
        ("audio", "audio/wav", "call.dat", len(wav_bytes)),
    ]
    assert user.attachments[0]["sha256"] == hashlib.sha256(pdf_bytes).hexdigest()
    # The record never holds the bytes: not in the dict, the DataFrame or the saved file.
    encoded = base64.b64encode(pdf_bytes).decode()[:200]
    assert encoded not in json.dumps(user.to_dict(), default=str)
    assert "parts" not in session.to_dataframe().columns
    assert list(session.to_dataframe()["attachments"][0][0]) == [
        "kind",
        "type",
        "name",
        "size",
        "sha256",
        "url",
    ]


def test_the_next_turn_sends_the_files_again_and_a_saved_copy_says_they_were_not_kept(
    session, fake_api, files, tmp_path
):
    report, _ = files
    session.ask("Read this.", files=[report])
    session.ask("And again?")
    first = fake_api.chat_requests()[-1]["messages"][0]
    assert first["content"][1]["type"] == "file"  # history resends what was attached
    path = session.save(tmp_path / "chat.json")
    assert "base64" not in path.read_text()
    again = Session.load(path, base_url=fake_api.base_url, api_key=TEST_KEY)
    again.ask("One more.")
    resent = fake_api.chat_requests()[-1]["messages"][0]
    assert resent["content"].startswith(
        "Read this.\n\n[Attached earlier, not kept in the saved conversation: "
    )
    assert "report.bin (PDF" in resent["content"]


def test_file_urls_and_images_from_arrays(session, fake_api):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    session.ask(
        "Compare.", images=[pixels], files=["https://example.com/paper.pdf", "https://example.com/a.mp3"]
    )
    parts = fake_api.chat_requests()[-1]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "file", "audio_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2] == {"type": "file", "file": {"file_url": "https://example.com/paper.pdf"}}
    assert parts[3] == {"type": "audio_url", "audio_url": {"url": "https://example.com/a.mp3"}}


def test_bad_files_fail_before_anything_is_sent(session, fake_api, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just text")
    with pytest.raises(ParameterError) as info:
        session.ask("Read it.", files=[text])
    assert "\n" not in str(info.value)
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:
        f.write(b"%PDF-1.7\n")
        f.truncate(25 * 2**20)
    with pytest.raises(ParameterError, match="24"):
        session.ask("Read it.", files=[huge])
    with pytest.raises(ParameterError, match=r"files= takes a list"):
        session.ask("Read it.", files=str(huge))
    assert fake_api.chat_requests() == []
    assert session.messages == []


# -- preview ----------------------------------------------------------------------------------


def test_preview_is_the_exact_body_and_sends_records_and_caches_nothing(fake_api, tmp_path, pdf_bytes):
    journal = tmp_path / "chat.jsonl"
    session = Session(
        "gpt-5-2-chat-latest", "Be brief.", base_url=fake_api.base_url, api_key=TEST_KEY,
        journal=journal, cache=tmp_path / "cache.sqlite",
    )  # fmt: skip
    session.ask("First question.", temperature=0)
    before = (
        list(session.messages),
        journal.read_text(),
        len(fake_api.chat_requests()),
        session.usage_summary(),
    )
    reviews = pd.DataFrame({"review": ["great", None, "awful"], "stars": [5, 3, 1]})
    preview = session.preview(
        "Classify {reviews}", reviews=reviews, files=[pdf_bytes], params={"max_tokens": 100, "temperature": 0}
    )
    assert (
        list(session.messages),
        journal.read_text(),
        len(fake_api.chat_requests()),
        session.usage_summary(),
    ) == before
    messages = preview["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    text = messages[-1]["content"][0]["text"]
    assert text.startswith("Classify DataFrame: 3 rows × 2 columns")
    assert "1 missing" in text
    assert messages[-1]["content"][1] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": f"<application/pdf, {len(pdf_bytes):,} bytes>"},
    }
    assert preview["body"]["max_tokens"] == 100 and preview["body"]["temperature"] == 0
    assert TEST_KEY not in json.dumps(preview, default=str)
    # The size is the real body's (data included), the tokens are what the counter gives.
    real = [*[m.to_api() for m in session.messages], {"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": _data(pdf_bytes, "application/pdf")}},
    ]}]  # fmt: skip
    body = {**{k: v for k, v in preview["body"].items() if k != "messages"}, "messages": real}
    assert preview["bytes"] == len(httpx.Request("POST", preview["url"], json=body).content)
    assert preview["prompt_tokens"] == count_messages(real)
    assert preview["input_cost_usd"] == pytest.approx(preview["prompt_tokens"] * 1.25e-06)
    assert preview["max_cost_usd"] == pytest.approx(preview["prompt_tokens"] * 1.25e-06 + 100 * 1e-05)
    assert preview["sent"] is False


def test_preview_without_history_and_with_a_schema(session, fake_api):
    session.ask("Earlier.")
    preview = session.preview(
        "Who?", history=False, schema={"type": "object", "properties": {"name": {"type": "string"}}}
    )
    assert [m["role"] for m in preview["body"]["messages"]] == ["user"]
    assert preview["body"]["response_format"]["type"] == "json_schema"
    assert len(fake_api.chat_requests()) == 1


# -- {Err}, %oxen fix, --file, --dry-run in a shell -------------------------------------------


def _fail(ip: InteractiveShell, code: str) -> None:
    with capture_output():
        ip.run_cell(code, store_history=True)


def test_err_sends_the_last_failed_cell(ip, fake_api):
    _fail(ip, "import pandas as pd\nframe = pd.DataFrame({'a': [1]})\nframe['b']")
    _fail(ip, "def ratio(x):\n    return 1 / x\nratio(0)")
    with capture_output():
        ip.run_cell_magic("oxen", "--new", "Why did this fail? {Err}")
    prompt = last_request(fake_api)["messages"][-1]["content"]
    assert prompt.startswith("Why did this fail? The notebook cell In[")
    assert "failed with ZeroDivisionError: division by zero" in prompt
    assert "def ratio(x):\n    return 1 / x\nratio(0)" in prompt
    assert "    return 1 / x\nZeroDivisionError: division by zero\n```" in prompt
    assert "interactiveshell" not in prompt and "\x1b[" not in prompt
    with capture_output():
        ip.run_cell_magic("oxen", "--new", "And this? {Err[-2]}")
    earlier = last_request(fake_api)["messages"][-1]["content"]
    assert "failed with KeyError: 'b'" in earlier and "… 1 frame in pandas …" in earlier


def test_err_with_no_failure_is_one_line_and_sends_nothing(ip, fake_api, monkeypatch):
    monkeypatch.delattr(sys, "last_value", raising=False)  # what IPython keeps of an earlier test's error
    with pytest.raises(UsageError, match=r"^\{Err\}: no cell has failed yet in this kernel; run the failing"):
        ip.run_cell_magic("oxen", "", "Why? {Err}")
    with pytest.raises(UsageError, match=r"Err\[99\]: cell 99 did not fail"):
        ip.run_cell_magic("oxen", "", "Why? {Err[99]}")
    assert fake_api.chat_requests() == []


def test_oxen_fix_explains_and_offers_the_corrected_cell(ip, fake_api):
    _fail(ip, "total = sum([1, 2, '3'])")
    fake_api.enqueue(
        Script(chunks=["A string is in the list.\n\n", "```python\n", "total = sum([1, 2, 3])\n", "```\n"])
    )
    with capture_output() as captured:
        ip.run_line_magic("oxen", "fix")
    prompt = last_request(fake_api)["messages"][-1]["content"]
    assert prompt.startswith("Fix this notebook cell.")
    assert "TypeError" in prompt and "total = sum([1, 2, '3'])" in prompt
    assert ip.rl_next_input == "total = sum([1, 2, 3])"
    assert any("A string is in the list." in o["data"].get("text/html", "") for o in shown(captured))


def test_oxen_fix_with_no_failure_is_a_note(ip, fake_api, monkeypatch):
    monkeypatch.delattr(sys, "last_value", raising=False)
    with capture_output() as captured:
        ip.run_line_magic("oxen", "fix")
    assert captured.stdout == "no cell has failed yet in this kernel: run the failing cell, then %oxen fix.\n"
    assert fake_api.chat_requests() == []


def test_file_option_attaches_and_the_footer_names_them(ip, fake_api, files):
    report, call = files
    with capture_output() as captured:
        ip.run_cell_magic("oxen", f"--file {report} --file {call}", "Summarize the report and the call.")
    parts = last_request(fake_api)["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "file", "audio_url"]
    footer = shown(captured)[-1]["data"]["text/plain"]
    assert "attached: report.bin (PDF" in footer and "call.dat (audio" in footer


def test_dry_run_shows_the_body_and_sends_nothing(ip, fake_api, files):
    report, _ = files
    ip.user_ns["reviews"] = pd.DataFrame({"text": [f"review {i}" for i in range(1000)]})
    with capture_output() as captured:
        ip.run_cell_magic(
            "oxen", f"--dry-run -m gpt-5-2-chat-latest --file {report} -o plan", "Classify {reviews}"
        )
    assert fake_api.chat_requests() == []
    plan = ip.user_ns["plan"]
    outputs = shown(captured)
    assert outputs[0]["data"]["application/json"] == plan["body"]
    line = outputs[-1]["data"]["text/plain"]
    assert line.startswith("dry run, nothing sent · gpt-5-2-chat-latest · 1 message · ")
    assert f"~{plan['prompt_tokens']:,} prompt tokens" in line and "input ≈ $" in line
    assert "base64" not in json.dumps(plan["body"])
    assert len(plan["body"]["messages"][-1]["content"][0]["text"]) <= 4000 + len("Classify ")


def test_context_traitlets_bound_what_a_field_shows(ip, fake_api):
    ip.user_ns["frame"] = pd.DataFrame({"x": range(100)})
    ip.run_line_magic("config", "OxenMagics.context_rows = 4")
    with capture_output():
        ip.run_cell_magic("oxen", "--new", "Look: {frame}")
    prompt = last_request(fake_api)["messages"][-1]["content"]
    assert "| 99 |" in prompt and "| 50 |" not in prompt
    with capture_output():
        ip.run_cell_magic("oxen", "--new", "Look: {frame:all}")
    assert "| 50 |" in last_request(fake_api)["messages"][-1]["content"]


def test_map_sends_the_files_with_every_row_reading_them_once(session, fake_api, files, monkeypatch):
    import oxen_notebook._attachments as attachments

    report, _ = files
    reads: list[str] = []
    real = attachments.attach
    monkeypatch.setattr(
        attachments, "attach", lambda obj, *a, **k: reads.append(str(obj)) or real(obj, *a, **k)
    )
    import oxen_notebook._ask as ask

    monkeypatch.setattr(ask, "attach", attachments.attach)
    out = session.map(["one", "two", "three"], "Which page mentions {text}?", files=[report], progress=False)
    assert out["error"].isna().all()
    assert reads == [str(report)]
    bodies = fake_api.chat_requests()
    assert len(bodies) == 3
    assert all(b["messages"][-1]["content"][1]["type"] == "file" for b in bodies)
    assert sorted(b["messages"][-1]["content"][0]["text"] for b in bodies) == [
        "Which page mentions one?", "Which page mentions three?", "Which page mentions two?",
    ]  # fmt: skip


def test_the_chat_panel_names_what_a_message_attached(session, fake_api, files):
    from oxen_notebook._panel._transcript import message_html

    report, call = files
    session.ask("Summarize both.", files=[report, call])
    user, reply = session.messages
    shown_user = message_html(user)
    assert "attached: report.bin (PDF, " in shown_user and "call.dat (audio, " in shown_user
    assert "attached" not in message_html(reply)
